# The compiled build's declarations for forwarding.py (Cython augmenting .pxd).
import cython

from sipcluster.sip.grammar cimport remember
from sipcluster.sip.message cimport Request, make_response
from sipcluster.sip.uri cimport SipURI
from sipcluster.sip.via cimport Via
from sipcluster.transport.base cimport bare_host, new_peer
from sipcluster.transport.layer cimport TransportLayer

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
cpdef str loop_hash(Request request)
@cython.locals(via=Via, branch=str)
cpdef str stateless_branch_suffix(Request request, target_uri)
@cython.locals(memo=dict)
cpdef is_numeric(host)
cpdef _is_v6(uri, received)

# The RFC 3261 16 steps: an extension type whose methods the proxy modules
# that cimport it call in C.
cdef class Forwarder:
    cdef public TransportLayer transport
    cdef public frozenset domains
    cdef public object record_route
    cdef public object resolver
    cdef public object server_header
    cdef public tuple transports
    cpdef check(self, Request request)
    @cython.locals(sip_uri=SipURI)
    cpdef is_own_uri(self, uri)
    cpdef preprocess_routes(self, Request request)
    @cython.locals(sip_uri=SipURI)
    cpdef is_our_domain(self, uri)
    cpdef addressed_to_us(self, Request request)
    @cython.locals(out=Request)
    cpdef prepare(self, Request request, Target target, branch_suffix, inbound_transport,
                  inbound_v6=*)
    @cython.locals(via=Via)
    cpdef for_peer(self, Request out, peer, branch=*, inbound=*)
    cpdef next_hop_uri(self, Request request)
    @cython.locals(sip_uri=SipURI)
    cpdef transport_for(self, uri, received=*)
    @cython.locals(sip_uri=SipURI)
    cpdef numeric_peer(self, uri, transport, received=*)
    cpdef cached_peers(self, uri)
    cpdef local_response(self, request, status, reason=*, extra=*, to_tag=*)
