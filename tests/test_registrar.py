"""RFC 3261 10.3 registrar behaviour, Path, outbound and NAT detection, in-process."""

import pytest

from sipcluster.proxy.pipeline import RequestContext
from tests.harness import NodeHarness
from tests.sipdata import crlf

PHONE = ("127.0.0.1", 5090)


def register(contact="<sip:alice@127.0.0.1:5090>", expires=None, cseq=1, call_id="reg-1",
             to="sip:alice@example.test", extra=""):
    headers = ""
    if contact is not None:
        headers += "Contact: %s\n" % contact
    if expires is not None:
        headers += "Expires: %d\n" % expires
    return crlf("""\
REGISTER sip:example.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKr{cseq}{cid};rport
Max-Forwards: 70
From: <{to}>;tag=f1
To: <{to}>
Call-ID: {cid}
CSeq: {cseq} REGISTER
{headers}{extra}Content-Length: 0

""".format(cseq=cseq, cid=call_id, headers=headers, to=to, extra=extra))


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
    assert resp.header("Date").endswith("GMT")
    assert [str(b.contact) for b in node.location.lookup("sip:alice@example.test")] == [
        "sip:alice@127.0.0.1:5090"]


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
    assert node.send(register("*", cseq=2)).status == 400
    resp = node.send(register("*", expires=0, cseq=3))
    assert resp.status == 200 and resp.contacts == []
    assert node.location.lookup("sip:alice@example.test") == []


def test_out_of_order_cseq_for_same_call_id_is_rejected(node):
    node.send(register(cseq=5))
    resp = node.send(register("<sip:alice@127.0.0.1:5090>;expires=0", cseq=4))
    assert resp.status == 400 and "CSeq" in resp.reason
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
    assert node.send(register(to="sip:alice@elsewhere.test")).status == 404
    resp = node.send(register(extra="Require: foo\n", cseq=2))
    assert resp.status == 420 and resp.header("Unsupported") == "foo"


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
    assert "reg-id=1" in resp.values("contact")[0]


def test_nat_detection_can_be_turned_off():
    node = Node(nat_detect=False)
    node.send(register("<sip:alice@192.168.1.20:5060>"), ("127.0.0.1", 40123))
    assert node.location.lookup("sip:alice@example.test")[0].received is None


def test_store_failure_is_503_never_200(node):
    from twisted.internet import defer
    node.location.update = lambda aor, changes: defer.fail(RuntimeError("store down"))
    resp = node.send(register())
    assert resp.status == 503 and resp.header("Retry-After") == "5"
