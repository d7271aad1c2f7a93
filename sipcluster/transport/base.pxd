# The compiled build's declarations for base.py (Cython augmenting .pxd).
import cython

from sipcluster.sip.message cimport Message, Request
from sipcluster.sip.uri cimport format_hostport
from sipcluster.sip.via cimport Via

cdef class Source:
    cdef public object transport
    cdef public object host
    cdef public object port
    cdef public object local

cpdef new_peer(transport, host, port)
cpdef bare_host(str host)
cpdef same_ip(a, b)
@cython.locals(via=Via)
cpdef stamp_via(Request request, Source source)
@cython.locals(via=Via, params=dict)
cpdef response_destination(Message response, source=*)
