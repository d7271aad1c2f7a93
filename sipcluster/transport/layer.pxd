# The compiled build's declarations for layer.py (Cython augmenting .pxd):
# what it calls of other compiled modules, called directly (cimport).
import cython

from sipcluster.sip.grammar cimport remember
from sipcluster.sip.message cimport Message, make_response, parse_message
from sipcluster.sip.uri cimport format_hostport
from sipcluster.transport.base cimport bare_host, response_destination, same_ip, stamp_via

@cython.locals(memo=dict)
cpdef is_name(host)

# The transport layer: an extension type whose hot methods the forwarder
# and the proxy modules call in C.  (A __dict__ for what callers attach.)
cdef class TransportLayer:
    cdef dict __dict__
    cdef public object reactor
    cdef public list listen_addresses
    cdef public object advertise
    cdef public object max_message_size
    cdef public object server_header
    cdef public object reuse_port
    cdef public object private_port
    cdef public object listen_tcp
    cdef public object receiver
    cdef public object stats
    cdef public object stun
    cdef public object trace
    cdef public object resolver
    cdef public list udp
    cdef public list tcp
    cdef public list ports
    cdef public object table
    cdef public object cluster_name
    cdef public dict _sent_by
    cdef public dict _record_route
    cdef public dict _record_route_uris
    cdef public set _sent_by_text
    cdef public set _local
    cdef public dict _is_local
    cdef public object _local_ports
    cpdef _forget_local(self)
    @cython.locals(sent_by=dict)
    cpdef sent_by(self, transport, v6=*)
    @cython.locals(host=str, via_transport=str)
    cpdef make_via(self, str transport, branch, v6=*)
    cpdef record_route_uri(self, transport, v6=*)
    @cython.locals(memo=dict)
    cpdef is_local(self, host, port)
    cpdef _find_local(self, host, port)
    cpdef mentions_local(self, str text)
    cpdef local_ports(self)
    cpdef udp_for(self, host)
    @cython.locals(message=Message)
    cpdef data_received(self, data, source, stream=*)
    cpdef send_request_now(self, Message request, peer)
    cpdef send_data_now(self, data, peer)
    cpdef _send_datagram(self, data, peer)
    cpdef response_peer(self, Message response, source=*)
    cpdef send_response_now(self, Message response, source=*, fallback_only=*, peer=*)
    cpdef sent_by_text(self, transport)
