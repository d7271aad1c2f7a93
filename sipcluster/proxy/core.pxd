# The compiled build's declarations for core.py (Cython augmenting .pxd):
# the proxy core as an extension type, calling the forwarder and the
# pipeline in C.
from sipcluster.proxy.forwarding cimport Forwarder
from sipcluster.proxy.pipeline cimport Pipeline

cdef class ProxyCore:
    cdef public Forwarder forwarder
    cdef public Pipeline pipeline
    cdef public object forward
    cdef public dict stats
    cdef public set _valid_to
    cpdef receive(self, context)
    cpdef _policy_passed(self, context)
    cpdef _targets_chosen(self, context, targets)
    cpdef fail(self, context, error)
