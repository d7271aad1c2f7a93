# The compiled build's declarations for uri.py (Cython augmenting .pxd).
cdef class SipURI:
    cdef public object scheme
    cdef public object user
    cdef public object password
    cdef public object host
    cdef public object port
    cdef public object params
    cdef public object headers
    cdef public object _text

cdef class TelURI:
    cdef public object number
    cdef public object params
    cdef public object _text

cdef class AbsoluteURI:
    cdef public object scheme
    cdef public object text
