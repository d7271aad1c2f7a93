# -*- test-case-name: tests.test_transport -*-
"""
SIP over UDP: one datagram is one message (RFC 3261 18.1.1, 18.2.1).

The protocol also tells STUN from SIP on the same port by the first byte
(RFC 5389 6, RFC 7983), so a STUN server can share the SIP port.  The
listening port is L{SIPPort}, Twisted's UDP port at a lower cost per
wake-up: compiled, an IPv4 listener reads and writes with recvfrom and
sendto called in C (udp.pxd); otherwise it reads without the failed read
that ends Twisted's loop.
"""

import os
import socket
import sys

try:
    import cython
except ImportError:  # pure Python without Cython: its decorators do nothing
    from sipcluster.compiled import pure_cython as cython
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
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_SOCKET = socket.socket


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
        # The transport sent through last, its socket, the socket's sendto
        # and family.
        self._sending_through = self._socket = self._sendto = self._family = None

    def makeConnection(self, transport):
        # A port (re)started: its socket is found again at the next send.
        self._sending_through = self._socket = None
        DatagramProtocol.makeConnection(self, transport)

    def doStop(self):
        self._sending_through = self._socket = None
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
            self._socket = sock
            self._sendto = sock.sendto if sock is not None else None
            self._family = sock.family if sock is not None else None
            self._sending_through = transport
        sendto = self._sendto
        host = peer.host
        if cython.compiled and self._family == _AF_INET and type(self._socket) is _SOCKET:
            # Compiled: sendto called directly (udp.pxd) when the host is
            # an IPv4 address; anything else goes the socket module's way.
            sent = _send_ipv4(self._socket, data, host, peer.port)
            if sent is not None:
                if not sent:
                    self.layer.stats["send_errors"] += 1
                return sent
        try:
            if sendto is not None and (host in _NUMERIC or _numeric(host, self._family)):
                sendto(data, (host, peer.port))
            else:
                transport.write(data, (host, peer.port))
        except (OSError, ValueError, OverflowError):
            # (OverflowError: a port out of 0-65535, as sendto says it.)
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
    7,000 instructions, as much as reading the datagram).

    Compiled, an IPv4 listener reads until EAGAIN with recvfrom called in C
    (L{_read_ipv4}, udp.pxd), where the failed read costs the system call
    and nothing else.  Otherwise (pure Python, IPv6, a socket that is not a
    C{socket.socket}): a SIP node is mostly woken for one datagram, so after
    the first one this port asks the kernel whether another is queued
    (C{FIONREAD}, no exception) and returns when none is.  When one is, it
    reads on as Twisted's port does.  Either way at most C{maxThroughput}
    bytes are read a wake-up, so that a flood cannot starve timers and TCP,
    and read errors are handled as Twisted handles them.

    FIONREAD answers the size of the next datagram: a queued empty datagram
    reads as none, and is read at the next wake-up (epoll is level
    triggered), never lost or spun on; the compiled read reads it at once.
    """

    # Where FIONREAD writes its answer: a writable buffer (given bytes,
    # ioctl first fails to parse them as writable, making an error message).
    _queued = None

    def doRead(self):
        if cython.compiled and self.addressFamily == _AF_INET and type(self.socket) is _SOCKET:
            # Compiled, an IPv4 listener reads with recvfrom called directly
            # (udp.pxd), until EAGAIN: that failed read costs a system call
            # and no exception there.
            return _read_ipv4(self)
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


# The compiled build's IPv4 datagram path: _read_ipv4, _peer, _send_ipv4
# and _ipv4_address, called only where cython.compiled (the pure-Python
# build never runs them); sipcluster_recv4, sipcluster_send4 and
# sipcluster_udp_buffer are C, declared in udp.pxd.

# Each source's (host, port), as recvfrom gives it, by its address and port
# (s_addr << 16 | port): a node hears from a few hundred peers, over and
# over, and an address tuple is then not made for every datagram.
# Bounded: emptied when full.
_PEERS = {}
_PEERS_SIZE = 4096
# Each destination host's address as s_addr, or -1 when the text is not an
# IPv4 address (sent through the socket module); bounded.
_IPV4 = {}
_IPV4_SIZE = 4096


def _read_ipv4(port):
    """
    L{SIPPort.doRead} for an IPv4 socket: datagrams read until EAGAIN or
    C{maxThroughput} bytes, errors handled as Twisted's port handles them.
    The descriptor is asked for again after each datagram, so that a
    protocol that closed the socket meanwhile ends the wake-up (as
    FIONREAD failing does in the pure-Python build), and a closed socket
    (descriptor -1) is not read (where Twisted's port raises EBADF; the
    reactor checks the descriptor before it calls doRead anyway).
    """
    fd = port.socket.fileno()
    size = port.maxPacketSize
    limit = port.maxThroughput
    received = port.protocol.datagramReceived
    peers = _PEERS
    read = 0
    host = 0
    port_number = 0
    while read < limit and fd >= 0:
        n = sipcluster_recv4(fd, size, cython.address(host), cython.address(port_number))  # noqa: F821
        if n < 0:
            no = -n
            if no in udp._sockErrReadIgnore:
                return None
            if no in udp._sockErrReadRefuse:
                if port._connectedAddr:
                    port.protocol.connectionRefused()
                return None
            raise OSError(no, os.strerror(no))
        read += n
        data = sipcluster_udp_buffer[:n]  # noqa: F821
        key = (cython.cast(cython.ulonglong, host) << 16) | port_number
        addr = peers.get(key)
        if addr is None:
            addr = _peer(key, host, port_number)
        try:
            received(data, addr)
        except BaseException:
            log.err()
        fd = port.socket.fileno()
    return None


def _peer(key, host, port):
    """The (host, port) of a source, its host as s_addr: made and kept."""
    addr = (socket.inet_ntoa(host.to_bytes(4, sys.byteorder)), port)
    if len(_PEERS) >= _PEERS_SIZE:
        _PEERS.clear()
    _PEERS[key] = addr
    return addr


def _send_ipv4(sock, payload, host, port):
    """
    C{payload} sent to C{host}:C{port} on C{sock} (an IPv4 socket): True,
    False when it failed (what socket.sendto raises), None when C{host} is
    not an IPv4 address or C{payload} not bytes (for the socket module).
    """
    if type(payload) is not bytes:
        return None
    value = _IPV4.get(host)
    if value is None:
        value = _ipv4_address(host)
    address = value
    if address < 0:
        return None
    number = port
    if number < 0 or number > 65535:
        return False
    fd = sock.fileno()
    if fd < 0:
        return False
    data = payload
    error = sipcluster_send4(fd, data, len(data), address, number)  # noqa: F821
    return error == 0


def _ipv4_address(host):
    try:
        value = int.from_bytes(socket.inet_pton(_AF_INET, host), sys.byteorder)
    except (OSError, TypeError, ValueError):
        value = -1
    if len(_IPV4) >= _IPV4_SIZE:
        _IPV4.clear()
    _IPV4[host] = value
    return value


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
