"""Tests for the transport layer: UDP, TCP, Via stamping, where responses go."""

import socket

import pytest

from collections import Counter

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.internet.testing import StringTransport

from sipcluster.compiled import is_compiled
from sipcluster.sip.errors import ParseError
from sipcluster.sip.message import make_response, parse_message
from sipcluster.transport.base import Peer, Source, response_destination, stamp_via
from sipcluster.transport.tcp import ConnectionTable, SIPStreamFactory, SIPStreamProtocol
from tests.harness import Harness
from tests.sipdata import INVITE, OK, REGISTER

# Whether the UDP transport runs compiled (its IPv4 datagrams then read and
# written in C, sipcluster/transport/udp.pxd).
import sipcluster.transport.udp as _udp_module  # noqa: E402
COMPILED = is_compiled(_udp_module)


class Receiver:
    def __init__(self):
        self.requests = []
        self.responses = []

    def request_received(self, request, source):
        self.requests.append((request, source))

    def response_received(self, response, source):
        self.responses.append((response, source))


def test_stamp_via_received_and_rport():
    req = parse_message(INVITE.replace(b"branch=z9hG4bK776asdhds", b"branch=z9hG4bK776asdhds;rport"))
    stamp_via(req, Source("udp", "192.0.2.9", 40000, None))
    assert req.top_via.received == "192.0.2.9"
    assert req.top_via.rport == 40000
    assert req.items()[0][0] == "Via"  # stamped where it stood
    req = parse_message(INVITE)
    stamp_via(req, Source("udp", "192.0.2.9", 5060, None))
    assert req.top_via.received == "192.0.2.9" and not req.top_via.has_rport
    # A numeric sent-by equal to the source needs no received (18.2.1).
    req = parse_message(INVITE.replace(b"pc33.atlanta.example.com;", b"192.0.2.9;"))
    stamp_via(req, Source("udp", "192.0.2.9", 5060, None))
    assert req.top_via.received is None


def test_response_destination_rules():
    def dest(via):
        resp = parse_message(OK)
        resp.set("via", via)
        return response_destination(resp)
    assert dest("SIP/2.0/UDP h.example;received=192.0.2.1") == Peer("udp", "192.0.2.1", 5060)
    assert dest("SIP/2.0/UDP h.example:5070;received=192.0.2.1") == Peer("udp", "192.0.2.1", 5070)
    assert dest("SIP/2.0/UDP h.example:5070;received=192.0.2.1;rport=6000") == Peer("udp", "192.0.2.1", 6000)
    assert dest("SIP/2.0/UDP h.example;maddr=239.1.1.1") == Peer("udp", "239.1.1.1", 5060)
    assert dest("SIP/2.0/TCP 192.0.2.4") == Peer("tcp", "192.0.2.4", 5060)
    assert dest("SIP/2.0/TLS [2001:db8::1]") == Peer("tls", "2001:db8::1", 5061)
    bare = parse_message(OK)
    while bare.has("via"):
        bare.pop_first("via")
    with pytest.raises(ParseError):  # (compiled: not a read through None)
        response_destination(bare)


