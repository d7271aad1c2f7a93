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

cpdef parse_address(text)
