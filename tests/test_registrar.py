"""RFC 3261 10.3 registrar behaviour, Path, outbound and NAT detection, in-process."""

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent

from sipcluster.location.interface import Binding
from sipcluster.location.memory import MemoryLocationService
from sipcluster.proxy.pipeline import RequestContext
from sipcluster.sip.message import parse_message
from sipcluster.sip.uri import parse_uri
from sipcluster.transport.tcp import SIPStreamProtocol
from tests.harness import NodeHarness
from tests.sipdata import crlf

PHONE = ("127.0.0.1", 5090)


def register(contact="<sip:alice@127.0.0.1:5090>", expires=None, cseq=1, call_id="reg-1",
             to="sip:alice@example.test", extra="", via="SIP/2.0/UDP 127.0.0.1:5090", branch=None,
             uri="sip:example.test"):
    """A REGISTER; its branch depends on CSeq and Call-ID unless given (a new transaction)."""
    headers = ""
    if contact is not None:
        headers += "Contact: %s\n" % contact
    if expires is not None:
        headers += "Expires: %d\n" % expires
    return crlf("""\
REGISTER {uri} SIP/2.0
Via: {via};branch={branch};rport
Max-Forwards: 70
From: <{to}>;tag=f1
To: <{to}>
Call-ID: {cid}
CSeq: {cseq} REGISTER
{headers}{extra}Content-Length: 0

""".format(cseq=cseq, cid=call_id, headers=headers, to=to, extra=extra, via=via, uri=uri,
           branch=branch or "z9hG4bKr%d%s" % (cseq, call_id)))


class Node:
    """A node built by build_node, in memory, serving example.test; C{registrar} settings."""

    def __init__(self, mode="stateful", **registrar):
        self.h = NodeHarness({"node": {"mode": mode}, "sip": {"domains": ["example.test"]},
                              "registrar": registrar})
        self.location = self.h.node.location
        self.forwarder = self.h.node.forwarder
        self.pipeline = self.h.node.pipeline
        self.registrar = self.h.node.registrar

    def send(self, data, addr=PHONE):
        self.h.receive(data, addr)
        out = self.h.sent()
        assert len(out) == 1, out
        return out[0][0]


@pytest.fixture
def node():
    return Node(default_expires=3600, min_expires=60, max_expires=7200)


def contacts(response):
    return [(str(c.uri), c.expires) for c in response.contacts]


def test_register_then_200_lists_binding_with_expiry_and_date(node):
    resp = node.send(register(expires=600))
    assert resp.status == 200
    assert contacts(resp) == [("sip:alice@127.0.0.1:5090", 600)]
    assert resp.values("contact") == ["<sip:alice@127.0.0.1:5090>;expires=600"]  # q=1: no q
    assert resp.header("Date").endswith("GMT")
    (binding,) = node.location.lookup("sip:alice@example.test")
    assert str(binding.contact) == "sip:alice@127.0.0.1:5090"
    # The record names its AOR (keepalives remove through it) and the node
    # holding the registration (the cluster's routing reaches the flow there).
    assert (binding.aor, binding.node) == ("sip:alice@example.test", "test-node")


def test_contact_expires_param_wins_and_is_capped(node):
    resp = node.send(register("<sip:alice@127.0.0.1:5090>;expires=999999", expires=600))
    assert contacts(resp) == [("sip:alice@127.0.0.1:5090", 7200)]


def test_default_expires(node):
    assert contacts(node.send(register())) == [("sip:alice@127.0.0.1:5090", 3600)]


def test_interval_too_brief(node):
    resp = node.send(register(expires=10))
    assert resp.status == 423
    assert resp.header("Min-Expires") == "60"
    assert node.location.lookup("sip:alice@example.test") == []


def test_several_contacts_q_and_query(node):
    node.send(register("<sip:alice@127.0.0.1:5090>;q=0.5, <sip:alice@127.0.0.1:5091>;q=0.9"))
    node.h.advance(100)
    resp = node.send(register(None, cseq=2))  # query: no Contact
    assert resp.status == 200
    assert sorted(contacts(resp)) == [("sip:alice@127.0.0.1:5090", 3500), ("sip:alice@127.0.0.1:5091", 3500)]
    assert [b.q for b in node.location.lookup("sip:alice@example.test")] == [0.9, 0.5]


