# The compiled build's declarations for forwarding.py (Cython augmenting .pxd).
import cython

from sipcluster.sip.grammar cimport remember
from sipcluster.sip.message cimport make_response
from sipcluster.transport.base cimport bare_host

cdef class Target:
    cdef public object uri
    cdef public object q
    cdef public object path
    cdef public object received
    cdef public object rank
    cdef public object next_hop
    cdef public object timeout
    cdef public object on_failed

@cython.locals(empties=dict)
cpdef str short_hash(str text, int size)
cpdef str loop_hash(request)
cpdef str stateless_branch_suffix(request, target_uri)
@cython.locals(memo=dict)
cpdef is_numeric(host)
cpdef _is_v6(uri, received)
