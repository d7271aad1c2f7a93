# The compiled build's declarations for message.py (Cython augmenting
# .pxd): the message classes become extension types, their slots C fields.
cdef class Message:
    cdef public list _fields
    cdef public object body
    cdef public dict _cache

cdef class Request(Message):
    cdef public object method
    cdef public object _uri
    cdef public object _uri_text
    cdef public object version

cdef class Response(Message):
    cdef public object status
    cdef public object reason
    cdef public object version