def test_remove_one_binding_with_expires_zero(node):
    node.send(register("<sip:alice@127.0.0.1:5090>, <sip:alice@127.0.0.1:5091>"))
    resp = node.send(register("<sip:alice@127.0.0.1:5091>;expires=0", cseq=2))
    assert contacts(resp) == [("sip:alice@127.0.0.1:5090", 3600)]


def test_star_removes_everything_only_with_expires_zero(node):
    node.send(register("<sip:alice@127.0.0.1:5090>, <sip:alice@127.0.0.1:5091>"))
    resp = node.send(register("*", cseq=2))
    assert (resp.status, resp.reason) == (400, "Contact * requires Expires: 0")
    assert len(node.location.lookup("sip:alice@example.test")) == 2
    resp = node.send(register("*", expires=0, cseq=3))
    assert resp.status == 200 and resp.contacts == []
    assert node.location.lookup("sip:alice@example.test") == []


def test_out_of_order_cseq_for_same_call_id_is_rejected(node):
    node.send(register(cseq=5))
    resp = node.send(register("<sip:alice@127.0.0.1:5090>;expires=0", cseq=4))
    assert (resp.status, resp.reason) == (400, "Invalid CSeq number (out of order)")
    assert len(node.location.lookup("sip:alice@example.test")) == 1
    # Another Call-ID may update it whatever its CSeq (another client).
    resp = node.send(register("<sip:alice@127.0.0.1:5090>;expires=0", cseq=1, call_id="other"))
    assert resp.status == 200 and resp.contacts == []


def test_bindings_expire_on_time(node):
    # 100 s: between two housekeeping sweeps of the node (every 30 s).
    node.send(register(expires=100))
    node.h.clock.advance(99)
    assert len(node.location.lookup("sip:alice@example.test")) == 1
    node.h.clock.advance(2)
    assert node.location.lookup("sip:alice@example.test") == []
    assert node.location.sweep() == 1


def test_foreign_aor_and_unsupported_require(node):
    resp = node.send(register(to="sip:alice@elsewhere.test"))
    assert (resp.status, resp.reason) == (404, "Not Found (not an address-of-record of this domain)")
    resp = node.send(register(extra="Require: foo\n", cseq=2))
    assert resp.status == 420 and resp.header("Unsupported") == "foo"
    # Every tag it does not know is listed, the known ones are not.
    resp = node.send(register(extra="Require: foo, path, bar\n", cseq=3))
    assert resp.status == 420 and resp.header("Unsupported") == "foo, bar"
    assert node.location.lookup("sip:alice@example.test") == []


def test_path_is_stored_echoed_and_used_as_route(node):
    data = register(extra="Supported: path\nPath: <sip:edge.example.test;lr>\n")
    resp = node.send(data)
    assert resp.values("path") == ["<sip:edge.example.test;lr>"]
    (binding,) = node.location.lookup("sip:alice@example.test")
    assert binding.path == ["<sip:edge.example.test;lr>"]
    assert binding.received is None  # Path, not NAT, says how to reach it
    # An INVITE for alice goes to the edge proxy with the Path as Route.
    invite = _invite_for_alice()
    targets = node.pipeline.named("location").targets(RequestContext(invite, None, None))
    out, next_uri, _ = node.forwarder.prepare(invite, targets[0], "x", "udp")
    assert str(next_uri) == "sip:edge.example.test;lr"
    assert [str(r.uri) for r in out.routes] == ["sip:edge.example.test;lr"]
    assert str(out.uri) == "sip:alice@127.0.0.1:5090"


def test_malformed_path_is_refused_not_stored(node):
    # Stored, it would be the Route set of every request to the binding
    # (found by tests/test_node_fuzz.py: calls to the user then failed).
    resp = node.send(register(extra="Supported: path\nPath: SIP/2.0/UDP 10.0.0.1;branch=x\n"))
    assert resp.status == 400
    assert node.location.lookup("sip:alice@example.test") == []
    # A query with the same fault is refused too.
    assert node.send(register(contact=None, extra="Supported: path\nPath: <sip:a@b\n")).status == 400


def _invite_for_alice():
    from sipcluster.sip.message import parse_message
    return parse_message(crlf("""\
INVITE sip:alice@example.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKi1
Max-Forwards: 70
From: <sip:bob@example.test>;tag=b
To: <sip:alice@example.test>
Call-ID: inv-1
CSeq: 1 INVITE
Content-Length: 0

"""))


