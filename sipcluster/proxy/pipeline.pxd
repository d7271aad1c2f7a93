# The compiled build's declarations for pipeline.py (Cython augmenting .pxd).
cdef class RequestContext:
    cdef public object request
    cdef public object source
    cdef public object stateful
    cdef public object server_tx
    cdef public object started
    cdef public object _vars
    cdef public object targets
    cdef public object answered
    cdef public object _answer
    cdef public object _trying
