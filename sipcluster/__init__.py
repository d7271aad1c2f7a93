"""sipcluster: a clustered SIP proxy server built on Twisted and etcd."""

from sipcluster import compiled as _compiled

__version__ = "0.1.0"

# The compiled modules are used unless pure Python is asked for
# (SIPCLUSTER_NO_EXTENSIONS) or their source was edited after the build.
_compiled.install()