def test_nat_detected_contact_is_reached_at_source(node):
    # A private Contact address, sent from another address: behind NAT.
    resp = node.send(register("<sip:alice@192.168.1.20:5060>"), ("127.0.0.1", 40123))
    assert contacts(resp) == [("sip:alice@192.168.1.20:5060", 3600)]  # original kept
    (binding,) = node.location.lookup("sip:alice@example.test")
    assert binding.received == ("udp", "127.0.0.1", 40123)
    node.h.receive(_invite_for_alice(), ("127.0.0.1", 5080))
    sent = node.h.sent()
    invite = [m for m, a in sent if a == ("127.0.0.1", 40123)]
    assert [str(m.uri) for m in invite] == ["sip:alice@192.168.1.20:5060"]


def test_public_contact_from_its_own_address_is_not_natted(node):
    node.send(register("<sip:alice@127.0.0.1:5090>"), ("127.0.0.1", 5090))
    (binding,) = node.location.lookup("sip:alice@example.test")
    assert binding.received is None


def test_third_party_registration_is_not_natted(node):
    # Sent from 127.0.0.1:5090 (its Via says so) for a public contact elsewhere.
    node.send(register("<sip:alice@127.0.0.1:7000>"), ("127.0.0.1", 5090))
    assert node.location.lookup("sip:alice@example.test")[0].received is None


def test_via_not_matching_source_means_nat(node):
    # Public-looking contact, but the packet did not come from its Via.
    node.send(register("<sip:alice@127.0.0.1:5090>"), ("127.0.0.1", 40999))
    assert node.location.lookup("sip:alice@example.test")[0].received == ("udp", "127.0.0.1", 40999)


def test_outbound_instance_and_reg_id_kept_with_flow(node):
    contact = '<sip:alice@127.0.0.1:5090;ob>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1'
    resp = node.send(register(contact, extra="Supported: outbound, path\n"))
    (binding,) = node.location.lookup("sip:alice@example.test")
    assert binding.instance == "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"
    assert binding.reg_id == "1"
    assert binding.received == ("udp", "127.0.0.1", 5090)  # the flow
    assert resp.header("Require") == "outbound"
    assert resp.values("contact") == [
        '<sip:alice@127.0.0.1:5090;ob>;expires=3600;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1']


def test_nat_detection_can_be_turned_off():
    node = Node(nat_detect=False)
    node.send(register("<sip:alice@192.168.1.20:5060>"), ("127.0.0.1", 40123))
    assert node.location.lookup("sip:alice@example.test")[0].received is None


def test_store_failure_is_503_never_200(node):
    node.location.update = lambda aor, changes: defer.fail(RuntimeError("store down"))
    with capturedLogs() as events:
        resp = node.send(register())
    assert (resp.status, resp.reason) == (503, "Service Unavailable (location store)")
    assert resp.header("Retry-After") == "5"
    (event,) = [e for e in events if "log_failure" in e]
    assert formatEvent(event) == "storing bindings of sip:alice@example.test failed"
    assert event["log_failure"].check(RuntimeError)


# -- the 200's Contact values ------------------------------------------------------


def test_200_lists_q_as_registered_shortest_form(node):
    resp = node.send(register("<sip:alice@127.0.0.1:5091>;q=0.5, <sip:alice@127.0.0.1:5092>;q=0, "
                              "<sip:alice@127.0.0.1:5093>;q=0.125", expires=600))
    assert resp.values("contact") == [  # highest q first
        "<sip:alice@127.0.0.1:5091>;expires=600;q=0.5",
        "<sip:alice@127.0.0.1:5093>;expires=600;q=0.125",
        "<sip:alice@127.0.0.1:5092>;expires=600;q=0",
    ]


def test_200_lists_the_time_left_to_the_nearest_second(node):
    node.send(register(expires=100))
    node.h.clock.advance(98.4)
    assert contacts(node.send(register(None, cseq=2))) == [("sip:alice@127.0.0.1:5090", 2)]
    node.h.clock.advance(1.2)  # 0.4 s left
    assert contacts(node.send(register(None, cseq=3))) == [("sip:alice@127.0.0.1:5090", 0)]


# -- retransmissions and CSeq order (RFC 3261 10.3 step 7) ------------------------------
# The registrar's own transaction absorbs a retransmission while it lasts
# (Timer J, 32 s over UDP); after it, or on another node of the cluster, the
# same REGISTER reaches the registrar again.