def test_udp_malformed_request_answered_with_reason():
    h = Harness()
    h.layer.receiver = Receiver()
    h.receive(INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: x INVITE"), ("127.0.0.1", 5080))
    (resp, addr), = h.sent()
    assert resp.status == 400 and resp.reason == "Bad CSeq number"
    # 18.2.2: to the received address and the Via port (no rport asked).
    assert addr == ("127.0.0.1", 5060)
    assert resp.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert h.layer.stats["rejected"] == 1
    assert h.layer.receiver.requests == []


def test_udp_505_416_and_drop():
    h = Harness()
    h.layer.receiver = Receiver()
    h.receive(INVITE.replace(b"bob@biloxi.example.com SIP/2.0", b"bob@biloxi.example.com SIP/3.0"))
    h.receive(INVITE.replace(b"INVITE sip:", b"INVITE mailto:"))
    h.receive(b"\x00\x01garbage")
    h.receive(INVITE.replace(b"INVITE sip:", b"ACK sip:").replace(b"314159 INVITE", b"x ACK"))
    assert [m.status for m, a in h.sent()] == [505, 416]
    assert h.layer.stats["dropped"] == 2  # garbage, and a bad ACK (never answered)


def test_bad_via_answered_to_source():
    h = Harness()
    h.layer.receiver = Receiver()
    h.receive(INVITE.replace(b"Via: SIP/2.0/UDP pc33.atlanta.example.com;", b"Via: SIP/2.0/UDP pc33:99999;"),
              ("127.0.0.1", 5099))
    (resp, addr), = h.sent()
    assert resp.status == 400 and addr == ("127.0.0.1", 5099)


def test_valid_messages_reach_the_receiver():
    h = Harness()
    h.layer.receiver = r = Receiver()
    h.receive(REGISTER, ("127.0.0.1", 5080))
    h.receive(OK, ("127.0.0.1", 5081))
    assert r.requests[0][0].method == "REGISTER"
    assert r.requests[0][1].peer == Peer("udp", "127.0.0.1", 5080)
    assert r.responses[0][0].status == 200


# -- TCP ------------------------------------------------------------------------


class FakeLayer:
    def __init__(self):
        self.received = []
        self.stats = Counter()

    def data_received(self, data, source, stream=False):
        self.received.append((data, source, stream))


def connect(table, host="127.0.0.1", port=40001):
    factory = SIPStreamFactory(table, "127.0.0.1", 5060)
    proto = factory.buildProtocol(None)
    if proto is None:
        return None, None
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
    proto.makeConnection(transport)
    return proto, transport


def test_tcp_framing_pipelining_and_table():
    layer = FakeLayer()
    table = ConnectionTable(layer, Clock(), idle_timeout=60, max_connections=10, max_message_size=65535)
    proto, transport = connect(table)
    assert table.get("127.0.0.1", 40001) is proto
    proto.dataReceived(REGISTER + OK[:20])
    proto.dataReceived(OK[20:])
    assert [d for d, s, stream in layer.received] == [REGISTER, OK]
    assert all(stream for d, s, stream in layer.received)
    assert layer.received[0][1].peer == Peer("tcp", "127.0.0.1", 40001)
    proto.connectionLost(None)
    assert table.get("127.0.0.1", 40001) is None


def test_tcp_ping_pong_and_framing_error_closes():
    layer = FakeLayer()
    table = ConnectionTable(layer, Clock(), 60, 10, 65535)
    proto, transport = connect(table)
    proto.dataReceived(b"\r\n\r\n")
    assert transport.value() == b"\r\n"  # RFC 5626 4.4.1 pong
    proto.dataReceived(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n")  # no Content-Length
    assert transport.disconnecting
    assert layer.stats["dropped"] == 1


def test_tcp_idle_timeout():
    clock = Clock()
    table = ConnectionTable(FakeLayer(), clock, idle_timeout=30, max_connections=10, max_message_size=65535)
    proto, transport = connect(table)
    clock.advance(20)
    proto.dataReceived(b"\r\n\r\n")  # traffic resets the timer
    clock.advance(20)
    assert not transport.disconnecting
    clock.advance(11)
    assert transport.disconnecting


def test_tcp_connection_limit():
    layer = FakeLayer()
    table = ConnectionTable(layer, Clock(), 60, 2, 65535)
    connect(table, port=1)
    connect(table, port=2)
    proto, _ = connect(table, port=3)
    assert proto is None
    assert layer.stats["refused_connections"] == 1


def test_tcp_connection_limit_holds_for_connections_out_too():
    from twisted.internet.error import ConnectError
    from twisted.internet.testing import MemoryReactorClock
    reactor = MemoryReactorClock()
    table = ConnectionTable(FakeLayer(), reactor, 60, 2, 65535)
    connect(table, port=1)
    proto, _ = connect(table, port=2)
    failures = []
    table.connect(Peer("tcp", "127.0.0.9", 5070)).addErrback(failures.append)
    (failure,) = failures
    assert failure.check(ConnectError) and reactor.tcpClients == []
    # An open connection is still reused at the limit.
    reused = []
    table.connect(Peer("tcp", "127.0.0.1", 2)).addCallback(reused.append)
    assert reused == [proto]


def test_response_over_the_request_connection():
    h = Harness()
    h.layer.receiver = Receiver()
    table = h.layer.table
    proto = SIPStreamProtocol(table)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40002))
    proto.makeConnection(transport)
    proto.dataReceived(REGISTER.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
    request, source = h.layer.receiver.requests[0]
    h.layer.send_response(make_response(request, 200, to_tag="x"), source)
    assert transport.value().startswith(b"SIP/2.0 200 OK\r\n")


def test_response_without_via_is_dropped():
    h = Harness()
    h.layer.receiver = r = Receiver()
    h.receive(OK.replace(b"Via: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bKnashds8;received=192.0.2.3\r\n", b"")
               .replace(b"Via: ", b"X-Via: "), ("127.0.0.1", 5081))
    assert r.responses == []
    assert h.sent() == []
    assert h.layer.stats["dropped"] == 1


def test_tcp_messages_queued_while_connecting_are_all_sent():
    from twisted.internet.testing import MemoryReactorClock
    reactor = MemoryReactorClock()
    table = ConnectionTable(FakeLayer(), reactor, 60, 10, 65535)
    table.bind_host = "127.0.0.5"
    peer = Peer("tcp", "127.0.0.9", 5070)
    sent = []
    for data in (b"first", b"second"):
        table.connect(peer).addCallback(lambda proto, data=data: sent.append(proto.send(data)))
    (host, port, factory, timeout, bind), = reactor.tcpClients
    assert (host, port, bind) == ("127.0.0.9", 5070, ("127.0.0.5", 0))
    proto = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.9", 5070))
    proto.makeConnection(transport)
    assert transport.value() == b"firstsecond"
    assert sent == [True, True]
    # Later messages reuse the connection without connecting again.
    table.connect(peer).addCallback(lambda proto: proto.send(b"third"))
    assert len(reactor.tcpClients) == 1
    assert transport.value().endswith(b"third")


def test_tcp_connect_failure_fails_every_waiter():
    from twisted.internet.error import ConnectionRefusedError
    from twisted.internet.testing import MemoryReactorClock
    reactor = MemoryReactorClock()
    table = ConnectionTable(FakeLayer(), reactor, 60, 10, 65535)
    failures = []
    for _ in range(2):
        table.connect(Peer("tcp", "127.0.0.9", 5070)).addErrback(failures.append)
    (host, port, factory, timeout, bind), = reactor.tcpClients
    factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    assert len(failures) == 2


# -- UDP sends straight to the socket -------------------------------------------

class _PortLike:
    """A listening port as far as SIPDatagramProtocol.send looks: its socket,
    and Twisted's write, which refuses what is not an address."""

    def __init__(self, sock):
        self.socket = sock
        self.written = []

    def write(self, data, addr):
        from twisted.internet import abstract, error
        if not abstract.isIPAddress(addr[0]) and not abstract.isIPv6Address(addr[0]):
            raise error.InvalidAddressError(addr[0], "not an address")
        if abstract.isIPv6Address(addr[0]) and self.socket.family == socket.AF_INET:
            raise error.InvalidAddressError(addr[0], "IPv4 port write() called with IPv6 address")
        self.written.append((data, addr))


def _udp_pair():
    import socket
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    return sender, receiver


def test_udp_send_writes_to_the_socket_of_a_listening_port():
    from sipcluster.transport.udp import SIPDatagramProtocol
    sender, receiver = _udp_pair()
    try:
        layer = Harness().layer
        proto = SIPDatagramProtocol(layer, "127.0.0.1", sender.getsockname()[1])
        proto.transport = _PortLike(sender)
        assert proto.send(b"OPTIONS", Peer("udp", "127.0.0.1", receiver.getsockname()[1]))
        assert proto.send(b"again", Peer("udp", "127.0.0.1", receiver.getsockname()[1]))
        assert receiver.recvfrom(100)[0] == b"OPTIONS"
        assert receiver.recvfrom(100)[0] == b"again"
        assert proto.transport.written == []
    finally:
        sender.close()
        receiver.close()


def test_udp_send_finds_the_socket_again_when_the_port_changes_or_restarts():
    """The socket's sendto is kept between sends: a listener given another
    port, or its port started again (a new socket), sends from the new one."""
    from sipcluster.transport.udp import SIPDatagramProtocol
    first, receiver = _udp_pair()
    second, _ = _udp_pair()
    third, _ = _udp_pair()
    to = Peer("udp", "127.0.0.1", receiver.getsockname()[1])
    try:
        proto = SIPDatagramProtocol(Harness().layer, "127.0.0.1", first.getsockname()[1])
        proto.makeConnection(_PortLike(first))
        assert proto.send(b"one", to)
        proto.transport = _PortLike(second)
        assert proto.send(b"two", to)
        port = proto.transport
        proto.doStop()
        port.socket = third   # the same port object listening again
        proto.makeConnection(port)
        assert proto.send(b"three", to)
        got = [receiver.recvfrom(100) for _ in range(3)]
        assert [(data, addr[1]) for data, addr in got] == [
            (b"one", first.getsockname()[1]), (b"two", second.getsockname()[1]),
            (b"three", third.getsockname()[1])]
    finally:
        for sock in (first, second, third, receiver):
            sock.close()


@pytest.fixture
def sending():
    """A listener's protocol writing from a socket of its own, its errors
    counted: (protocol, layer stats, that socket, a receiving socket)."""
    from sipcluster.transport.udp import SIPDatagramProtocol
    sender, receiver = _udp_pair()
    layer = Harness().layer
    layer.stats = Counter()
    proto = SIPDatagramProtocol(layer, "127.0.0.1", sender.getsockname()[1])
    proto.transport = _PortLike(sender)
    yield proto, layer.stats, sender, receiver
    sender.close()
    receiver.close()


@pytest.mark.parametrize("peer_port", [-1, 65536])
def test_udp_send_counts_a_port_out_of_range(sending, peer_port):
    proto, stats, _, _ = sending
    assert proto.send(b"x", Peer("udp", "127.0.0.1", peer_port)) is False
    assert stats["send_errors"] == 1


def test_udp_send_of_a_closed_socket_is_counted(sending):
    proto, stats, sender, receiver = sending
    to = Peer("udp", "127.0.0.1", receiver.getsockname()[1])
    assert proto.send(b"one", to)
    sender.close()
    assert not proto.send(b"two", to)
    assert stats["send_errors"] == 1
    assert receiver.recvfrom(100)[0] == b"one"


@pytest.mark.skipif(not COMPILED, reason="the compiled build's IPv4 datagram path")
def test_compiled_ipv4_send_is_taken_for_addresses_only():
    """sendto in C for an IPv4 address given as bytes; a name, an IPv6
    address or a payload that is not bytes go the socket module's way."""
    from sipcluster.transport import udp
    sender, receiver = _udp_pair()
    try:
        udp._IPV4.clear()
        to = receiver.getsockname()
        assert udp._send_ipv4(sender, b"INVITE", "127.0.0.1", to[1]) is True
        assert udp._send_ipv4(sender, bytearray(b"x"), "127.0.0.1", to[1]) is None
        assert udp._send_ipv4(sender, b"x", "localhost", to[1]) is None
        assert udp._send_ipv4(sender, b"x", "::1", to[1]) is None
        assert udp._IPV4 == {"127.0.0.1": udp._IPV4["127.0.0.1"], "localhost": -1, "::1": -1}
        assert receiver.recvfrom(100) == (b"INVITE", sender.getsockname())
    finally:
        sender.close()
        receiver.close()


def test_udp_send_never_looks_a_name_up_and_counts_what_fails(sending):
    """A name (a Via maddr, say) is not given to sendto, which would resolve
    it on the reactor thread: Port.write refuses it, and that is counted."""
    proto, stats, _, receiver = sending
    assert not proto.send(b"x", Peer("udp", "localhost", receiver.getsockname()[1]))
    # An IPv6 address on an IPv4 socket: refused too.
    assert not proto.send(b"x", Peer("udp", "::1", 5060))
    assert stats["send_errors"] == 2
    receiver.settimeout(0.2)
    with pytest.raises(socket.timeout):
        receiver.recvfrom(100)


# -- addresses and listeners ------------------------------------------------------

def test_an_advertised_name_without_port_keeps_the_listening_port():
    h = Harness(port=5070, advertise="sip.example.test")
    assert h.layer.sent_by("udp") == ("sip.example.test", 5070)
    assert h.layer.sent_by_text("udp") == "udp:sip.example.test:5070"
    assert h.layer.is_local("sip.example.test", 5070)
    assert not h.layer.is_local("sip.example.test", 5071)


def test_a_udp_peer_with_no_udp_listener_fails_to_send():
    from sipcluster.config import ListenAddress
    from sipcluster.transport.layer import TransportError, TransportLayer
    layer = TransportLayer(Clock(), [ListenAddress("tcp", "127.0.0.1", 5060)])
    failures = []
    layer.send_data(OK, Peer("udp", "127.0.0.1", 5070)).addErrback(failures.append)
    (failure,) = failures
    assert failure.check(TransportError) and failure.getErrorMessage() == "no UDP listener"


def test_debug_lines_for_a_request_answered_with_an_error_and_for_what_is_dropped():
    from twisted.logger import formatEvent, globalLogPublisher
    lines = []

    def observe(event):
        if event.get("log_namespace", "").startswith("sipcluster.transport"):
            lines.append(formatEvent(event))
    h = Harness(trace=True)
    h.layer.receiver = Receiver()
    globalLogPublisher.addObserver(observe)
    try:
        h.receive(INVITE.replace(b"CSeq: 314159 INVITE", b"CSeq: x INVITE"), ("127.0.0.1", 5080))
        h.receive(b"\x00\x01garbage", ("127.0.0.1", 5081))
    finally:
        globalLogPublisher.removeObserver(observe)
    assert [m.status for m, _ in h.sent()] == [400]
    inbound, outbound, dropped = lines
    # The CSeq that does not parse is a "-", not a second error.
    assert inbound.startswith("in INVITE call-id=a84b4c76e66710@pc33.atlanta.example.com cseq=- ")
    assert "127.0.0.1:5080 -> udp:127.0.0.1:5060" in inbound
    assert outbound.startswith("out 400 call-id=a84b4c76e66710@pc33.atlanta.example.com cseq=-")
    assert dropped.startswith("in dropped udp:127.0.0.1:5081 -> udp:127.0.0.1:5060: ")


# -- RFC 3263 5: a response whose connection is gone ------------------------------

def _response_over_tcp(via):
    return make_response(parse_message(REGISTER.replace(
        b"Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7",
        b"Via: SIP/2.0/TCP " + via + b";branch=z9hG4bKnashds7")), 200, to_tag="x")


def _send_failing_every_connection(layer, reactor, response):
    from twisted.internet.error import ConnectionRefusedError
    from twisted.logger import formatEvent, globalLogPublisher
    lines, results, tried = [], [], []

    def observe(event):
        if event.get("log_namespace", "").startswith("sipcluster.transport"):
            lines.append(formatEvent(event))
    globalLogPublisher.addObserver(observe)
    try:
        layer.send_response(response).addCallback(results.append)
        while reactor.tcpClients:
            host, port, factory, _, _ = reactor.tcpClients.pop(0)
            tried.append((host, port))
            factory.clientConnectionFailed(None, Failure(ConnectionRefusedError()))
    finally:
        globalLogPublisher.removeObserver(observe)
    return results, tried, lines


def test_a_response_to_a_via_name_tries_each_address_then_says_none_took_it():
    from twisted.internet.testing import MemoryReactorClock
    from sipcluster.config import ListenAddress
    from sipcluster.transport.layer import TransportLayer
    from twisted.internet import defer

    class Resolver:
        def resolve(self, uri, transports):
            assert (str(uri), transports) == ("sip:phone.example.test;transport=tcp", ("tcp",))
            return defer.succeed([Peer("tcp", "127.0.0.8", 5070), Peer("tcp", "127.0.0.9", 5070)])
    reactor = MemoryReactorClock()
    layer = TransportLayer(reactor, [ListenAddress("tcp", "127.0.0.1", 5060)], resolver=Resolver())
    results, tried, lines = _send_failing_every_connection(
        layer, reactor, _response_over_tcp(b"phone.example.test"))
    assert tried == [("127.0.0.8", 5070), ("127.0.0.9", 5070)] and results == [False]
    assert layer.stats["send_errors"] == 1
    assert lines[-1].endswith(": no address of phone.example.test took the response")
    # A sent-by that is an address is not looked up: its own failure is the reason.
    results, tried, lines = _send_failing_every_connection(
        layer, reactor, _response_over_tcp(b"127.0.0.5:5070"))
    assert tried == [("127.0.0.5", 5070)] and results == [False]
    assert "cannot connect to" in lines[-1]


@pytest.mark.parametrize("listen, bind", [
    (["tcp:0.0.0.0:5060"], None),  # any address: the kernel picks the source
    (["tcp:127.0.0.2:5060", "tcp:127.0.0.3:5070"], ("127.0.0.2", 0)),  # the first one
])
def test_connections_out_leave_from_the_first_tcp_listening_address(listen, bind):
    from twisted.internet.testing import MemoryReactorClock
    from sipcluster.config import ListenAddress
    from sipcluster.transport.layer import TransportLayer
    reactor = MemoryReactorClock()
    addresses = [ListenAddress(*text.split(":")[:2], int(text.split(":")[2])) for text in listen]
    layer = TransportLayer(reactor, addresses)
    layer.listen()
    layer.send_data(b"OPTIONS", Peer("tcp", "127.0.0.9", 5080))
    (host, port, _, _, bind_address), = reactor.tcpClients
    assert (host, port, bind_address) == ("127.0.0.9", 5080, bind)


def test_a_relayed_response_leaves_by_udp_at_once_and_a_failure_counts_once():
    """A response with no source (a proxy relaying it by its Via) over UDP
    to an address: written by the listener there and then, the Deferred
    already fired; a failed write counted once, by the listener."""
    h = Harness()
    response = make_response(parse_message(INVITE), 180, to_tag="t")
    response.set_top_via(response.top_via.with_params(received="192.0.2.7", rport="5072"))
    results = []
    h.layer.send_response(response).addCallback(results.append)
    assert results == [True] and h.layer.stats["sent"] == 1
    assert [addr for _, addr in h.socket.written] == [("192.0.2.7", 5072)]

    def refuse(data, addr):
        raise OSError("refused")
    h.socket.write = refuse
    h.layer.send_response(response).addCallback(results.append)
    assert results == [True, False]
    assert h.layer.stats["send_errors"] == 1 and h.layer.stats["sent"] == 1


def test_send_response_now_answers_at_once_and_waits_only_when_it_must():
    """send_response_now (the proxy's and the transactions' way of sending)
    answers True or False when the response was written or refused there
    and then, with no Deferred made; a Deferred only when a sent-by name
    has to be resolved.  send_response gives a Deferred in every case."""
    from twisted.internet import defer
    h = Harness()
    response = make_response(parse_message(INVITE), 180, to_tag="t")
    response.set_top_via(response.top_via.with_params(received="192.0.2.7", rport="5072"))
    assert h.layer.send_response_now(response) is True
    assert [addr for _, addr in h.socket.written] == [("192.0.2.7", 5072)]

    def refuse(data, addr):
        raise OSError("refused")
    written, h.socket.write = h.socket.write, refuse
    assert h.layer.send_response_now(response) is False
    assert h.layer.stats["send_errors"] == 1
    h.socket.write = written
    # No Via left (it was meant for us): dropped and counted, False.
    response.pop_via()
    assert h.layer.send_response_now(response) is False and h.layer.stats["dropped"] == 1
    results = []
    h.layer.send_response(response).addCallback(results.append)
    assert results == [False] and h.layer.stats["dropped"] == 2
    # A sent-by that is a name: the Deferred of its lookup.
    named = make_response(parse_message(INVITE.replace(b"pc33.atlanta.example.com",
                                                       b"phone.example.test")), 180)
    asked = []

    class Resolver:
        def resolve(self, uri, transports):
            asked.append(str(uri))
            return defer.succeed([Peer("udp", "192.0.2.9", 5060)])
    h.layer.resolver = Resolver()
    sent = h.layer.send_response_now(named)
    assert isinstance(sent, defer.Deferred) and asked == ["sip:phone.example.test;transport=udp"]
    assert h.socket.written[-1][1] == ("192.0.2.9", 5060)


def test_is_local_answers_anew_when_the_addresses_change():
    """is_local keeps its answers, and forgets them when a listener, an
    advertised address or the cluster name is added; local_ports too."""
    h = Harness(port=5070)
    assert not h.layer.is_local("127.0.0.9", 5090)
    assert 5090 not in h.layer.local_ports()
    h.layer._add_local("udp", "127.0.0.9", 5090)
    assert h.layer.is_local("127.0.0.9", 5090) and 5090 in h.layer.local_ports()
    assert not h.layer.is_local("sip.example.test", 5060)
    h.layer.set_cluster_name("sip.example.test")
    assert h.layer.is_local("sip.example.test", 5060)
    assert h.layer.is_local("[::1]", 5070) == h.layer.is_local("::1", 5070)


def test_is_local_keeps_a_bounded_number_of_answers():
    from sipcluster.transport import layer as layer_module
    h = Harness(port=5070)
    for i in range(layer_module._IS_LOCAL_SIZE + 10):
        assert not h.layer.is_local("192.0.2.%d" % (i % 250), 6000 + i)
    assert len(h.layer._is_local) <= layer_module._IS_LOCAL_SIZE
    assert h.layer.is_local(*h.layer.sent_by("udp"))


@pytest.mark.parametrize("a, b, same", [
    ("192.0.2.1", "192.0.2.1", True),
    ("192.0.2.1", "192.0.2.10", False),
    ("192.0.2.1", "192.0.2.01", False),     # not an address (leading zero)
    ("192.0.2.1", "example.com", False),
    ("2001:db8::1", "2001:DB8:0::1", True),
    ("[2001:db8::1]", "2001:db8:0:0:0:0:0:1", True),
    ("2001:db8::1", "2001:db8::2", False),
    ("::ffff:192.0.2.1", "192.0.2.1", False),  # another family
    ("2001:db8::1", "example.com", False),
])
def test_same_ip_compares_addresses_and_parses_only_ipv6(monkeypatch, a, b, same):
    from sipcluster.transport import base
    assert base.same_ip(a, b) is same and base.same_ip(b, a) is same
    if ":" not in a + b:
        # Two IPv4 texts (or names) are compared as written: no parse.
        monkeypatch.setattr(base.ipaddress, "ip_address", None)
        assert base.same_ip(a, b) is same


def test_sending_now_over_udp_answers_at_once_and_over_tcp_with_the_deferred():
    """send_request_now/send_data_now: a datagram written there and then
    (True, counted sent), a failed write or no UDP listener answered with
    the TransportError (not raised, counted once, by the listener); a
    stream peer gets send_request's Deferred, the connection being made."""
    from twisted.internet.defer import Deferred
    from twisted.internet.testing import MemoryReactorClock
    from sipcluster.config import ListenAddress
    from sipcluster.transport.layer import TransportError, TransportLayer
    h = Harness()
    request = parse_message(INVITE)
    assert h.layer.send_request_now(request, Peer("udp", "192.0.2.7", 5072)) is True
    assert h.layer.send_data_now(OK, Peer("udp", "192.0.2.8", 5060)) is True
    assert [addr for _, addr in h.socket.written] == [("192.0.2.7", 5072), ("192.0.2.8", 5060)]
    assert h.socket.written[0][0] == request.to_bytes() and h.socket.written[1][0] == OK
    assert h.layer.stats["sent"] == 2

    def refuse(data, addr):
        raise OSError("refused")
    h.socket.write = refuse
    error = h.layer.send_request_now(request, Peer("udp", "192.0.2.7", 5072))
    assert isinstance(error, TransportError) and str(error) == "UDP send to udp:192.0.2.7:5072 failed"
    assert isinstance(h.layer.send_data_now(OK, Peer("udp", "192.0.2.7", 5072)), TransportError)
    assert h.layer.stats["send_errors"] == 2 and h.layer.stats["sent"] == 2

    tcp_only = TransportLayer(Clock(), [ListenAddress("tcp", "127.0.0.1", 5060)])
    error = tcp_only.send_data_now(OK, Peer("udp", "127.0.0.1", 5070))
    assert isinstance(error, TransportError) and str(error) == "no UDP listener"

    reactor = MemoryReactorClock()
    layer = TransportLayer(reactor, [ListenAddress("tcp", "127.0.0.2", 5060)])
    layer.listen()
    for sent in (layer.send_request_now(request, Peer("tcp", "127.0.0.9", 5080)),
                 layer.send_data_now(OK, Peer("tcp", "127.0.0.9", 5080))):
        assert isinstance(sent, Deferred) and not sent.called
    assert [(host, port) for host, port, *_ in reactor.tcpClients] == [("127.0.0.9", 5080)]


# -- the UDP listening port: Twisted's, one failed read fewer per wake-up ----------

HOST = "127.0.5.1"


class _Collector:
    """A datagram protocol that keeps what it is given."""

    def __init__(self):
        from twisted.internet.protocol import DatagramProtocol
        self.protocol = DatagramProtocol()
        self.protocol.datagramReceived = lambda data, addr: self.datagrams.append((data, addr))
        self.datagrams = []


class _CountingSocket:
    """A socket whose recvfrom calls are counted; everything else is the socket's."""

    def __init__(self, sock):
        self.sock = sock
        self.reads = 0

    def recvfrom(self, size):
        self.reads += 1
        return self.sock.recvfrom(size)

    def __getattr__(self, name):
        return getattr(self.sock, name)


@pytest.fixture
def reactor():
    """A reactor of real sockets, not running: the tests call doRead themselves."""
    from twisted.internet.selectreactor import SelectReactor
    reactor = SelectReactor()
    yield reactor
    for port in reactor.removeAll():
        port.connectionLost(None)
    reactor.waker.connectionLost(None)


@pytest.fixture
def sender():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    yield sock
    sock.close()


def _port(reactor, port_class=None):
    from sipcluster.transport.udp import SIPPort
    collector = _Collector()
    port = (port_class or SIPPort)(0, collector.protocol, HOST, reactor=reactor)
    port.startListening()
    return port, collector


def _queue(sender, port, *datagrams):
    import select
    for data in datagrams:
        sender.sendto(data, (HOST, port.getHost().port))
    # Loopback queues at once; wait for the first one all the same.
    select.select([port.socket], [], [], 5)


def test_sip_port_reads_a_lone_datagram_without_a_failed_read(reactor, sender):
    from twisted.internet.udp import Port
    for port_class, reads in ((Port, 2), (None, 1)):  # Twisted's reads until EAGAIN
        port, collector = _port(reactor, port_class)
        port.socket = counting = _CountingSocket(port.socket)
        _queue(sender, port, b"OPTIONS")
        port.doRead()
        assert collector.datagrams == [(b"OPTIONS", sender.getsockname())]
        assert counting.reads == reads
        port.socket = counting.sock
        port.connectionLost(None)


def test_sip_port_drains_what_is_queued_in_one_wake_up(reactor, sender):
    port, collector = _port(reactor)
    _queue(sender, port, b"INVITE", b"ACK", b"BYE")
    port.doRead()
    assert [data for data, _ in collector.datagrams] == [b"INVITE", b"ACK", b"BYE"]
    assert {addr for _, addr in collector.datagrams} == {sender.getsockname()}
    port.doRead()  # nothing left: EAGAIN, ignored
    assert len(collector.datagrams) == 3


def test_sip_port_reads_at_most_max_throughput_bytes_per_wake_up(reactor, sender):
    """So that a flood of datagrams cannot starve timers and TCP."""
    port, collector = _port(reactor)
    port.maxThroughput = 2500
    _queue(sender, port, *[b"%d" % i * 1000 for i in range(5)])
    port.doRead()
    assert len(collector.datagrams) == 3
    port.doRead()
    assert len(collector.datagrams) == 5


def test_sip_port_reads_a_queued_empty_datagram_at_the_next_wake_up(reactor, sender):
    """FIONREAD answers 0 for an empty datagram as for none: it waits,
    the socket still readable, and is neither lost nor spun on.  (The
    pure-Python read; the compiled IPv4 read is the test after this.)"""
    import select
    port, collector = _port(reactor)
    port.socket = counting = _CountingSocket(port.socket)  # not a socket.socket: the Python read
    try:
        _queue(sender, port, b"OPTIONS", b"")
        port.doRead()
        assert collector.datagrams == [(b"OPTIONS", sender.getsockname())]
        assert select.select([counting.sock], [], [], 0)[0] == [counting.sock]
        port.doRead()
        assert collector.datagrams[1:] == [(b"", sender.getsockname())]
        assert select.select([counting.sock], [], [], 0)[0] == []
    finally:
        port.socket = counting.sock


def test_sip_port_reads_a_queued_empty_datagram_in_either_build(reactor, sender):
    """Read until EAGAIN (the compiled IPv4 read) or at the next wake-up
    (FIONREAD): in two wake-ups at most both are read, none is left."""
    import select
    port, collector = _port(reactor)
    _queue(sender, port, b"OPTIONS", b"")
    port.doRead()
    port.doRead()
    assert collector.datagrams == [(b"OPTIONS", sender.getsockname()), (b"", sender.getsockname())]
    assert select.select([port.socket], [], [], 0)[0] == []


@pytest.mark.skipif(not COMPILED, reason="the compiled build's IPv4 datagram path")
def test_compiled_ipv4_read_gives_each_source_its_address_once_made(reactor, sender):
    """Read with recvfrom called in C: the data whole, the source as
    socket.recvfrom gives it, one tuple per source kept across datagrams."""
    from sipcluster.transport import udp
    # The same port on another address (keys that drop the port's bits or
    # the last octets would mix them up), and an octet above 127 (a signed
    # address would).
    same_port = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    same_port.bind(("127.0.5.2", sender.getsockname()[1]))
    high = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    high.bind(("127.200.5.201", 0))
    try:
        port, collector = _port(reactor)
        port.maxPacketSize = udp.READ_SIZE  # as listen_udp makes it
        udp._PEERS.clear()
        big = b"x" * 60000
        _queue(sender, port, b"INVITE", big)
        _queue(same_port, port, b"BYE")
        _queue(high, port, b"CANCEL")
        _queue(sender, port, b"ACK")
        port.doRead()
        assert [(data, addr) for data, addr in collector.datagrams] == [
            (b"INVITE", sender.getsockname()), (big, sender.getsockname()),
            (b"BYE", same_port.getsockname()), (b"CANCEL", high.getsockname()),
            (b"ACK", sender.getsockname())]
        addrs = [addr for _, addr in collector.datagrams]
        assert addrs[0] is addrs[1] is addrs[4] and type(addrs[0]) is tuple
        assert len(udp._PEERS) == 3
    finally:
        same_port.close()
        high.close()


@pytest.mark.skipif(not COMPILED, reason="the compiled build's IPv4 datagram path")
def test_compiled_ipv4_read_cuts_a_datagram_at_max_packet_size(reactor, sender):
    """As recvfrom(maxPacketSize) does: the rest of the datagram is dropped."""
    port, collector = _port(reactor)
    port.maxPacketSize = 10
    _queue(sender, port, b"0123456789abcdef", b"next")
    port.doRead()
    assert [data for data, _ in collector.datagrams] == [b"0123456789", b"next"]


def test_sip_port_closed_by_its_protocol_stops_reading_in_either_build(reactor, sender):
    """The socket itself (the compiled build reads its descriptor in C)
    closed by the protocol: the wake-up ends, the next datagram is not
    read from a descriptor that may already be another socket's."""
    port, collector = _port(reactor)
    sock = port.socket
    collector.protocol.datagramReceived = lambda data, addr: (
        collector.datagrams.append(data), sock.close())
    _queue(sender, port, b"OPTIONS", b"BYE")
    port.doRead()
    assert collector.datagrams == [b"OPTIONS"]


def test_sip_port_tells_a_connected_protocol_of_a_refusal_in_either_build(reactor, sender):
    """ECONNREFUSED read on a connected socket (the ICMP of a datagram it
    sent) is connectionRefused, as Twisted's port tells it."""
    import select
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind((HOST, 0))
    nobody = closed.getsockname()
    closed.close()
    port, collector = _port(reactor)
    refused = []
    collector.protocol.connectionRefused = lambda: refused.append(True)
    port.socket.connect(nobody)
    port._connectedAddr = nobody
    port.socket.send(b"OPTIONS")
    # The ICMP's error pending makes the socket readable.
    assert select.select([port.socket], [], [], 5)[0] == [port.socket]
    port.doRead()
    assert refused == [True] and collector.datagrams == []


def test_sip_port_gives_an_ipv6_source_as_host_and_port(reactor):
    """As udp.Port does: no flow information or scope ID in the address."""
    import select
    from sipcluster.transport.udp import SIPPort
    collector = _Collector()
    port = SIPPort(0, collector.protocol, "::1", reactor=reactor)
    port.startListening()
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sender.bind(("::1", 0))
        for data in (b"OPTIONS", b"BYE"):
            sender.sendto(data, ("::1", port.getHost().port))
        select.select([port.socket], [], [], 5)
        port.doRead()
        assert collector.datagrams == [(data, ("::1", sender.getsockname()[1]))
                                       for data in (b"OPTIONS", b"BYE")]
    finally:
        sender.close()


class _FailingSocket:
    def __init__(self, error):
        self.error = error

    def recvfrom(self, size):
        raise OSError(self.error, "failed")

    def fileno(self):
        return 99


@pytest.mark.parametrize("error", [
    "EAGAIN", "EWOULDBLOCK", "EINTR", "ECONNREFUSED", "EMSGSIZE", "EBADF", "ENOBUFS"])
@pytest.mark.parametrize("connected", [False, True])
def test_sip_port_read_errors_are_handled_as_twisted_port_handles_them(error, connected):
    """Ignored, told to a connected protocol as connectionRefused, or raised
    (the reactor logs it and drops the port), as twisted.internet.udp.Port."""
    import errno
    from twisted.internet.udp import Port
    from sipcluster.transport.udp import SIPPort

    def outcome(port_class):
        refused = []
        collector = _Collector()
        collector.protocol.connectionRefused = lambda: refused.append(True)
        port = port_class(0, collector.protocol, HOST)
        port.protocol = collector.protocol
        port.socket = _FailingSocket(getattr(errno, error))
        port._connectedAddr = (HOST, 5060) if connected else None
        try:
            port.doRead()
        except OSError as e:
            return ("raised", e.errno, refused)
        return ("returned", None, refused)
    assert outcome(SIPPort) == outcome(Port)


def test_sip_port_closed_by_its_protocol_stops_reading(reactor, sender):
    """A socket closed under doRead (FIONREAD fails) ends the wake-up, never
    raises: the next datagram is not read from a closed socket."""
    port, collector = _port(reactor)
    sock = port.socket
    collector.protocol.datagramReceived = lambda data, addr: (
        collector.datagrams.append(data), sock.close())
    port.socket = counting = _CountingSocket(sock)
    _queue(sender, port, b"OPTIONS", b"BYE")
    port.doRead()
    assert collector.datagrams == [b"OPTIONS"] and counting.reads == 1
    port.socket = sock


def test_sip_port_logs_what_its_protocol_raises_and_reads_on(reactor, sender, monkeypatch):
    import sys
    from twisted.python import log

    def received(data, addr):
        collector.datagrams.append(data)
        if data == b"INVITE":
            raise ValueError("bad")
    logged = []
    monkeypatch.setattr(log, "err", lambda: logged.append(sys.exc_info()[1].args))
    port, collector = _port(reactor)
    collector.protocol.datagramReceived = received
    _queue(sender, port, b"INVITE", b"ACK")
    port.doRead()
    assert collector.datagrams == [b"INVITE", b"ACK"] and logged == [("bad",)]


def _layer(reactor, **kwargs):
    from sipcluster.config import ListenAddress
    from sipcluster.transport.layer import TransportLayer
    layer = TransportLayer(reactor, [ListenAddress("udp", HOST, kwargs.pop("port", 0))],
                           listen_tcp=False, **kwargs)
    layer.receiver = Receiver()
    layer.listen()
    return layer


def _closed(reactor, port):
    sock, done = port.socket, []
    port.stopListening().addCallback(done.append)
    reactor.runUntilCurrent()  # Port.connectionLost runs from callLater(0)
    return done == [None] and sock.fileno() == -1 and port not in reactor.getReaders()


def test_sip_listeners_are_sip_ports_and_close_cleanly(reactor, sender):
    from sipcluster.transport.udp import SIPPort
    layer = _layer(reactor, private_port=True)
    assert len(layer.ports) == 2  # the shared port and the worker's private one
    for port in layer.ports:
        assert type(port) is SIPPort and port in reactor.getReaders()
        _queue(sender, port, REGISTER)
        reactor.doIteration(0)
    assert len(layer.receiver.requests) == 2
    for port in list(layer.ports):
        assert _closed(reactor, port)


def test_reuse_port_workers_each_get_a_sip_port(reactor, sender):
    """Workers share the port through SO_REUSEPORT (adoptDatagramPort's way)."""
    from sipcluster.transport.udp import SIPPort
    first = _layer(reactor, reuse_port=True)
    (shared,) = first.ports
    second = _layer(reactor, reuse_port=True, port=shared.getHost().port)
    (other,) = second.ports
    for port in (shared, other):
        assert type(port) is SIPPort and port.getHost().port == shared.getHost().port
        assert port.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    _queue(sender, shared, REGISTER)
    reactor.doIteration(0)
    assert len(first.receiver.requests) + len(second.receiver.requests) == 1
    assert _closed(reactor, shared) and _closed(reactor, other)


def test_listen_udp_leaves_other_reactors_their_own_ports():
    """A reactor whose UDP ports are not twisted.internet.udp.Port's (a
    test's memory reactor, IOCP) makes its own."""
    from sipcluster.transport.udp import listen_udp

    class Reactor:
        def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
            return ("listenUDP", port, protocol, interface, maxPacketSize)

        def adoptDatagramPort(self, fd, family, protocol, maxPacketSize=8192):
            return ("adoptDatagramPort", fd, family, protocol, maxPacketSize)
    proto = object()
    assert listen_udp(Reactor(), 5060, proto, HOST) == ("listenUDP", 5060, proto, HOST, 65536)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert listen_udp(Reactor(), 5060, proto, HOST, sock) == (
            "adoptDatagramPort", sock.fileno(), socket.AF_INET, proto, 65536)
    finally:
        sock.close()


@pytest.mark.parametrize("reuse_port", [False, True], ids=["listenUDP", "SO_REUSEPORT"])
def test_a_datagram_is_read_whole_whatever_its_size(reuse_port):
    """A listener reads as much as a datagram holds: 20,000 bytes are not
    cut to Twisted's 8,192, and one longer than sip.max_message_size is
    read whole too (so that its headers can be answered 513)."""
    from twisted.internet import reactor
    from sipcluster.config import ListenAddress
    from sipcluster.transport.layer import TransportLayer
    layer = TransportLayer(reactor, [ListenAddress("udp", HOST, 0)], max_message_size=30000,
                           reuse_port=reuse_port)
    got = []
    layer.data_received = lambda data, source, stream=False: got.append(len(data))
    layer.listen()
    try:
        port, = layer.ports
        assert port.maxPacketSize == 65536
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for size in (20000, 40000):
                sender.sendto(b"x" * size, (HOST, port.getHost().port))
            for _ in range(50):
                port.doRead()
                if len(got) == 2:
                    break
        finally:
            sender.close()
        assert got == [20000, 40000]
    finally:
        for port in layer.ports:
            port.stopListening()


def test_the_layers_count_in_a_dict_that_reads_zero_for_what_never_happened():
    """The transport and transaction layers' stats: a dict (what the API
    and the metrics read), 0 for a name never counted, and its item
    assignment dict's own (collections.Counter's __delitem__ made each
    count a Python-level call)."""
    from sipcluster.counts import Counts
    from sipcluster.transaction.layer import TransactionLayer
    h = Harness()
    for stats in (h.layer.stats, TransactionLayer(h.layer, h.clock).stats):
        assert isinstance(stats, dict) and type(stats) is Counts
        assert stats["never"] == 0 and "never" not in stats
        stats["sent"] += 1
        stats["sent"] += 1
        assert stats == {"sent": 2}
    assert Counts.__setitem__ is dict.__setitem__
    assert "__delitem__" not in vars(Counts)


def test_a_via_made_to_send_reads_as_any_via_of_its_fields_would():
    from sipcluster.sip.via import Via
    from sipcluster.config import ListenAddress
    from sipcluster.transport.layer import TransportLayer
    layer = TransportLayer(Clock(), [ListenAddress("udp", "127.0.0.1", 5060),
                                     ListenAddress("udp", "::1", 5062),
                                     ListenAddress("tcp", "127.0.0.1", 5061)])
    layer._add_local("udp", "127.0.0.1", 5060)
    layer._add_local("udp", "::1", 5062)
    layer._add_local("tcp", "127.0.0.1", 5061)
    for transport, v6, text in [("udp", False, "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa.1;rport"),
                                ("udp", True, "SIP/2.0/UDP [::1]:5062;branch=z9hG4bKa.1;rport"),
                                ("tcp", None, "SIP/2.0/TCP 127.0.0.1:5061;branch=z9hG4bKa.1;rport")]:
        via = layer.make_via(transport, "z9hG4bKa.1", v6)
        assert str(via) == text
        assert str(Via(via.transport, via.host, via.port, dict(via.params))) == text
        assert via.branch == "z9hG4bKa.1" and via.has_rport and via.rport is None


def test_is_name_tells_host_names_from_addresses_and_answers_the_same_when_asked_again():
    from sipcluster.transport.layer import is_name
    cases = {"192.0.2.1": False, "::1": False, "2001:db8::5": False, "example.test": True,
             "192.0.2": True, "192.0.2.x": True, "1.2.3.4.5": True, "localhost": True}
    for _ in range(2):  # the second time from what it remembered
        assert {host: is_name(host) for host in cases} == cases


def test_new_peer_makes_the_peer_the_class_would():
    from sipcluster.transport.base import new_peer
    peer = new_peer("udp", "192.0.2.1", 5060)
    assert type(peer) is Peer and peer == Peer("udp", "192.0.2.1", 5060)
    assert (peer.transport, peer.host, peer.port, peer.reliable) == ("udp", "192.0.2.1", 5060, False)
    assert str(peer) == "udp:192.0.2.1:5060"
