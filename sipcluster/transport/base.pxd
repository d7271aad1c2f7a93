# The compiled build's declarations for base.py (Cython augmenting .pxd).
from sipcluster.sip.uri cimport format_hostport

cdef class Source:
    cdef public object transport
    cdef public object host
    cdef public object port
    cdef public object local

cpdef bare_host(str host)
cpdef same_ip(a, b)
cpdef stamp_via(request, source)
cpdef response_destination(response, source=*)
