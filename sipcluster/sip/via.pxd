# The compiled build's declarations for via.py (Cython augmenting .pxd).
import cython

from sipcluster.sip.grammar cimport (
    format_params, is_token, params_of, recall, remember, split_semicolons)
from sipcluster.sip.uri cimport format_hostport, split_hostport

cdef class Via:
    cdef public object protocol
    cdef public str transport
    cdef public str host
    cdef public object port
    cdef public dict params
    cdef public object _text
    cpdef _rport(self)
    cpdef tuple _sent_by(self)

cdef class CSeq:
    cdef public object number
    cdef public object method

cpdef dict _via_params(list parts)
@cython.locals(parts=list, head=str, fields=list, transport=str, sent_by=str, slash=Py_ssize_t,
               proto=str, name=str, sep=str, version=str, rest=str, params=dict)
cpdef _parse_via_text(cls, str text)
cpdef share_via(via, str text)
cpdef parse_via(text)
cpdef parse_cseq(text)
