# The compiled build's declarations for context.py (Cython augmenting .pxd).
cdef class Branch:
    cdef public object target
    cdef public object tx
    cdef public object response
    cdef public object done
    cdef public object timer_c
    cdef public object timer_fr
    cdef public object index
