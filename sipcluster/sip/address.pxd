# The compiled build's declarations for address.py (Cython augmenting .pxd).
cdef class Address:
    cdef public object display
    cdef public object _uri
    cdef public object _uri_text
    cdef public object params
    cdef public object _text
