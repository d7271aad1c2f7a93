# -*- test-case-name: tests.test_transport -*-
"""
What every transport shares: where a message came from (L{Source}), where
one goes (L{Peer}), and the rules of RFC 3261 18.2 and RFC 3581 for stamping
the Via of a received request and choosing where a response goes.
"""

import ipaddress
from collections import namedtuple

from sipcluster.sip.errors import ParseError
from sipcluster.sip.uri import format_hostport

RELIABLE = frozenset(["tcp", "tls", "sctp", "ws", "wss"])


class Peer(namedtuple("Peer", "transport host port")):
    """
    A next hop: transport (lower-case "udp", "tcp", "tls"), a numeric host
    (no brackets), and a port.
    """

    __slots__ = ()

    def __new__(cls, transport, host, port):
        # namedtuple's own __new__ is Python made by exec: interpreted
        # even in the compiled build, and a proxy makes a Peer per message.
        return tuple.__new__(cls, (transport, host, port))

    @property
    def reliable(self):
        return self.transport in RELIABLE

    def __str__(self):
        return "%s:%s" % (self.transport, format_hostport(self.host, self.port))


def new_peer(transport, host, port):
    """
    C{Peer(transport, host, port)} without the class call (compiled: a C
    function making the tuple, where the call runs the type's __new__
    through Python's call protocol, a thousand instructions).
    """
    return tuple.__new__(Peer, (transport, host, port))


class Source:
    """
    Where a message arrived from, and the local endpoint to answer through
    (the UDP socket it arrived on, or the TCP connection).

    @ivar local: an object with C{send(data, peer)}; answers use it so that
        a response leaves from the socket or connection the request used
        (needed behind NAT, RFC 3581 4).
    """

    __slots__ = ("transport", "host", "port", "local")

    def __init__(self, transport, host, port, local):
        self.transport = transport
        self.host = host
        self.port = port
        self.local = local

    @property
    def peer(self):
        return new_peer(self.transport, self.host, self.port)

    def __repr__(self):
        return "<Source %s>" % (self.peer,)


def bare_host(host):
    """A host without IPv6 brackets."""
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def same_ip(a, b):
    """Whether two numeric addresses are the same (v6 written differently)."""
    if a == b:
        return True
    if ":" not in a and ":" not in b:
        # Two IPv4 addresses are the same only when written the same way
        # (ipaddress refuses leading zeros), and a name is no address:
        # no parse (ipaddress is Python, several microseconds a call, and
        # every request to a next hop on port 5060 asks is_local).
        return False
    try:
        return ipaddress.ip_address(bare_host(a)) == ipaddress.ip_address(bare_host(b))
    except ValueError:
        return False


def stamp_via(request, source):
    """
    Record the real source of a request in its top Via: received when the
    sent-by host differs from the packet's source address (RFC 3261
    18.2.1), and rport filled in when the client asked for it (RFC 3581 4).
    """
    via = request._top_via()   # (compiled: a C call on the typed request)
    if via is None:
        return
    params = {}
    if "rport" in via.params:
        params["received"] = source.host
        params["rport"] = str(source.port)
    elif not same_ip(via.host, source.host):
        params["received"] = source.host
    if params:
        request.set_top_via(via.with_params(**params))


def response_destination(response, source=None):
    """
    Where a response goes by its top Via (RFC 3261 18.2.2, RFC 3581 4):
    returns a L{Peer}; raises L{ParseError} when it has no Via.  For a
    reliable transport the caller should first try the connection the
    request came on.
    """
    via = response._top_via()
    if via is None:
        raise ParseError("No Via")
    transport = via.transport.lower()
    # (Its parameters read from the dict, and rport by the C call beneath
    # the property: the Via is typed, compiled.)
    params = via.params
    maddr = params.get("maddr")
    if maddr:
        return new_peer(transport, bare_host(maddr), via.port or 5060)
    host = params.get("received") or bare_host(via.host)
    port = via._rport() or via.port
    if port is None:
        port = 5061 if transport == "tls" else 5060
    return new_peer(transport, bare_host(host), port)
