"""
The compiled build of sipcluster: the modules every message crosses (the
message layer, the transports, transactions and the proxy core; listed in
sipcluster/compiled.py) compiled by Cython from the same Python source, as
the aio-libs projects do (yarl, multidict, frozenlist: Cython with a
pure-Python fallback).  One source and one API; the compiled build only
runs it faster.

Without Cython or a C compiler, or with SIPCLUSTER_NO_EXTENSIONS=1 in the
environment, the package installs as pure Python (and the same variable at
run time runs the source even where the extensions are built).
`sipcluster version` and the node's start-up line say which build runs.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sipcluster.compiled import ENVIRONMENT, MODULES  # noqa: E402


def extensions():
    if os.environ.get(ENVIRONMENT, "") not in ("", "0"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("sipcluster: Cython not found, installing pure Python", file=sys.stderr)
        return []
    modules = [Extension(name, [name.replace(".", "/") + ".py"]) for name in MODULES]
    return cythonize(modules, quiet=True, nthreads=os.cpu_count() or 1, compiler_directives={
        "language_level": 3,
        # Behave as the Python source does: functions that introspect and
        # bind like Python's (zope.interface, Twisted), Python's division.
        "binding": True, "cdivision": False, "always_allow_keywords": True,
    })


class OptionalBuildExt(build_ext):
    """A module that fails to compile stays pure Python: never a failed install."""

    def finalize_options(self):
        build_ext.finalize_options(self)
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1

    def run(self):
        try:
            build_ext.run(self)
        except Exception as e:
            print("sipcluster: compiling failed (%s), installing pure Python" % e, file=sys.stderr)

    def build_extension(self, ext):
        try:
            build_ext.build_extension(self, ext)
        except Exception as e:
            print("sipcluster: %s stays pure Python (%s)" % (ext.name, e), file=sys.stderr)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
