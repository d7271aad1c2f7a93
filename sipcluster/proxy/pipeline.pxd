# The compiled build's declarations for pipeline.py (Cython augmenting .pxd).
import cython

from sipcluster.sip.message cimport Request
from sipcluster.transaction.server cimport ServerTransaction
from sipcluster.transport.base cimport Source

cdef class RequestContext:
    cdef public Request request
    cdef public Source source
    cdef public object stateful
    cdef public ServerTransaction server_tx
    cdef public object started
    cdef public object _vars
    cdef public object targets
    cdef public object answered
    cdef public object _answer
    cdef public object _trying

# The stages of a node: an extension type whose walks the proxy core calls
# in C (its lists C fields).
cdef class Pipeline:
    cdef public object stateful
    cdef public list stages
    cdef public list request
    cdef public list targets
    cdef public list branch
    cdef public list response
    cdef public list failure
    cdef public list dialog
    @cython.locals(stages=list)
    cpdef run_request(self, RequestContext context, done, failed, Py_ssize_t index=*)
    @cython.locals(stages=list)
    cpdef select_targets(self, RequestContext context, done, failed, Py_ssize_t index=*)
    cpdef _targets_chosen(self, RequestContext context, result, done, failed, Py_ssize_t index)
