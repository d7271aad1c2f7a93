# -*- test-case-name: tests.test_transport -*-
"""
SIP over UDP: one datagram is one message (RFC 3261 18.1.1, 18.2.1).

The protocol also tells STUN from SIP on the same port by the first byte
(RFC 5389 6, RFC 7983), so a STUN server can share the SIP port.
"""

import socket

from twisted.internet.protocol import DatagramProtocol

from sipcluster.transport.base import Peer, Source


# Addresses already seen to be numeric (a few hundred peers; emptied when
# large).  One set for both families: an address of the other family than
# the socket's is refused by sendto itself (no lookup), and counted.
_NUMERIC = set()


def _numeric(host, family):
    try:
        socket.inet_pton(family, host)
    except (OSError, ValueError):
        return False
    if len(_NUMERIC) >= 4096:
        _NUMERIC.clear()
    _NUMERIC.add(host)
    return True


class SIPDatagramProtocol(DatagramProtocol):
    """
    A UDP listener.  Received datagrams go to C{layer.datagram_received};
    C{send} writes to the socket.

    @ivar sent_by: (host, port) this listener writes into Via.
    """

    transport_name = "udp"

    def __init__(self, layer, host, port):
        self.layer = layer
        self.host = host
        self.port = port
        self.stun = None

    def datagramReceived(self, data, addr):
        host, port = addr[0], addr[1]
        if data and data[0] < 2 and self.stun is not None:
            # STUN messages start with two zero bits; SIP starts with a
            # letter or CR/LF (RFC 7983 7).
            self.stun.datagram_received(data, (host, port), self)
            return
        self.layer.data_received(data, Source("udp", host, port, self))

    def send(self, data, peer):
        """Write C{data} to C{peer}; socket errors are counted, never raised."""
        transport = self.transport
        if transport is None:
            return False
        # Twisted's Port.write checks the address's syntax and family on
        # every call (three isIPAddress): a listening port's socket is
        # written to directly once its address is known to be numeric (a
        # name would be looked up, blocking, by the socket module).  Errors
        # are what Port.write would raise (EINTR is retried by Python).
        sock = getattr(transport, "socket", None)
        host = peer.host
        try:
            if sock is not None and (host in _NUMERIC or _numeric(host, sock.family)):
                sock.sendto(data, (host, peer.port))
            else:
                transport.write(data, (host, peer.port))
        except (OSError, ValueError):
            self.layer.stats["send_errors"] += 1
            return False
        return True

    def peer_for(self, host, port):
        return Peer("udp", host, port)

    @property
    def family(self):
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET
