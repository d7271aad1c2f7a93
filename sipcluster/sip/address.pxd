# The compiled build's declarations for address.py (Cython augmenting .pxd).
import cython

from sipcluster.sip.grammar cimport format_params, parse_params, quote, recall, unquote
from sipcluster.sip.uri cimport parse_uri

cdef class Address:
    cdef public object display
    cdef public object _uri
    cdef public object _uri_text
    cdef public dict params
    cdef public object _text

@cython.locals(display=str, i=Py_ssize_t, n=Py_ssize_t, c=Py_UCS4, rest=str, lt=Py_ssize_t,
               rest_offset=str, gt=Py_ssize_t, uri_text=str, tail=str, paramtext=str, semi=str,
               params=dict)
cpdef _parse_address_text(cls, str text)
cpdef parse_address(text)
