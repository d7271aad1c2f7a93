"""
In-process test harness: the real transport layer on fake sockets (or a
whole node built by build_node on a reactor of fake sockets), a Clock, and
helpers to feed datagrams and read what was sent.
"""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from sipcluster.config import ListenAddress
from sipcluster.sip.message import parse_message
from sipcluster.transport.layer import TransportLayer
from sipcluster.transport.udp import SIPDatagramProtocol


class FakeDatagramTransport:
    """Stands in for a UDP port: records (bytes, address) written."""

    def __init__(self, host, port):
        self.host = host
        self.port = port
        self.written = []

    def write(self, data, addr):
        self.written.append((data, addr))

    def getHost(self):
        class Address:
            pass
        address = Address()
        address.host, address.port = self.host, self.port
        return address

    def stopListening(self):
        return defer.succeed(None)


class Harness:
    """
    A transport layer listening (in memory) on udp 127.0.0.1:5060, with a
    Clock for time.
    """

    def __init__(self, host="127.0.0.1", port=5060, **kwargs):
        self.clock = Clock()
        self.layer = TransportLayer(self.clock, [ListenAddress("udp", host, port)], **kwargs)
        self.udp = SIPDatagramProtocol(self.layer, host, port)
        self.udp.stun = self.layer.stun
        self.socket = FakeDatagramTransport(host, port)
        self.udp.makeConnection(self.socket)
        self.layer.udp.append(self.udp)
        self.layer._add_local("udp", host, port)
        self.layer._add_local("tcp", host, port)

    def receive(self, data, addr=("127.0.0.1", 5080)):
        if not isinstance(data, bytes):
            data = data.to_bytes()
        self.udp.datagramReceived(data, addr)

    def sent(self, clear=True):
        """[(message, (host, port))] written since the last call."""
        out = [(parse_message(data), addr) for data, addr in self.socket.written]
        if clear:
            del self.socket.written[:]
        return out

    def sent_to(self, addr):
        return [m for m, a in self.sent() if a == addr]

    def advance(self, seconds, step=0.05):
        """Advance the clock in small steps so chained timers all fire."""
        remaining = seconds
        while remaining > 1e-9:
            delta = min(step, remaining)
            self.clock.advance(delta)
            remaining -= delta


class RecordingTU:
    """A transaction user that records what the transaction layer hands it."""

    def __init__(self):
        self.requests = []
        self.cancels = []
        self.acks = []
        self.strays = []

    def request_received(self, tx):
        self.requests.append(tx)

    def cancel_received(self, cancel_tx, invite_tx):
        self.cancels.append((cancel_tx, invite_tx))

    def ack_received(self, ack, source):
        self.acks.append(ack)

    def stray_response(self, response, source):
        self.strays.append(response)


class RecordingOwner:
    """A client transaction owner that records events."""

    def __init__(self):
        self.responses = []
        self.timeouts = 0
        self.failures = 0

    def response_received(self, tx, response):
        self.responses.append(response.status)

    def timed_out(self, tx):
        self.timeouts += 1

    def transport_failed(self, tx):
        self.failures += 1


class NodeReactor(MemoryReactorClock):
    """
    A MemoryReactorClock whose UDP ports are fake sockets recording what is
    written, in one list for all of them, so that a whole node built by
    L{build_node} runs in memory.
    """

    def __init__(self):
        MemoryReactorClock.__init__(self)
        self.protocols = {}
        self.sockets = []
        self._ephemeral = 40000

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        if port == 0:
            self._ephemeral += 1
            port = self._ephemeral
        sock = FakeDatagramTransport(interface, port)
        protocol.makeConnection(sock)
        self.protocols[(interface, port)] = protocol
        self.sockets.append(sock)
        return sock


class NoDNS:
    """A resolver of next-hop names that knows none (tests send no DNS)."""

    def resolve(self, uri, transports):
        return defer.fail(LookupError(uri.host))


class NodeHarness:
    """
    A node made by L{build_node} from C{settings} (a TOML-like dict of
    sections), listening in memory on udp and tcp 127.0.0.1:5060, driven
    by datagrams and a clock.
    """

    def __init__(self, settings=None, location=None, host="127.0.0.1", port=5060, resolver=None):
        from sipcluster import config
        from sipcluster.node import build_node
        data = {"sip": {"listen": ["udp:%s:%d" % (host, port), "tcp:%s:%d" % (host, port)]}}
        for section, values in (settings or {}).items():
            data.setdefault(section, {}).update(values)
        data.setdefault("node", {}).setdefault("id", "test-node")
        self.config = config.build(data, "test.toml")
        self.clock = self.reactor = NodeReactor()
        self.node = build_node(self.config, self.reactor, location=location,
                               resolver=resolver or NoDNS())
        self.node.startService()
        self.layer = self.node.transport
        self.host, self.port = host, port

    def receive(self, data, addr=("127.0.0.1", 5080), to=None):
        if not isinstance(data, bytes):
            data = data.to_bytes()
        self.reactor.protocols[to or (self.host, self.port)].datagramReceived(data, addr)

    def sent(self, clear=True):
        """[(message, (host, port))] written since the last call, from every socket."""
        out = []
        for sock in self.reactor.sockets:
            out += [(parse_message(data), addr) for data, addr in sock.written]
            if clear:
                del sock.written[:]
        return out

    def sent_to(self, addr):
        return [m for m, a in self.sent() if a == addr]

    def advance(self, seconds, step=0.05):
        Harness.advance(self, seconds, step)

    def stop(self):
        return self.node.stopService()
