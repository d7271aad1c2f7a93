# The compiled build's declarations for forwarding.py (Cython augmenting .pxd).
cdef class Target:
    cdef public object uri
    cdef public object q
    cdef public object path
    cdef public object received
    cdef public object rank
    cdef public object next_hop
    cdef public object timeout
    cdef public object on_failed
