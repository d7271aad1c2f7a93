"""sipcluster: a clustered SIP proxy server built on Twisted and etcd."""

__version__ = "0.1.0"
