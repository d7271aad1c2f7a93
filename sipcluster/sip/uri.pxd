# The compiled build's declarations for uri.py (Cython augmenting .pxd):
# the URI classes as extension types; the C types of the host parsers'
# variables (not decorators in the .py: mutmut does not mutate those).
import cython

from sipcluster.sip.grammar cimport format_params, parse_params, remember

cpdef str parse_host(str text)

@cython.locals(host=str, rest=str, colon=str, end=Py_ssize_t, hostport=tuple)
cpdef tuple split_hostport(str text)
cpdef str format_hostport(host, port)

@cython.locals(colon=Py_ssize_t, scheme=str)
cpdef _parse_uri(text)

@cython.locals(memo=dict)
cpdef parse_uri(text)
cdef class SipURI:
    cdef public object scheme
    cdef public object user
    cdef public object password
    cdef public str host
    cdef public object port
    cdef public dict params
    cdef public object headers
    cdef public object _text
    cpdef _transport(self)
    cpdef _effective_port(self)

cdef class TelURI:
    cdef public object number
    cdef public dict params
    cdef public object _text

cdef class AbsoluteURI:
    cdef public object scheme
    cdef public object text
