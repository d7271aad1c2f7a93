# -*- test-case-name: tests.cluster.test_protobuf -*-
"""
The protobuf backend etcd3 needs, selected before etcd3 is imported.

etcd3 0.12 ships modules generated for protobuf 3, which create their
descriptors directly.  protobuf >= 4 allows that only in its pure-Python
backend; its default one (upb) refuses them ("Descriptors cannot be created
directly").  protobuf picks its backend once per process, when
C{google.protobuf.internal.api_implementation} is first imported, from
C{PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION}.  So every way to etcd3 imports
this module first: the node and its workers and the command through
L{sipcluster.cluster.etcd}, the tests' etcd server too.

Importing it sets that variable to C{python} when it is unset (it stays
set, so the node's workers inherit it) and stops the process with one line
when the backend cannot be the pure-Python one: protobuf was already
imported with another, or the variable asks for another (etcd3 would fail
later with a long traceback).  An operator's explicit setting is reported,
not overridden: whatever set it may depend on it.
"""

import os
import sys

VARIABLE = "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"
BACKEND = "python"
_API = "google.protobuf.internal.api_implementation"


class ProtobufBackendError(SystemExit):
    """
    protobuf cannot use its pure-Python backend in this process.  A
    SystemExit, so that wherever it comes up (twistd loading the node, a
    worker, the command) the process stops with its one line on stderr and
    status 1, no traceback.
    """


def select_backend(environ=os.environ, modules=sys.modules):
    """
    Make protobuf use its pure-Python backend in this process, or raise
    L{ProtobufBackendError}.  Returns the backend's name.
    """
    api = modules.get(_API)
    if api is None:
        wanted = environ.setdefault(VARIABLE, BACKEND)
        if wanted != BACKEND:
            raise ProtobufBackendError(
                "sipcluster: %s=%s is set, but etcd3 0.12 needs protobuf's pure-Python backend: "
                "unset it or set it to %s" % (VARIABLE, wanted, BACKEND))
        from google.protobuf.internal import api_implementation as api
    backend = api.Type()
    if backend != BACKEND:
        raise ProtobufBackendError(
            "sipcluster: protobuf was imported with its %s backend before sipcluster.cluster.etcd, "
            "but etcd3 0.12 needs the pure-Python one: run with %s=%s set in the environment"
            % (backend, VARIABLE, BACKEND))
    return backend


select_backend()
