# -*- test-case-name: tests.test_transport -*-
"""
SIP over UDP: one datagram is one message (RFC 3261 18.1.1, 18.2.1).

The protocol also tells STUN from SIP on the same port by the first byte
(RFC 5389 6, RFC 7983), so a STUN server can share the SIP port.  The
listening port is L{SIPPort}, Twisted's UDP port reading one datagram per
wake-up without the failed read that ends Twisted's loop.
"""

import socket

from twisted.internet import posixbase, udp
from twisted.internet.protocol import DatagramProtocol
from twisted.python import log

from sipcluster.transport.base import Peer, Source

try:
    from fcntl import ioctl
    from termios import FIONREAD
except ImportError:  # not a POSIX system: read as Twisted's Port does
    ioctl = FIONREAD = None

# What FIONREAD answers for an empty receive queue (a C int, 0).
_NOTHING = bytes(4)
_AF_INET6 = socket.AF_INET6


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
        # The transport sent through last, its socket's sendto and family.
        self._sending_through = self._sendto = self._family = None

    def makeConnection(self, transport):
        # A port (re)started: its socket is found again at the next send.
        self._sending_through = None
        DatagramProtocol.makeConnection(self, transport)

    def doStop(self):
        self._sending_through = None
        DatagramProtocol.doStop(self)

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
        # are what Port.write would raise (EINTR is retried by Python).  The
        # socket's sendto is found once per port started, not per datagram.
        if transport is not self._sending_through:
            sock = getattr(transport, "socket", None)
            self._sendto = sock.sendto if sock is not None else None
            self._family = sock.family if sock is not None else None
            self._sending_through = transport
        sendto = self._sendto
        host = peer.host
        try:
            if sendto is not None and (host in _NUMERIC or _numeric(host, self._family)):
                sendto(data, (host, peer.port))
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


class SIPPort(udp.Port):
    """
    Twisted's UDP port for SIP listeners, reading what it reads the same
    way, at a lower cost per wake-up.

    L{udp.Port.doRead} reads until C{recvfrom} fails with EAGAIN, so every
    wake-up pays for an C{OSError} made with its message and caught (about
    7,000 instructions, as much as reading the datagram).  A SIP node is
    mostly woken for one datagram: after the first one this port asks the
    kernel whether another is queued (C{FIONREAD}, no exception) and
    returns when none is.  When one is, it reads on as Twisted's port does,
    until EAGAIN or C{maxThroughput} bytes, so that a flood cannot starve
    timers and TCP; read errors are handled as Twisted handles them.

    FIONREAD answers the size of the next datagram: a queued empty datagram
    reads as none, and is read at the next wake-up (epoll is level
    triggered), never lost or spun on.
    """

    # Where FIONREAD writes its answer: a writable buffer (given bytes,
    # ioctl first fails to parse them as writable, making an error message).
    _queued = None

    def doRead(self):
        # What the loop uses is looked up once per wake-up, not per datagram.
        recvfrom = self.socket.recvfrom
        size = self.maxPacketSize
        limit = self.maxThroughput
        received = self.protocol.datagramReceived
        ipv6 = self.addressFamily == _AF_INET6
        read = 0
        asked = ioctl is None
        while read < limit:
            try:
                data, addr = recvfrom(size)
            except OSError as se:
                no = se.args[0]
                if no in udp._sockErrReadIgnore:
                    return
                if no in udp._sockErrReadRefuse:
                    if self._connectedAddr:
                        self.protocol.connectionRefused()
                    return
                raise
            read += len(data)
            if ipv6:
                # (host, port) as udp.Port gives it (no flow and scope ID).
                addr = addr[:2]
            try:
                received(data, addr)
            except BaseException:
                log.err()
            if not asked:
                asked = True
                queued = self._queued
                if queued is None:
                    queued = self._queued = bytearray(4)
                try:
                    ioctl(self.socket.fileno(), FIONREAD, queued)
                    if queued == _NOTHING:
                        return
                except (OSError, ValueError):
                    # The socket closed under us (its fileno is -1), or the
                    # kernel cannot tell: the next wake-up, if any, reads on.
                    return


# How many bytes a listener reads of each datagram: the most one can hold
# (Twisted's ports read 8,192, cutting longer ones silently).  A message
# longer than sip.max_message_size is still read whole, so that it can be
# answered 513 (RFC 3261 18.1.1, 21.5.7) with its headers.
READ_SIZE = 65536


def listen_udp(reactor, port, protocol, interface="", sock=None):
    """
    A L{SIPPort} for C{protocol} on C{interface}:C{port}, or on C{sock} (a
    bound socket of the address family of C{interface}, which the port
    duplicates: close it afterwards) as C{adoptDatagramPort} does, reading
    datagrams of up to L{READ_SIZE} bytes.  The port is made the way the
    reactor's own C{listenUDP} makes Twisted's, so only on a reactor whose
    UDP ports are L{udp.Port} (the POSIX reactors); any other reactor
    (IOCP, a test's memory reactor) makes its own.
    """
    if not isinstance(reactor, posixbase.PosixReactorBase):
        if sock is None:
            return reactor.listenUDP(port, protocol, interface=interface, maxPacketSize=READ_SIZE)
        return reactor.adoptDatagramPort(sock.fileno(), sock.family, protocol,
                                         maxPacketSize=READ_SIZE)
    if sock is None:
        listening = SIPPort(port, protocol, interface, READ_SIZE, reactor=reactor)
    else:
        listening = SIPPort._fromListeningDescriptor(
            reactor, sock.fileno(), sock.family, protocol, maxPacketSize=READ_SIZE)
    listening.startListening()
    return listening
