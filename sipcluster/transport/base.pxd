# The compiled build's declarations for base.py (Cython augmenting .pxd).
cdef class Source:
    cdef public object transport
    cdef public object host
    cdef public object port
    cdef public object local
