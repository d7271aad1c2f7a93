# -*- test-case-name: tests.test_transport -*-
"""
SIP over TCP (RFC 3261 18.3): stream framing, a table of connections keyed
by remote address so that requests and responses reuse them (RFC 3261
18.2.2, RFC 5923 in spirit), an idle timeout and a connection limit.
"""

from twisted.internet import defer, error
from twisted.internet.protocol import ClientFactory, Protocol, ServerFactory
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure

from sipcluster.schema import ConfigSection, Key
from sipcluster.sip.errors import SIPError
from sipcluster.sip.framing import PING, PONG, StreamFramer
from sipcluster.transport.base import Peer, Source

CONFIG = ConfigSection("tcp", {
    "idle_timeout_s": Key(int, 600, "Close a TCP connection after this many seconds without traffic.", minimum=1),
    "max_connections": Key(int, 10000, "Most TCP connections a node holds; further ones are refused.", minimum=1),
})



class SIPStreamProtocol(Protocol, TimeoutMixin):
    """One TCP connection carrying SIP messages both ways."""

    log = Logger()
    transport_name = "tcp"

    def __init__(self, table):
        self.table = table
        self.framer = StreamFramer(table.max_message_size)
        self.peer = None
        self.source = None

    def callLater(self, delay, f, *a):
        # TimeoutMixin schedules through this; the injected reactor lets
        # tests drive the idle timeout with a Clock.
        return self.table.reactor.callLater(delay, f, *a)

    def connectionMade(self):
        address = self.transport.getPeer()
        self.peer = Peer(self.transport_name, address.host, address.port)
        self.source = Source(self.transport_name, address.host, address.port, self)
        self.setTimeout(self.table.idle_timeout)
        self.table.connection_made(self)

    def dataReceived(self, data):
        self.resetTimeout()
        try:
            items = self.framer.feed(data)
        except SIPError as e:
            # Framing is lost: nothing later on this stream can be trusted.
            self.table.layer.stats["dropped"] += 1
            self.log.info("closing {peer}: {reason}", peer=str(self.peer), reason=e.reason)
            self.transport.loseConnection()
            return
        for item in items:
            if item is PING:
                # RFC 5626 4.4.1: answer a CRLF CRLF ping with a CRLF pong.
                self.transport.write(b"\r\n")
            elif item is PONG:
                pass
            else:
                self.table.layer.data_received(item, self.source, stream=True)

    def send(self, data, peer=None):
        if self.transport is None or not self.connected:
            return False
        self.resetTimeout()
        self.transport.write(data)
        return True

    def timeoutConnection(self):
        self.transport.loseConnection()

    def connectionLost(self, reason):
        # makeConnection set `connected` and nothing in Twisted clears it
        # on the protocol: without this, send() went on writing into the
        # dead transport and a response meant for this connection was lost
        # instead of going by its Via (RFC 3261 18.2.2).
        self.connected = False
        self.setTimeout(None)
        self.table.connection_lost(self)


class SIPStreamFactory(ServerFactory):
    """Accepts TCP connections for one listen address."""

    noisy = False

    protocol = SIPStreamProtocol

    def __init__(self, table, host, port):
        self.table = table
        self.host = host
        self.port = port

    def buildProtocol(self, addr):
        if len(self.table.connections) >= self.table.max_connections:
            self.table.layer.stats["refused_connections"] += 1
            return None
        return self.protocol(self.table)


class _ConnectFactory(ClientFactory):
    # One per outgoing connection: not worth two log lines each.
    noisy = False

    def __init__(self, table, waiting):
        self.table = table
        self.waiting = waiting

    def buildProtocol(self, addr):
        proto = SIPStreamProtocol(self.table)
        proto.factory = self
        return proto

    def clientConnectionFailed(self, connector, reason):
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            waiting.errback(reason)


class ConnectionTable:
    """
    Every open TCP connection, keyed by the remote (host, port), whether we
    accepted it or opened it.
    """

    def __init__(self, layer, reactor, idle_timeout, max_connections, max_message_size):
        self.layer = layer
        self.reactor = reactor
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_message_size = max_message_size
        self.connections = {}
        self._connecting = {}
        # Outbound connections leave from this address (our listen address)
        # rather than whatever the routing table picks.
        self.bind_host = None

    def connection_made(self, proto):
        key = (proto.peer.host, proto.peer.port)
        self.connections[key] = proto
        waiting = getattr(getattr(proto, "factory", None), "waiting", None)
        if waiting is not None:
            proto.factory.waiting = None
            waiting.callback(proto)

    def connection_lost(self, proto):
        if proto.peer is not None:
            key = (proto.peer.host, proto.peer.port)
            if self.connections.get(key) is proto:
                del self.connections[key]

    def get(self, host, port):
        return self.connections.get((host, port))

    def connect(self, peer, timeout=10):
        """
        A connection to C{peer}, reused when one is open: a Deferred firing
        with the protocol.
        """
        proto = self.connections.get((peer.host, peer.port))
        if proto is not None:
            return defer.succeed(proto)
        key = (peer.host, peer.port)
        pending = self._connecting.get(key)
        if pending is None:
            if len(self.connections) >= self.max_connections:
                return defer.fail(error.ConnectError("connection limit reached"))
            waiting = defer.Deferred()
            bind = (self.bind_host, 0) if self.bind_host else None
            self.reactor.connectTCP(peer.host, peer.port, _ConnectFactory(self, waiting),
                                    timeout, bindAddress=bind)
            pending = self._connecting[key] = []

            def done(result):
                # Everything queued while connecting goes out, in order.
                for d in self._connecting.pop(key, []):
                    if isinstance(result, Failure):
                        d.errback(result)
                    else:
                        d.callback(result)
            waiting.addBoth(done)
        d = defer.Deferred()
        pending.append(d)
        return d

    def close_all(self):
        for proto in list(self.connections.values()):
            if proto.transport is not None:
                proto.transport.loseConnection()