AFTER_TIMER_J = 40


def test_retransmitted_register_is_answered_with_the_bindings_unchanged(node):
    node.send(register(expires=600))
    node.h.clock.advance(AFTER_TIMER_J)
    resp = node.send(register(expires=600))
    assert resp.status == 200
    assert contacts(resp) == [("sip:alice@127.0.0.1:5090", 600 - AFTER_TIMER_J)]  # not refreshed
    assert node.registrar.stats["retransmissions"] == 1


def test_next_cseq_refreshes_the_binding(node):
    node.send(register(expires=600))
    node.h.clock.advance(100)
    resp = node.send(register(expires=600, cseq=2))
    assert contacts(resp) == [("sip:alice@127.0.0.1:5090", 600)]
    assert node.registrar.stats["retransmissions"] == 0


def test_retransmitted_removal_of_one_contact_is_answered_not_refused(node):
    node.send(register("<sip:alice@127.0.0.1:5090>, <sip:alice@127.0.0.1:5091>"))
    node.h.clock.advance(10)
    removal = register("<sip:alice@127.0.0.1:5090>;expires=0, <sip:alice@127.0.0.1:5091>", cseq=2)
    assert contacts(node.send(removal)) == [("sip:alice@127.0.0.1:5091", 3600)]
    node.h.clock.advance(AFTER_TIMER_J)
    resp = node.send(removal)
    assert resp.status == 200
    assert contacts(resp) == [("sip:alice@127.0.0.1:5091", 3600 - AFTER_TIMER_J)]
    assert node.registrar.stats["retransmissions"] == 1


@pytest.mark.parametrize("contact,expires", [
    ("<sip:alice@127.0.0.1:5090>;expires=0", None),   # removal by the contact's expires
    ("<sip:alice@127.0.0.1:5090>", 0),                # removal by the Expires header
    ("<sip:alice@127.0.0.1:5090>;q=0.5", None),       # another q
    ("<sip:alice@127.0.0.1:5090>, <sip:alice@127.0.0.1:5091>", None),  # one more contact
])
def test_a_different_request_with_an_equal_cseq_is_out_of_order(node, contact, expires):
    node.send(register())
    resp = node.send(register(contact, expires=expires, branch="z9hG4bKother"))
    assert (resp.status, resp.reason) == (400, "Invalid CSeq number (out of order)")
    assert [(str(b.contact), b.q) for b in node.location.lookup("sip:alice@example.test")] == [
        ("sip:alice@127.0.0.1:5090", 1.0)]
    assert node.registrar.stats["retransmissions"] == 0


def test_star_with_an_older_cseq_is_out_of_order(node):
    node.send(register(cseq=5))
    resp = node.send(register("*", expires=0, cseq=4))
    assert (resp.status, resp.reason) == (400, "Invalid CSeq number (out of order)")
    assert len(node.location.lookup("sip:alice@example.test")) == 1


def test_counters(node):
    for cseq in (1, 2):
        node.send(register(cseq=cseq))                                   # registered
    node.send(register(None, cseq=3))                                    # queries
    node.send(register(None, cseq=4))
    node.send(register(to="sip:alice@elsewhere.test", cseq=5))           # rejected
    node.send(register(extra="Require: foo\n", cseq=6))
    for _ in range(2):
        node.h.clock.advance(AFTER_TIMER_J)
        node.send(register(cseq=2))                                      # retransmissions
    # A retransmission is answered like a query, and counted as one too.
    assert node.registrar.stats == {"registered": 2, "rejected": 2, "queries": 4, "retransmissions": 2}


# -- what a REGISTER may name ------------------------------------------------------


@pytest.mark.parametrize("to", ["sip:example.test", "tel:+15551234567"])
def test_aor_without_user_or_not_sip_is_not_found(node, to):
    resp = node.send(register(to=to))
    assert (resp.status, resp.reason) == (404, "Not Found (not an address-of-record of this domain)")


def test_contact_that_is_not_a_sip_uri_is_refused(node):
    resp = node.send(register("<tel:+15551234567>"))
    assert (resp.status, resp.reason) == (400, "Contact must be a SIP URI")
    assert node.location.lookup("sip:alice@example.test") == []


