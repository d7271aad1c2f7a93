"""STUN on the SIP port and keepalives toward NATed contacts."""

import struct

from sipcluster.location.interface import Binding
from sipcluster.location.memory import MemoryLocationService
from sipcluster.nat.keepalive import KeepaliveService
from sipcluster.nat.stun import (
    MAGIC_COOKIE, binding_response, parse_binding_request)
from sipcluster.sip.uri import parse_uri
from sipcluster.transaction.layer import TransactionLayer
from sipcluster.transaction.timers import TimerValues
from tests.harness import Harness, RecordingTU

TXID = b"0123456789ab"


def binding_request(txid=TXID):
    return struct.pack("!HHI12s", 1, 0, MAGIC_COOKIE, txid)


def decode_xor_mapped(response):
    kind, length, cookie, txid = struct.unpack_from("!HHI12s", response)
    assert kind == 0x0101 and cookie == MAGIC_COOKIE and len(response) == 20 + length
    offset = 20
    while offset < len(response):
        atype, alen = struct.unpack_from("!HH", response, offset)
        value = response[offset + 4: offset + 4 + alen]
        if atype == 0x0020:
            _, family, xport = struct.unpack_from("!BBH", value)
            port = xport ^ (MAGIC_COOKIE >> 16)
            if family == 1:
                (xaddr,) = struct.unpack_from("!I", value, 4)
                addr = xaddr ^ MAGIC_COOKIE
                return txid, ".".join(str(b) for b in addr.to_bytes(4, "big")), port
            key = int.from_bytes(struct.pack("!I", MAGIC_COOKIE) + txid, "big")
            addr = int.from_bytes(value[4:20], "big") ^ key
            import ipaddress
            return txid, str(ipaddress.IPv6Address(addr)), port
        offset += 4 + alen + (-alen % 4)
    raise AssertionError("no XOR-MAPPED-ADDRESS")


def test_binding_request_parsing():
    assert parse_binding_request(binding_request()) == TXID
    assert parse_binding_request(binding_request()[:19]) is None
    bad_cookie = struct.pack("!HHI12s", 1, 0, 0x1234, TXID)
    assert parse_binding_request(bad_cookie) is None
    assert parse_binding_request(struct.pack("!HHI12s", 0x0111, 0, MAGIC_COOKIE, TXID)) is None


def test_xor_mapped_address_v4_and_v6():
    assert decode_xor_mapped(binding_response(TXID, "192.0.2.1", 32853)) == (TXID, "192.0.2.1", 32853)
    assert decode_xor_mapped(binding_response(TXID, "2001:db8::1", 5060)) == (TXID, "2001:db8::1", 5060)


def test_stun_is_answered_on_the_sip_port_and_sip_still_works():
    h = Harness(stun=True)
    h.udp.datagramReceived(binding_request(), ("127.0.0.7", 40000))
    (data, addr), = h.socket.written
    assert addr == ("127.0.0.7", 40000)
    assert decode_xor_mapped(data) == (TXID, "127.0.0.7", 40000)
    assert h.layer.stats["stun_bindings"] == 1
    h.udp.datagramReceived(b"\x00\x01junk", ("127.0.0.7", 40000))
    assert h.layer.stats["dropped"] == 1


def _keepalive_setup(method="options", remove=True):
    h = Harness()
    tu = RecordingTU()
    tl = TransactionLayer(h.layer, h.clock, TimerValues(), tu)
    location = MemoryLocationService(h.clock)
    location.update("sip:alice@example.test", [
        Binding("sip:alice@example.test", parse_uri("sip:alice@192.168.1.20:5060"), 3600,
                received=("udp", "127.0.0.1", 40123)),
        Binding("sip:alice@example.test", parse_uri("sip:alice@127.0.0.1:5099"), 3600)])
    service = KeepaliveService(location, h.layer, tl, h.clock, 30, method, remove)
    service.startService()
    return h, location, service


def test_options_keepalive_only_to_natted_bindings_and_removal():
    h, location, service = _keepalive_setup()
    h.clock.advance(30)
    sent = h.sent()
    assert [(m.method, a) for m, a in sent] == [("OPTIONS", ("127.0.0.1", 40123))]
    assert str(sent[0][0].uri) == "sip:alice@192.168.1.20:5060"
    h.advance(32.5)  # no answer: Timer F
    assert [str(b.contact) for b in location.lookup("sip:alice@example.test")] == [
        "sip:alice@127.0.0.1:5099"]
    assert service.removed == 1
    service.stopService()


def test_answered_keepalive_keeps_the_binding():
    h, location, service = _keepalive_setup()
    h.clock.advance(30)
    (options, addr), = h.sent()
    from sipcluster.sip.message import make_response
    h.receive(make_response(options, 200, to_tag="x"), addr)
    h.advance(40)
    assert len(location.lookup("sip:alice@example.test")) == 2
    service.stopService()


def test_crlf_keepalive():
    h, location, service = _keepalive_setup("crlf")
    h.clock.advance(30)
    assert h.socket.written == [(b"\r\n\r\n", ("127.0.0.1", 40123))]
    service.stopService()


def test_a_node_sends_keepalives_when_configured_and_by_default_removes_no_binding():
    from tests.harness import NodeHarness
    h = NodeHarness({"sip": {"domains": ["example.test"]}, "nat": {"keepalive_interval_s": 30}})
    location = h.node.location
    location.update("sip:alice@example.test", [
        Binding("sip:alice@example.test", parse_uri("sip:alice@192.168.1.20:5060"), 3600,
                received=("udp", "127.0.0.1", 40123))])
    h.advance(30)
    sent = [(m.method, a) for m, a in h.sent()]
    assert sent == [("OPTIONS", ("127.0.0.1", 40123))]
    h.advance(32.5)  # unanswered (Timer F): nat.keepalive_remove is false
    assert [str(b.contact) for b in location.lookup("sip:alice@example.test")] == [
        "sip:alice@192.168.1.20:5060"]
    h.sent()
    h.advance(30)  # and is still sent keepalives
    assert {(m.method, a) for m, a in h.sent()} == {("OPTIONS", ("127.0.0.1", 40123))}
