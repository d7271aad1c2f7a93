# The compiled build's declarations for core.py (Cython augmenting .pxd):
# the proxy core as an extension type, calling the forwarder and the
# pipeline in C.
import cython

from sipcluster.proxy.forwarding cimport Forwarder
from sipcluster.proxy.pipeline cimport Pipeline, RequestContext
from sipcluster.sip.message cimport Request

cdef class ProxyCore:
    cdef public Forwarder forwarder
    cdef public Pipeline pipeline
    cdef public object forward
    cdef public dict stats
    cdef public set _valid_to
    cdef public object _on_policy
    cdef public object _on_targets
    cdef public object _on_failure
    @cython.locals(request=Request)
    cpdef receive(self, RequestContext context)
    cpdef _policy_passed(self, RequestContext context)
    cpdef _targets_chosen(self, RequestContext context, targets)
    cpdef fail(self, RequestContext context, error)