def test_removing_a_contact_never_bound_is_answered(node):
    resp = node.send(register("<sip:alice@127.0.0.1:5090>;expires=0"))
    assert resp.status == 200 and resp.contacts == []
    node.send(register("<sip:alice@127.0.0.1:5091>", cseq=2))
    resp = node.send(register("<sip:alice@127.0.0.1:5090>;expires=0", cseq=3))
    assert contacts(resp) == [("sip:alice@127.0.0.1:5091", 3600)]


def test_register_with_a_route_or_for_another_domain_is_forwarded(node):
    # A Route left after pre-processing: for a registrar further on.
    node.h.receive(register(call_id="r1", extra="Route: <sip:127.0.0.1:5070;lr>\n"), PHONE)
    # A Request-URI that is not one of our domains: the same.
    node.h.receive(register(call_id="r2", uri="sip:127.0.0.1:5070"), PHONE)
    assert [(m.method, m.call_id, a) for m, a in node.h.sent()] == [
        ("REGISTER", "r1", ("127.0.0.1", 5070)), ("REGISTER", "r2", ("127.0.0.1", 5070))]
    assert node.location.lookup("sip:alice@example.test") == []


# -- failures: answered, and logged for the operator ---------------------------------


def test_a_failure_reading_the_bindings_is_500_and_logged(node):
    def broken(aor):
        raise RuntimeError("location broken")
    node.location.lookup = broken
    with capturedLogs() as events:
        resp = node.send(register())
    assert (resp.status, resp.reason) == (500, "Server Internal Error")
    (event,) = [e for e in events if "log_failure" in e]
    assert formatEvent(event) == "answering a REGISTER failed"
    assert event["log_failure"].check(RuntimeError)


def test_a_refused_register_logs_no_failure(node):
    with capturedLogs() as events:
        assert node.send(register(to="sip:alice@elsewhere.test")).status == 404
    assert [e for e in events if "log_failure" in e] == []


def test_a_failure_answering_after_storing_is_500_and_logged(node):
    node.location.update = lambda aor, changes: defer.succeed([None])  # not bindings
    with capturedLogs() as events:
        resp = node.send(register())
    assert (resp.status, resp.reason) == (500, "Server Internal Error")
    (event,) = [e for e in events if "log_failure" in e]
    assert formatEvent(event) == "answering a REGISTER failed"
    assert event["log_failure"].check(AttributeError)


# -- where a contact is reached: NAT, TCP, Path, outbound -------------------------------


def _reached_at(node):
    """Where an INVITE for alice went: [(Request-URI, UDP address)]."""
    node.h.receive(_invite_for_alice(), ("127.0.0.1", 5080))
    return [(str(m.uri), a) for m, a in node.h.sent() if getattr(m, "method", None) == "INVITE"]


def test_private_contact_is_reached_at_source_even_when_its_via_matches(node):
    # The Via names where the packet came from, but the contact is private.
    node.send(register("<sip:alice@10.0.0.7:5060>", via="SIP/2.0/UDP 127.0.0.1:5090"))
    assert node.location.lookup("sip:alice@example.test")[0].received == ("udp", "127.0.0.1", 5090)
    assert _reached_at(node) == [("sip:alice@10.0.0.7:5060", PHONE)]


def test_contact_with_a_host_name_from_its_own_address_is_not_natted(node):
    node.send(register("<sip:alice@phone.example.test:5090>"))
    assert node.location.lookup("sip:alice@example.test")[0].received is None


def test_via_without_port_means_5060(node):
    # Sent from 127.0.0.2:5060, its Via naming 127.0.0.2 without port: not moved.
    node.send(register("<sip:alice@127.0.0.2:7000>", via="SIP/2.0/UDP 127.0.0.2"), ("127.0.0.2", 5060))
    assert node.location.lookup("sip:alice@example.test")[0].received is None
    assert _reached_at(node) == [("sip:alice@127.0.0.2:7000", ("127.0.0.2", 7000))]


def test_path_decides_even_when_the_register_looks_natted(node):
    # Through an edge proxy: the packet comes from it, not from the Via's host.
    data = register(extra="Supported: path\nPath: <sip:127.0.0.1:5070;lr>\n")
    node.send(data, ("127.0.0.1", 40123))
    assert node.location.lookup("sip:alice@example.test")[0].received is None
    assert _reached_at(node) == [("sip:alice@127.0.0.1:5090", ("127.0.0.1", 5070))]


def test_instance_without_reg_id_is_not_an_outbound_flow(node):
    # RFC 5626 needs both; a third-party registration stays as written.
    contact = '<sip:alice@127.0.0.1:7000>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
    resp = node.send(register(contact))
    assert resp.values("contact") == [
        '<sip:alice@127.0.0.1:7000>;expires=3600;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"']
    assert not resp.has("require")
    assert _reached_at(node) == [("sip:alice@127.0.0.1:7000", ("127.0.0.1", 7000))]


def tcp_register(node, data, peer):
    """A REGISTER over a new TCP connection from C{peer}; (the response, the connection's transport)."""
    proto = SIPStreamProtocol(node.h.layer.table)
    transport = StringTransport(peerAddress=IPv4Address("TCP", *peer))
    proto.makeConnection(transport)
    proto.dataReceived(data)
    response = parse_message(transport.value())
    transport.clear()
    return response, transport


@pytest.mark.parametrize("contact,via,flow", [
    # Its contact on the connection's host (any port): over the connection.
    ("<sip:alice@127.0.0.1:5090>", "127.0.0.1:5090", True),
    # A private contact: over the connection.
    ("<sip:alice@10.0.0.7:5060>", "127.0.0.1:5090", True),
    # A Via naming another host than the connection's: NAT, over the connection.
    ("<sip:alice@127.0.0.9:5090>", "198.51.100.7:5090", True),
    # A third party where its Via says, for a public contact elsewhere: as written.
    ("<sip:alice@127.0.0.9:5090>", "127.0.0.1:5090", False),
])
def test_tcp_contact_reached_over_its_connection_or_as_written(node, contact, via, flow):
    resp, connection = tcp_register(node, register(contact, via="SIP/2.0/TCP " + via), ("127.0.0.1", 40100))
    assert resp.status == 200
    (binding,) = node.location.lookup("sip:alice@example.test")
    assert binding.received == (("tcp", "127.0.0.1", 40100) if flow else None)
    udp = _reached_at(node)
    if flow:
        assert udp == []
        assert parse_message(connection.value()).method == "INVITE"
    else:
        assert udp == [("sip:alice@127.0.0.9:5090", ("127.0.0.9", 5090))]


def test_tcp_nat_detection_can_be_turned_off():
    node = Node(nat_detect=False)
    tcp_register(node, register("<sip:alice@127.0.0.9:5090>", via="SIP/2.0/TCP 198.51.100.7:5090"),
                 ("127.0.0.1", 40100))
    assert node.location.lookup("sip:alice@example.test")[0].received is None


# -- the memory location service ---------------------------------------------------


def test_memory_binding_is_gone_at_its_expiry_exactly(node):
    node.send(register(expires=100))
    node.h.clock.advance(99.5)  # the node's housekeeping sweeps here, next at 120
    node.h.clock.advance(0.5)
    assert node.location.lookup("sip:alice@example.test") == []
    assert list(node.location.all_bindings()) == []
    assert node.location.sweep() == 1
    assert node.location.aors == 0


def test_memory_removal_of_the_last_binding_forgets_the_aor(node):
    node.send(register())
    assert node.location.aors == 1
    node.send(register("<sip:alice@127.0.0.1:5090>;expires=0", cseq=2))
    assert node.location.aors == 0
    assert node.location.sweep() == 0


def test_memory_change_after_an_expiry_forgets_the_expired_binding(node):
    node.send(register(expires=100))
    node.h.clock.advance(99.5)
    node.h.clock.advance(0.5)  # expired, not swept yet
    node.send(register("<sip:alice@127.0.0.1:5091>;expires=0", cseq=2))
    assert node.location.aors == 0


def test_memory_sweep_counts_every_expired_binding():
    clock = _Clock()
    location = MemoryLocationService(clock)
    for aor, lifetimes in (("sip:a@example.test", (10, 20, 100)), ("sip:b@example.test", (10,))):
        location.update(aor, [Binding(aor, parse_uri("sip:x@127.0.0.1:%d" % (5000 + i)), t)
                              for i, t in enumerate(lifetimes)])
    clock.advance(30)
    assert location.sweep() == 3
    assert location.aors == 1
    assert [b.expires_at for b in location.all_bindings()] == [100]
    assert location.sweep() == 0


def _Clock():
    from twisted.internet.task import Clock
    return Clock()
