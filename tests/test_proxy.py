"""
RFC 3261 section 16 behaviour of the stateful and stateless proxy, driven
in-process: datagrams in, datagrams out, time from a Clock.
"""

import pytest
from twisted.internet import defer

from sipcluster.location.interface import Binding
from sipcluster.proxy.pipeline import DIALOG, Stage
from sipcluster.sip.message import make_response, parse_message
from sipcluster.sip.uri import parse_uri
from sipcluster.transport.base import Peer
from tests.harness import NodeHarness
from tests.sipdata import crlf

UAC = ("127.0.0.1", 5080)
UAS1 = ("127.0.0.1", 5071)
UAS2 = ("127.0.0.1", 5072)
FOREIGN = ("127.0.0.1", 5070)


def invite(uri="sip:bob@127.0.0.1:5070", method="INVITE", branch="z9hG4bKuac1", extra="", mf=70):
    return crlf("""\
{m} {uri} SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5080;branch={b};rport
Max-Forwards: {mf}
From: Alice <sip:alice@example.test>;tag=a1
To: Bob <sip:bob@example.test>
Call-ID: call-1@example.test
CSeq: 1 {m}
Contact: <sip:alice@127.0.0.1:5080>
{extra}Content-Length: 0

""".format(m=method, uri=uri, b=branch, extra=extra, mf=mf))


def in_dialog(uri, method, route):
    """A request inside a dialog (To tag set) with one Route."""
    return invite(uri, method, extra="Route: %s\n" % route).replace(
        b"To: Bob <sip:bob@example.test>", b"To: Bob <sip:bob@example.test>;tag=b1")


def reply(request, status, to_tag="b1", extra=()):
    return make_response(request, status, to_tag=to_tag if status > 100 else None, extra=extra)


class Node:
    """A node built by build_node, in memory: domain example.test on 127.0.0.1:5060."""

    def __init__(self, stateless=False, timer_c=180, record_route=True, settings=None,
                 resolver=None):
        config = {"node": {"mode": "stateless" if stateless else "stateful"},
                  "sip": {"domains": ["example.test"], "record_route": record_route,
                          "server_header": "sipcluster-test"},
                  "timers": {"timer_c_s": timer_c}}
        for section, values in (settings or {}).items():
            config.setdefault(section, {}).update(values)
        self.h = NodeHarness(config, resolver=resolver)
        self.location = self.h.node.location
        self.forwarder = self.h.node.forwarder
        self.proxy = self.h.node.proxy
        self.pipeline = self.h.node.pipeline
        self.tl = self.h.node.transactions

    def bind(self, user, *targets):
        """Bind user@example.test to (addr, q) pairs."""
        aor = "sip:%s@example.test" % user
        self.location.update(aor, [
            Binding(aor, parse_uri("sip:%s@%s:%d" % (user, addr[0], addr[1])), 3600, q)
            for addr, q in targets])

    def send(self, data, addr=UAC):
        self.h.receive(data, addr)

    def out(self):
        return self.h.sent()

    def to(self, addr, messages):
        return [m for m, a in messages if a == addr]


def ringing(node):
    """Send an INVITE through C{node}; the callee rings.  Its forwarded copy."""
    node.send(invite())
    fwd = node.to(FOREIGN, node.out())[0]
    node.send(reply(fwd, 180), FOREIGN)
    node.out()
    return fwd


@pytest.fixture
def node():
    return Node()


def test_forwarded_request_per_16_6(node):
    node.send(invite())
    sent = node.out()
    assert [m.status for m in node.to(UAC, sent)] == [100]
    (fwd,) = node.to(FOREIGN, sent)
    assert str(fwd.uri) == "sip:bob@127.0.0.1:5070"
    assert fwd.max_forwards == 69
    top, second = fwd.vias
    assert top.host == "127.0.0.1" and top.port == 5060 and top.branch.startswith("z9hG4bK")
    assert top.has_rport
    # The caller's Via was stamped (RFC 3581): received and rport.
    assert second.received == "127.0.0.1" and second.rport == 5080
    assert [str(r.uri) for r in fwd.record_routes] == ["sip:127.0.0.1:5060;lr"]


def test_responses_go_back_without_our_via(node):
    node.send(invite())
    fwd = node.to(FOREIGN, node.out())[0]
    node.send(reply(fwd, 180), FOREIGN)
    node.send(reply(fwd, 200), FOREIGN)
    back = node.to(UAC, node.out())
    assert [m.status for m in back] == [180, 200]
    assert [v.branch for v in back[1].vias] == ["z9hG4bKuac1"]


def test_no_record_route_for_register_or_when_disabled():
    node = Node(record_route=False)
    node.send(invite())
    assert not node.to(FOREIGN, node.out())[0].has("record-route")
    node = Node()
    node.send(invite(method="OPTIONS"))
    assert not node.to(FOREIGN, node.out())[0].has("record-route")


@pytest.mark.parametrize("data,status", [
    (invite(mf=0), 483),
    (invite(extra="Proxy-Require: foo, bar\n"), 420),
    (invite("sip:nobody@example.test"), 404),
    (invite("sip:example.test"), 404),
])
def test_rejections(node, data, status):
    node.send(data)
    finals = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert [m.status for m in finals] == [status]
    assert finals[0].to_tag  # a final response of ours has a To tag
    if status == 420:
        assert finals[0].header("Unsupported") == "foo, bar"


def test_an_empty_server_header_leaves_our_responses_without_one():
    node = Node(settings={"sip": {"server_header": ""}})
    node.send(invite("sip:nobody@example.test"))
    (final,) = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert final.status == 404 and not final.has("server")
    node = Node()
    node.send(invite("sip:nobody@example.test"))
    (final,) = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert final.header("server") == "sipcluster-test"


def test_options_to_the_proxy_itself(node):
    node.send(invite("sip:127.0.0.1:5060", "OPTIONS"))
    (resp,) = node.to(UAC, node.out())
    assert resp.status == 200
    assert "INVITE" in resp.header("allow")
    assert resp.header("server") == "sipcluster-test"


def test_loop_is_detected(node):
    node.send(invite())
    fwd = node.to(FOREIGN, node.out())[0]
    # The request comes back unchanged: 482.
    node.send(fwd.to_bytes(), FOREIGN)
    back = node.to(FOREIGN, node.out())
    assert [m.status for m in back] == [482]


def test_spiral_is_not_a_loop(node):
    node.send(invite())
    fwd = node.to(FOREIGN, node.out())[0]
    fwd.uri = parse_uri("sip:carol@127.0.0.1:5070")  # retargeted downstream
    node.send(fwd.to_bytes(), FOREIGN)
    assert [m.method for m in node.to(FOREIGN, node.out()) if hasattr(m, "method")] == ["INVITE"]


def test_location_lookup_and_parallel_fork(node):
    node.bind("bob", (UAS1, 1.0), (UAS2, 1.0))
    node.send(invite("sip:bob@example.test"))
    sent = node.out()
    b1, = node.to(UAS1, sent)
    b2, = node.to(UAS2, sent)
    assert str(b1.uri) == "sip:bob@127.0.0.1:5071"
    assert b1.top_via.branch != b2.top_via.branch
    node.send(reply(b1, 180, "t1"), UAS1)
    node.send(reply(b2, 180, "t2"), UAS2)
    node.send(reply(b2, 200, "t2"), UAS2)
    sent = node.out()
    assert [m.status for m in node.to(UAC, sent)] == [180, 180, 200]
    # The 2xx cancels the other branch (16.7 step 10).
    cancel, = node.to(UAS1, sent)
    assert cancel.method == "CANCEL" and cancel.top_via.branch == b1.top_via.branch
    node.send(reply(cancel, 200, "t1"), UAS1)
    node.send(reply(b1, 487, "t1"), UAS1)
    sent = node.out()
    assert [m.method for m in node.to(UAS1, sent)] == ["ACK"]
    assert node.to(UAC, sent) == []  # nothing more upstream


def test_sequential_fork_by_q(node):
    node.bind("bob", (UAS1, 1.0), (UAS2, 0.5))
    node.send(invite("sip:bob@example.test"))
    sent = node.out()
    first, = node.to(UAS1, sent)
    assert node.to(UAS2, sent) == []
    node.send(reply(first, 486), UAS1)
    sent = node.out()
    second = [m for m in node.to(UAS2, sent) if hasattr(m, "method")]
    assert [m.method for m in second] == ["INVITE"]
    node.send(reply(second[0], 480, "t2"), UAS2)
    finals = [m.status for m in node.to(UAC, node.out()) if m.status >= 200]
    assert finals == [480]  # best of 486 and 480: the lowest 4xx


def test_6xx_cancels_and_wins(node):
    node.bind("bob", (UAS1, 1.0), (UAS2, 1.0))
    node.send(invite("sip:bob@example.test"))
    sent = node.out()
    b1, = node.to(UAS1, sent)
    b2, = node.to(UAS2, sent)
    node.send(reply(b1, 180), UAS1)
    node.send(reply(b2, 603, "t2"), UAS2)
    sent = node.out()
    assert [m.method for m in node.to(UAS1, sent)] == ["CANCEL"]
    assert [m.status for m in node.to(UAC, sent)] == [180]  # 6xx held
    node.send(reply(b1, 487), UAS1)
    finals = [m.status for m in node.to(UAC, node.out()) if m.status >= 200]
    assert finals == [603]


def test_503_becomes_500(node):
    node.send(invite())
    fwd = node.to(FOREIGN, node.out())[0]
    node.send(reply(fwd, 503, extra=[("Retry-After", "30")]), FOREIGN)
    final = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert [m.status for m in final] == [500]
    assert final[0].header("retry-after") == "30"


def test_challenges_are_aggregated(node):
    node.bind("bob", (UAS1, 1.0), (UAS2, 1.0))
    node.send(invite("sip:bob@example.test", "MESSAGE"))
    sent = node.out()
    b1, = node.to(UAS1, sent)
    b2, = node.to(UAS2, sent)
    node.send(reply(b1, 401, extra=[("WWW-Authenticate", 'Digest realm="a", nonce="1"')]), UAS1)
    node.send(reply(b2, 407, "t2", extra=[("Proxy-Authenticate", 'Digest realm="b", nonce="2"')]), UAS2)
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert final.status in (401, 407)
    assert [v for k, v in final.items() if k.lower() == "www-authenticate"] == ['Digest realm="a", nonce="1"']
    assert [v for k, v in final.items() if k.lower() == "proxy-authenticate"] == ['Digest realm="b", nonce="2"']


def test_challenges_are_aggregated_once_each_and_only_from_401_and_407(node):
    uas3 = ("127.0.0.1", 5073)
    node.bind("bob", (UAS1, 1.0), (UAS2, 1.0), (uas3, 1.0))
    node.send(invite("sip:bob@example.test", "MESSAGE"))
    sent = node.out()
    (b1,), (b2,), (b3,) = node.to(UAS1, sent), node.to(UAS2, sent), node.to(uas3, sent)
    same = 'Digest realm="a", nonce="1"'
    node.send(reply(b1, 401, extra=[("WWW-Authenticate", same)]), UAS1)
    node.send(reply(b2, 401, "t2", extra=[("WWW-Authenticate", same)]), UAS2)
    # A challenge on another status is no challenge (RFC 3261 16.7 step 7).
    node.send(reply(b3, 486, "t3", extra=[("WWW-Authenticate", 'Digest realm="c", nonce="3"')]), uas3)
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert final.status == 401
    assert [v for k, v in final.items() if k.lower() == "www-authenticate"] == [same]


def test_cancel_before_answer(node):
    fwd = ringing(node)
    node.send(invite(method="CANCEL"))
    sent = node.out()
    assert [m.status for m in node.to(UAC, sent)] == [200]  # to the CANCEL
    assert node.to(UAC, sent)[0].cseq.method == "CANCEL"
    cancel, = node.to(FOREIGN, sent)
    assert cancel.method == "CANCEL" and cancel.top_via.branch == fwd.top_via.branch
    node.send(reply(cancel, 200), FOREIGN)
    node.send(reply(fwd, 487), FOREIGN)
    sent = node.out()
    assert [m.status for m in node.to(UAC, sent)] == [487]
    assert [m.method for m in node.to(FOREIGN, sent)] == ["ACK"]
    node.send(invite(method="ACK"))  # the caller's ACK for 487 is absorbed
    assert node.out() == []


def test_cancel_without_transaction_is_481(node):
    node.send(invite(method="CANCEL", branch="z9hG4bKunknown"))
    assert [m.status for m in node.to(UAC, node.out())] == [481]


def test_timer_c_cancels_a_ringing_branch():
    node = Node(timer_c=5)
    fwd = ringing(node)
    node.h.advance(4.9)
    assert node.to(FOREIGN, node.out()) == []
    node.h.advance(0.2)
    cancel, = node.to(FOREIGN, node.out())
    assert cancel.method == "CANCEL"
    node.send(reply(fwd, 487), FOREIGN)
    assert [m.status for m in node.to(UAC, node.out())] == [487]


def test_no_response_at_all_is_408():
    # RFC 3261 17.1.1.2: over UDP the INVITE is retransmitted on Timer A
    # (T1, doubling: sent at 0, 0.5, 1.5, 3.5 ... 31.5 s) until Timer B
    # (64*T1 = 32 s) gives up and the caller gets a 408.
    node = Node()
    node.send(invite())
    first, = node.to(FOREIGN, node.out())
    clock = node.h.clock
    sent_at, finals = [], []
    while clock.seconds() < 33 and clock.getDelayedCalls():
        # To each timer exactly, so that late firing is not hidden in steps.
        clock.advance(min(c.getTime() for c in clock.getDelayedCalls()) - clock.seconds())
        now = clock.seconds()
        sent = node.out()
        for copy in node.to(FOREIGN, sent):
            assert copy.method == "INVITE" and copy.to_bytes() == first.to_bytes()
            sent_at.append(now)
        finals += [(m.status, now) for m in node.to(UAC, sent) if m.status >= 200]
    expected = [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert len(sent_at) == len(expected)
    assert sent_at == pytest.approx(expected, abs=1e-6)
    # The first 408 at Timer B; later ones are its retransmissions (Timer G,
    # the caller sent no ACK).
    assert {status for status, _ in finals} == {408}
    assert finals[0][1] == pytest.approx(32, abs=1e-6)


def test_ack_for_2xx_is_forwarded_by_route(node):
    ack = invite("sip:bob@127.0.0.1:5070", "ACK", branch="z9hG4bKack2",
                 extra="Route: <sip:127.0.0.1:5060;lr>\n").replace(b"To: Bob <sip:bob@example.test>", b"To: Bob <sip:bob@example.test>;tag=b1")
    node.send(ack)
    fwd, = node.to(FOREIGN, node.out())
    assert fwd.method == "ACK"
    assert not fwd.has("route")  # our own Route was removed (16.4)
    assert fwd.max_forwards == 69


def test_strict_router_request_uri_is_restored(node):
    # A strict router put our Record-Route URI in the Request-URI and the
    # real target at the end of the Route set (RFC 3261 16.4).
    node.send(in_dialog("sip:127.0.0.1:5060;lr", "BYE", "<sip:bob@127.0.0.1:5070>"))
    fwd, = node.to(FOREIGN, node.out())
    assert str(fwd.uri) == "sip:bob@127.0.0.1:5070"
    assert not fwd.has("route")


def test_next_hop_strict_route_is_fixed(node):
    node.send(in_dialog("sip:bob@127.0.0.1:5099", "BYE", "<sip:127.0.0.1:5070>"))
    fwd, = node.to(FOREIGN, node.out())
    assert str(fwd.uri) == "sip:127.0.0.1:5070"
    assert [str(r.uri) for r in fwd.routes] == ["sip:bob@127.0.0.1:5099"]


def test_loose_route_is_followed(node):
    node.send(in_dialog("sip:bob@192.0.2.1", "BYE", "<sip:127.0.0.1:5070;lr>"))
    fwd, = node.to(FOREIGN, node.out())
    assert str(fwd.uri) == "sip:bob@192.0.2.1"
    assert [str(r.uri) for r in fwd.routes] == ["sip:127.0.0.1:5070;lr"]


def test_invite_retransmission_is_absorbed(node):
    node.send(invite())
    node.out()
    node.send(invite())
    sent = node.out()
    assert node.to(FOREIGN, sent) == []
    assert [m.status for m in node.to(UAC, sent)] == [100]


def test_stray_2xx_is_forwarded_by_via(node):
    node.send(invite())
    fwd = node.to(FOREIGN, node.out())[0]
    node.send(reply(fwd, 200), FOREIGN)
    node.out()
    node.h.advance(33)  # every transaction is gone
    node.send(reply(fwd, 200), FOREIGN)
    assert [m.status for m in node.to(UAC, node.out())] == [200]


# -- stateless --------------------------------------------------------------


def test_stateless_branch_is_stable_and_shared_with_cancel():
    node = Node(stateless=True)
    node.send(invite())
    node.send(invite())
    node.send(invite(method="CANCEL"))
    sent = node.to(FOREIGN, node.out())
    assert [m.method for m in sent] == ["INVITE", "INVITE", "CANCEL"]
    assert len({m.top_via.branch for m in sent}) == 1
    assert node.to(UAC, node.out()) == []  # no 100 Trying, no state


def test_stateless_ack_for_a_failure_gets_the_invite_branch():
    # RFC 3261 17.1.1.3: the ACK for a non-2xx has the INVITE's branch; a
    # stateless proxy must keep that true downstream (16.11), though the ACK
    # carries the To tag the INVITE did not (found with baresip: the callee
    # retransmitted its 486 for 32 s).
    node = Node(stateless=True)
    node.send(invite())
    fwd, = node.to(FOREIGN, node.out())
    node.send(reply(fwd, 486), FOREIGN)
    node.out()
    ack = invite(method="ACK").replace(b"To: Bob <sip:bob@example.test>",
                                       b"To: Bob <sip:bob@example.test>;tag=b1")
    node.send(ack)
    fwd_ack, = node.to(FOREIGN, node.out())
    assert fwd_ack.method == "ACK" and fwd_ack.top_via.branch == fwd.top_via.branch


def test_stateless_response_forwarding():
    node = Node(stateless=True)
    node.send(invite())
    fwd, = node.to(FOREIGN, node.out())
    node.send(reply(fwd, 100), FOREIGN)
    node.send(reply(fwd, 200), FOREIGN)
    back = node.to(UAC, node.out())
    assert [m.status for m in back] == [100, 200]
    assert len(back[1].vias) == 1
    # A response whose top Via is not ours is dropped.
    node.send(reply(parse_message(invite()), 200), FOREIGN)
    assert node.out() == []
    assert node.h.layer.stats["dropped"] == 1


def test_stateless_rejects_and_options():
    node = Node(stateless=True)
    node.send(invite(mf=0))
    node.send(invite("sip:127.0.0.1:5060", "OPTIONS", branch="z9hG4bKo"))
    assert [m.status for m in node.to(UAC, node.out())] == [483, 200]


def test_response_with_only_our_via_is_not_forwarded_as_is(node):
    node.send(invite())
    fwd = node.to(FOREIGN, node.out())[0]
    node.send(reply(fwd, 180), FOREIGN)
    # A broken UAS answers with only our Via (e.g. copied from our CANCEL).
    broken = reply(fwd, 486)
    broken.set("via", str(fwd.top_via))
    node.send(broken, FOREIGN)
    finals = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert [m.status for m in finals] == [486]
    assert [v.branch for v in finals[0].vias] == ["z9hG4bKuac1"]


def test_contacts_of_our_region_are_tried_first():
    from sipcluster.cluster.membership import ClusterMembership
    from sipcluster.routing.cluster import ClusterRouting
    node = Node()
    membership = ClusterMembership(None, node.h.clock, "/sc", "here", {"region": "eu"})
    membership.nodes = {"here": {"region": "eu"}, "far": {"region": "us"}, "near": {"region": "eu"}}
    node.pipeline.named("location").cluster = ClusterRouting(membership)
    aor = "sip:bob@example.test"
    node.location.update(aor, [
        Binding(aor, parse_uri("sip:bob@127.0.0.1:5071"), 3600, 1.0, node="far"),
        Binding(aor, parse_uri("sip:bob@127.0.0.1:5072"), 3600, 1.0, node="near")])
    node.send(invite("sip:bob@example.test"))
    sent = node.out()
    assert node.to(UAS1, sent) == []  # the us contact waits
    first, = node.to(UAS2, sent)
    node.send(reply(first, 480), UAS2)
    assert [m.method for m in node.to(UAS1, node.out()) if hasattr(m, "method")] == ["INVITE"]


class FakeCluster:
    """The cluster routing of a location stage: every binding of our region."""

    def __init__(self, flow_route):
        self.flow_route = flow_route

    def region_rank(self, binding):
        return 0


def test_flow_held_by_another_node_is_reached_through_it():
    node = Node()
    aor = "sip:alice@example.test"
    node.location.update(aor, [Binding(aor, parse_uri("sip:alice@192.168.1.20:5060"), 3600,
                                       received=("udp", "127.0.0.1", 40123), node="node-a")])
    node.pipeline.named("location").cluster = FakeCluster(
        lambda b: "<sip:127.0.0.1:5071;lr>" if b.node == "node-a" else None)
    node.send(invite("sip:alice@example.test"))
    fwd, = node.to(UAS1, node.out())  # to node-a, not to the flow itself
    assert str(fwd.uri) == "sip:alice@192.168.1.20:5060;alias=127.0.0.1~40123~udp"
    assert [str(r.uri) for r in fwd.routes] == ["sip:127.0.0.1:5071;lr"]


def test_alias_in_request_uri_is_sent_over_that_flow():
    node = Node()
    node.send(invite("sip:alice@192.168.1.20:5060;alias=127.0.0.1~40123~udp"))
    sent = node.out()
    fwd, = [m for m, a in sent if a == ("127.0.0.1", 40123)]
    assert str(fwd.uri) == "sip:alice@192.168.1.20:5060"


def test_bad_alias_is_ignored():
    from sipcluster.proxy.forwarding import parse_alias
    assert parse_alias("127.0.0.1~40123~udp") == ("udp", "127.0.0.1", 40123)
    for bad in ["host~1~udp", "127.0.0.1~x~udp", "127.0.0.1~1~sctp", "127.0.0.1~1"]:
        assert parse_alias(bad) is None


def test_a_request_uri_with_a_bad_alias_goes_where_it_says_untouched():
    node = Node()
    node.send(invite("sip:alice@192.168.1.20:5060;alias=host~40123~udp"))
    fwd, = [m for m, a in node.out() if a == ("192.168.1.20", 5060)]
    assert str(fwd.uri) == "sip:alice@192.168.1.20:5060;alias=host~40123~udp"


def test_calls_being_set_up_are_counted_until_their_final_response(node):
    """C{proxy.setups}: what call admission counts besides confirmed dialogs."""
    node.send(invite())
    fwd = node.to(FOREIGN, node.out())[0]
    assert len(node.proxy.setups) == 1
    node.send(invite())  # a retransmission is the same call
    node.send(reply(fwd, 180), FOREIGN)
    assert len(node.proxy.setups) == 1
    node.send(reply(fwd, 200), FOREIGN)
    assert node.proxy.setups == set()
    # A failed call and a cancelled one stop counting too.
    node.send(invite(branch="z9hG4bKuac2").replace(b"call-1@", b"call-2@"))
    fwd = node.to(FOREIGN, node.out())[0]
    node.send(reply(fwd, 486), FOREIGN)
    node.send(invite(branch="z9hG4bKuac3").replace(b"call-1@", b"call-3@"))
    node.out()
    node.send(invite(method="CANCEL", branch="z9hG4bKuac3").replace(b"call-1@", b"call-3@"))
    assert len(node.proxy.setups) == 1
    # Timer C then 487 upstream; here the callee never answers the CANCEL.
    node.h.clock.advance(200)
    assert node.proxy.setups == set()
    # Requests inside a dialog are not call set-ups.
    node.send(in_dialog("sip:bob@127.0.0.1:5070", "INVITE", "<sip:127.0.0.1:5060;lr>"))
    assert node.proxy.setups == set()


# -- found by tests/test_node_fuzz.py ------------------------------------------------


def test_cancelled_branch_that_never_answers_ends_with_487_after_64_t1(node):
    # RFC 3261 9.1: the CANCEL is sent; if no final response to the INVITE
    # follows within 64*T1 the branch is given up.  It used to stay in
    # Proceeding for ever, and the caller with it.
    fwd = ringing(node)
    node.send(invite(method="CANCEL"))
    node.out()
    node.h.advance(31.9)
    assert [m.status for m in node.to(UAC, node.out())] == []
    node.h.advance(0.2)
    assert [m.status for m in node.to(UAC, node.out())] == [487]
    node.h.advance(40)
    assert node.tl.servers == {} and node.tl.clients == {}


def test_timer_c_cancel_that_is_never_answered_ends_with_408():
    node = Node(timer_c=5)
    fwd = ringing(node)
    node.h.advance(5.1)  # Timer C: CANCEL
    node.h.advance(32)   # ... never answered
    assert [m.status for m in node.to(UAC, node.out())] == [408]


def test_a_malformed_lower_via_does_not_stop_our_own_final_response():
    # Vias below the top one are not ours to parse, but our 408 carries
    # them; choosing it used to parse them all and raise in a timer.
    node = Node()
    node.send(invite().replace(b"Max-Forwards:", b"Via: not a via at all\r\nMax-Forwards:"))
    node.out()
    node.h.advance(32.2)  # Timer B (its 408 is sent again by Timer G from 32.5 s)
    finals = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert [m.status for m in finals] == [408]
    assert finals[0].values("via")[1:] == ["not a via at all"]


@pytest.mark.parametrize("stateless", [False, True])
def test_route_with_maddr_is_sent_to_the_maddr(stateless):
    node = Node(stateless=stateless)
    node.send(in_dialog("sip:bob@192.0.2.1", "BYE", "<sip:proxy.example.net:5075;lr;maddr=127.0.0.1>"))
    assert [m.method for m in node.to(("127.0.0.1", 5075), node.out())] == ["BYE"]


class CallObserver(Stage):
    name = "call-observer"
    points = (DIALOG,)

    def __init__(self):
        self.failed = []

    def dialog_confirmed(self, request, response):
        pass

    def dialog_ended(self, request, response):
        pass

    def call_failed(self, request, response, started):
        self.failed.append((request.call_id, response.status, started))


def test_failed_call_attempts_are_told_with_their_final_status_and_start(node):
    observer = CallObserver()
    node.pipeline.add(observer)
    node.h.clock.advance(50)
    node.send(invite())
    fwd = node.to(FOREIGN, node.out())[0]
    node.h.clock.advance(2)
    node.send(reply(fwd, 486), FOREIGN)
    assert observer.failed == [("call-1@example.test", 486, 50)]
    # Refused here, before any branch: told too.
    node.send(invite("sip:nobody@example.test", branch="z9hG4bKuac2"))
    assert observer.failed[1][:2] == ("call-1@example.test", 404)
    # Not for a re-INVITE's failure, nor for other methods.
    node.send(in_dialog("sip:bob@127.0.0.1:5070", "INVITE", "<sip:127.0.0.1:5060;lr>"))
    reinvite = node.to(FOREIGN, node.out())[0]
    node.send(reply(reinvite, 491), FOREIGN)
    node.send(invite(method="OPTIONS", uri="sip:nobody@example.test", branch="z9hG4bKuac3"))
    assert len(observer.failed) == 2


# -- next-hop names with several addresses (RFC 3263 4.3) ----------------------------


class Hops:
    """
    A resolver of next-hop names: each name's addresses in the order to
    try them, given by a Deferred (C{resolve}) or, when C{cached}, from
    the cache (C{cached_peers}, no Deferred).
    """

    def __init__(self, names, cached=False):
        self.names = names
        self.cached = cached

    def resolve(self, uri, transports):
        name = uri.param("maddr") or uri.host
        if self.cached:
            return defer.Deferred()  # what is cached is never asked again
        if name not in self.names:
            return defer.fail(LookupError(name))
        return defer.succeed(self._peers(name, transports))

    def cached_peers(self, uri, transports):
        name = uri.param("maddr") or uri.host
        if not self.cached:
            return None
        if name not in self.names:
            raise LookupError(name)
        return self._peers(name, transports)

    def _peers(self, name, transports):
        # (host, port) over UDP, or (transport, host, port); only over the
        # node's transports (RFC 3263 4.1).
        peers = [Peer(*(("udp",) + a if len(a) == 2 else a)) for a in self.names[name]]
        return [p for p in peers if p.transport in transports]


UAS3 = ("127.0.0.1", 5073)
TWO = {"uas.example.net": [UAS1, UAS2]}


def to_uas(method="INVITE", branch="z9hG4bKuac1"):
    return invite("sip:bob@uas.example.net", method, branch)


def requests(messages):
    return [m for m in messages if hasattr(m, "method")]


def finals(node, messages):
    return [m.status for m in node.to(UAC, messages) if m.status >= 200]


@pytest.mark.parametrize("cached", [False, True])
def test_a_503_from_one_address_sends_the_request_to_the_next(cached):
    # RFC 3263 4.3: a 503 from one address of the next hop's name means
    # the next address, in a new transaction (a new branch); the caller
    # never hears of the first address's 503.
    node = Node(resolver=Hops(TWO, cached))
    node.send(to_uas())
    sent = node.out()
    first, = node.to(UAS1, sent)
    assert node.to(UAS2, sent) == []
    node.send(reply(first, 503), UAS1)
    sent = node.out()
    assert [m.method for m in node.to(UAS1, sent)] == ["ACK"]
    second, = node.to(UAS2, sent)
    assert second.method == "INVITE"
    assert second.top_via.branch == first.top_via.branch + ".2"
    assert [str(v) for v in second.vias[1:]] == [str(v) for v in first.vias[1:]]
    assert str(second.uri) == str(first.uri) and second.max_forwards == first.max_forwards
    assert [str(r) for r in second.record_routes] == [str(r) for r in first.record_routes]
    assert node.to(UAC, sent) == []
    node.send(reply(second, 200), UAS2)
    sent = node.out()
    assert [m.status for m in node.to(UAC, sent)] == [200]


def test_the_last_address_answering_503_is_500_upstream():
    # RFC 3261 16.7 step 6: the best response a 503, the caller gets a 500.
    node = Node(resolver=Hops({"uas.example.net": [UAS1, UAS2, UAS3]}))
    node.send(to_uas("MESSAGE"))
    first, = node.to(UAS1, node.out())
    node.send(reply(first, 503), UAS1)
    second, = node.to(UAS2, node.out())
    assert second.top_via.branch == first.top_via.branch + ".2"
    node.send(reply(second, 503), UAS2)
    sent = node.out()
    third, = node.to(UAS3, sent)
    assert third.top_via.branch == first.top_via.branch + ".3"
    assert node.to(UAC, sent) == []
    node.send(reply(third, 503), UAS3)
    sent = node.out()
    assert requests(m for m, a in sent if a != UAC) == []
    assert finals(node, sent) == [500]


def test_other_failures_of_an_address_are_not_retried_elsewhere():
    # Only a 503, a timeout or a transport error means "try the next
    # address"; a 486 is the callee's answer.
    node = Node(resolver=Hops(TWO))
    node.send(to_uas())
    first, = node.to(UAS1, node.out())
    node.send(reply(first, 486), UAS1)
    sent = node.out()
    assert node.to(UAS2, sent) == []
    assert finals(node, sent) == [486]
    # A provisional and a 2xx go upstream as from a single address.
    node = Node(resolver=Hops(TWO))
    node.send(to_uas())
    first, = node.to(UAS1, node.out())
    node.send(reply(first, 180), UAS1)
    node.send(reply(first, 200), UAS1)
    sent = node.out()
    assert [m.status for m in node.to(UAC, sent)] == [180, 200]
    assert node.to(UAS2, sent) == []


def test_an_address_that_never_answers_is_given_up_at_timer_b_for_the_next():
    # RFC 3263 4.3 / RFC 3261 17.1.1.2: Timer B (64*T1 = 32 s) ends the
    # first address's transaction; the next address gets the request then.
    node = Node(resolver=Hops(TWO))
    node.send(to_uas())
    first, = node.to(UAS1, node.out())
    node.h.advance(31.9)
    sent = node.out()
    assert node.to(UAS2, sent) == [] and finals(node, sent) == []
    node.h.advance(0.2)
    sent = node.out()
    second, = node.to(UAS2, sent)
    assert second.method == "INVITE" and second.top_via.branch == first.top_via.branch + ".2"
    assert finals(node, sent) == []
    node.h.advance(31.9)
    assert finals(node, node.out()) == []
    node.h.advance(0.2)
    assert finals(node, node.out()) == [408]


def failing_writes(node, *addrs):
    """Make every socket of C{node} fail to send to C{addrs} (as a UDP sendto error)."""
    for sock in node.h.reactor.sockets:
        def write(data, addr, write=sock.write):
            if addr in addrs:
                raise OSError("Network is unreachable")
            write(data, addr)
        sock.write = write


def test_an_address_that_cannot_be_sent_to_is_skipped_at_once():
    # RFC 3263 4.3: a transport error is a failure of that address: the
    # next one is tried, without waiting for a timer.
    node = Node(resolver=Hops(TWO))
    failing_writes(node, UAS1)
    node.send(to_uas())
    sent = node.out()
    second, = node.to(UAS2, sent)
    assert second.method == "INVITE" and second.top_via.branch.endswith(".2")
    assert finals(node, sent) == []
    node.send(reply(second, 200), UAS2)
    assert [m.status for m in node.to(UAC, node.out())] == [200]


def test_every_address_failing_to_send_is_a_503_made_500():
    node = Node(resolver=Hops({"uas.example.net": [UAS1, UAS2, UAS3]}))
    failing_writes(node, UAS1, UAS2, UAS3)
    node.send(to_uas("MESSAGE"))
    assert finals(node, node.out()) == [500]


def test_a_cancel_before_the_503_stops_the_search_with_487():
    # RFC 3261 16.10: once the caller cancelled, no new address is tried;
    # the branch ends with 487.
    node = Node(resolver=Hops(TWO))
    node.send(to_uas())
    first, = node.to(UAS1, node.out())
    node.send(to_uas("CANCEL"))
    sent = node.out()
    assert [m.status for m in node.to(UAC, sent)] == [200]  # the CANCEL's
    node.send(reply(first, 503), UAS1)
    sent = node.out()
    assert requests(node.to(UAS2, sent)) == []
    assert finals(node, sent) == [487]


def test_no_next_address_once_another_branch_answered_2xx():
    # RFC 3261 16.7 step 10: after a 2xx went upstream the other branches
    # are cancelled; one of them failing with 503 is not retried elsewhere.
    node = Node(resolver=Hops(TWO))
    aor = "sip:bob@example.test"
    node.location.update(aor, [
        Binding(aor, parse_uri("sip:bob@uas.example.net"), 3600, 1.0),
        Binding(aor, parse_uri("sip:bob@127.0.0.1:5073"), 3600, 1.0)])
    node.send(invite("sip:bob@example.test"))
    sent = node.out()
    first, = node.to(UAS1, sent)
    other, = node.to(UAS3, sent)
    node.send(reply(first, 180, "t1"), UAS1)
    node.send(reply(other, 200, "t3"), UAS3)
    sent = node.out()
    assert [m.status for m in node.to(UAC, sent)] == [180, 200]
    assert [m.method for m in node.to(UAS1, sent)] == ["CANCEL"]
    node.send(reply(first, 503, "t1"), UAS1)
    sent = node.out()
    assert node.to(UAS2, sent) == []
    assert node.to(UAC, sent) == []


def test_a_later_address_that_cannot_be_sent_to_is_skipped_too():
    node = Node(resolver=Hops({"uas.example.net": [UAS1, UAS2, UAS3]}))
    failing_writes(node, UAS2)
    node.send(to_uas("MESSAGE"))
    first, = node.to(UAS1, node.out())
    node.send(reply(first, 503), UAS1)
    sent = node.out()
    third, = node.to(UAS3, sent)
    assert third.top_via.branch == first.top_via.branch + ".3"
    node.send(reply(third, 200), UAS3)
    assert [m.status for m in node.to(UAC, node.out())] == [200]


def test_a_name_that_does_not_resolve_is_502_with_its_name():
    for stateless in (False, True):
        node = Node(stateless=stateless, resolver=Hops(TWO))
        node.send(invite("sip:bob@nowhere.example.net"))
        sent = node.out()
        final, = [m for m in node.to(UAC, sent) if m.status >= 200]
        assert (final.status, final.reason) == (502, "Cannot resolve nowhere.example.net")
        assert requests(m for m, a in sent) == []
        # The maddr is the name looked up (RFC 3261 19.1.1).
        node.send(invite("sip:bob@uas.example.net;maddr=gone.example.net", branch="z9hG4bKuac2"))
        final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
        assert (final.status, final.reason) == (502, "Cannot resolve gone.example.net")


def test_a_stateless_ack_that_cannot_be_forwarded_is_dropped_unanswered():
    node = Node(stateless=True, resolver=Hops(TWO))
    ack = invite("sip:bob@nowhere.example.net", "ACK").replace(
        b"To: Bob <sip:bob@example.test>", b"To: Bob <sip:bob@example.test>;tag=b1")
    why, = stateless_forward_failures(node, ack)
    assert node.out() == []
    assert "nowhere.example.net" in why


@pytest.mark.parametrize("cached", [False, True])
def test_a_stateless_send_that_fails_is_logged_whether_the_name_was_resolved_or_cached(cached):
    # The send is the same UDP write either way: after the resolver's
    # Deferred (cached False) or at once from its cache (cached True); a
    # failed write is logged, and a stateless proxy has no next address
    # to try (RFC 3263 4.3 is for transactions).
    node = Node(stateless=True, resolver=Hops(TWO, cached))
    failing_writes(node, UAS1)
    why, = stateless_forward_failures(node, to_uas("MESSAGE"))
    assert why == "UDP send to udp:127.0.0.1:%d failed" % UAS1[1]
    assert node.to(UAS2, node.out()) == []


def stateless_forward_failures(node, request):
    """
    Send C{request} to C{node}; the reasons of the "stateless forward
    failed" lines it logged, each checked to be in the proxy's namespace.
    """
    from twisted.logger import capturedLogs
    with capturedLogs() as events:
        node.send(request)
    said = [e for e in events if e.get("log_format", "").startswith("stateless forward failed")]
    assert all(e["log_namespace"] == "sipcluster.proxy.stateless.StatelessProxy" for e in said)
    return [e["why"] for e in said]


@pytest.mark.parametrize("cached", [False, True])
def test_stateless_forwarding_to_a_name_uses_its_first_address(cached):
    # RFC 3261 16.11: no transaction, so no trying the next address.
    node = Node(stateless=True, resolver=Hops(TWO, cached))
    node.send(to_uas())
    sent = node.out()
    fwd, = node.to(UAS1, sent)
    assert fwd.method == "INVITE" and node.to(UAS2, sent) == []
    node.send(reply(fwd, 503), UAS1)
    sent = node.out()
    assert [m.status for m in node.to(UAC, sent)] == [503]  # passed on as it is
    assert node.to(UAS2, sent) == []


@pytest.mark.parametrize("stateless", [False, True])
def test_a_next_hop_that_is_this_node_is_482(stateless):
    # The copy would come back to us until Max-Forwards ran out.
    node = Node(stateless=stateless, resolver=Hops({"me.example.net": [("127.0.0.1", 5060)]}))
    node.send(invite("sip:bob@me.example.net"))
    sent = node.out()
    final, = [m for m in node.to(UAC, sent) if m.status >= 200]
    assert (final.status, final.reason) == (482, "Loop Detected (next hop is this node)")
    assert requests(m for m, a in sent) == []
    ack = invite("sip:bob@me.example.net", "ACK", branch="z9hG4bKack").replace(
        b"To: Bob <sip:bob@example.test>", b"To: Bob <sip:bob@example.test>;tag=b1")
    node.send(ack)
    assert node.out() == []


def test_different_requests_get_different_stateless_branches():
    # RFC 3261 16.11: the branch is derived from the request's own top Via
    # branch, so two transactions never share one downstream.
    node = Node(stateless=True)
    node.send(invite())
    node.send(invite(branch="z9hG4bKuac2"))
    one, two = node.to(FOREIGN, node.out())
    assert one.top_via.branch != two.top_via.branch
    # An RFC 2543 Via without a branch: the Via itself and the Call-ID.
    old = invite().replace(b";branch=z9hG4bKuac1", b"")
    node.send(old)
    node.send(old)
    node.send(old.replace(b"call-1@", b"call-2@"))
    a, b, c = node.to(FOREIGN, node.out())
    assert a.top_via.branch == b.top_via.branch != c.top_via.branch
    assert a.top_via.branch.startswith("z9hG4bK")


# -- what the forwarded copy carries (RFC 3261 16.6) --------------------------------


def tcp_sent(node, addr):
    """Connect the node's pending TCP connection to C{addr}; the request written on it."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport
    (host, port, factory, _, _), = [c for c in node.h.reactor.tcpClients if c[:2] == addr]
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
    factory.buildProtocol(None).makeConnection(transport)
    return [parse_message(transport.value())]  # (one request: no framing needed)


def test_a_next_hop_over_tcp_gets_a_tcp_via_and_a_record_route_per_side():
    # RFC 3261 16.6 step 4 / RFC 5658: arriving over UDP, leaving over TCP,
    # the proxy records both sides, the one toward the callee on top.
    node = Node()
    node.send(invite("sip:bob@127.0.0.1:5070;transport=tcp"))
    node.out()
    fwd, = tcp_sent(node, FOREIGN)
    assert fwd.top_via.transport == "TCP"
    assert (fwd.top_via.host, fwd.top_via.port) == ("127.0.0.1", 5060)
    assert [str(r.uri) for r in fwd.record_routes] == [
        "sip:127.0.0.1:5060;transport=tcp;lr", "sip:127.0.0.1:5060;lr"]
    assert fwd.max_forwards == 69


@pytest.mark.parametrize("uri", ["sips:bob@127.0.0.1:5070", "sip:bob@127.0.0.1:5070;transport=tls"])
def test_sips_and_tls_next_hops_go_over_a_stream(uri):
    node = Node()
    node.send(invite(uri))
    sent = node.out()
    assert node.to(FOREIGN, sent) == []
    assert [c[:2] for c in node.h.reactor.tcpClients] == [FOREIGN]


def test_a_sips_uri_without_port_is_sent_to_5061():
    node = Node()
    node.send(invite("sips:bob@127.0.0.1"))
    assert [c[:2] for c in node.h.reactor.tcpClients] == [("127.0.0.1", 5061)]
    node = Node()
    node.send(invite("sip:bob@127.0.0.2"))
    assert [m.method for m in requests(node.to(("127.0.0.2", 5060), node.out()))] == ["INVITE"]


def test_an_explicit_udp_transport_stays_on_udp():
    node = Node()
    node.send(invite("sip:bob@127.0.0.1:5070;transport=udp"))
    fwd, = node.to(FOREIGN, node.out())
    assert fwd.top_via.transport == "UDP"
    assert [str(r.uri) for r in fwd.record_routes] == ["sip:127.0.0.1:5060;lr"]


def test_the_resolver_choosing_tcp_moves_the_via_and_the_record_route():
    # RFC 3263 4.1: NAPTR/SRV may pick TCP for a URI that named no
    # transport; the copy then says TCP in its Via and records our TCP
    # side on top of the UDP one it came in by.
    node = Node(resolver=Hops({"uas.example.net": [("tcp", "127.0.0.1", 5070)]}))
    node.send(to_uas())
    assert node.to(FOREIGN, node.out()) == []
    fwd, = tcp_sent(node, FOREIGN)
    assert fwd.top_via.transport == "TCP" and fwd.top_via.port == 5060
    assert [str(r.uri) for r in fwd.record_routes] == [
        "sip:127.0.0.1:5060;transport=tcp;lr", "sip:127.0.0.1:5060;lr"]
    assert [v.branch for v in fwd.vias[1:]] == ["z9hG4bKuac1"]
    assert fwd.top_via.branch.startswith("z9hG4bK")
    # Without record-routing, only the Via moves.
    node = Node(record_route=False, resolver=Hops({"uas.example.net": [("tcp", "127.0.0.1", 5070)]}))
    node.send(to_uas())
    fwd, = tcp_sent(node, FOREIGN)
    assert fwd.top_via.transport == "TCP" and not fwd.has("record-route")


def test_moving_to_tcp_keeps_record_routes_that_are_not_ours():
    node = Node(resolver=Hops({"uas.example.net": [("tcp", "127.0.0.1", 5070)]}))
    node.send(to_uas().replace(b"Contact:", b"Record-Route: <sip:upstream.example.net;lr>\r\nContact:"))
    fwd, = tcp_sent(node, FOREIGN)
    assert [str(r.uri) for r in fwd.record_routes] == [
        "sip:127.0.0.1:5060;transport=tcp;lr", "sip:127.0.0.1:5060;lr",
        "sip:upstream.example.net;lr"]


def test_moving_to_tcp_in_a_dialog_adds_no_record_route():
    node = Node(resolver=Hops({"uas.example.net": [("tcp", "127.0.0.1", 5070)]}))
    node.send(in_dialog("sip:bob@uas.example.net", "BYE", "<sip:127.0.0.1:5060;lr>"))
    fwd, = tcp_sent(node, FOREIGN)
    assert fwd.method == "BYE" and fwd.top_via.transport == "TCP"
    assert not fwd.has("record-route")
    node = Node(resolver=Hops({"uas.example.net": [("tcp", "127.0.0.1", 5070)]}))
    node.send(to_uas("MESSAGE"))
    fwd, = tcp_sent(node, FOREIGN)
    assert fwd.top_via.transport == "TCP" and not fwd.has("record-route")


@pytest.mark.parametrize("stateless", [False, True])
def test_a_request_without_max_forwards_leaves_with_69(stateless):
    # RFC 3261 16.6 step 3: absent, it is added with 70, less this hop.
    node = Node(stateless=stateless)
    node.send(invite().replace(b"Max-Forwards: 70\r\n", b""))
    fwd, = requests(node.to(FOREIGN, node.out()))
    assert fwd.max_forwards == 69
    node.send(invite(mf=1, branch="z9hG4bKuac2"))
    fwd, = requests(node.to(FOREIGN, node.out()))
    assert fwd.max_forwards == 0


def test_a_path_route_set_leads_to_the_contact_in_order():
    # RFC 3327 5: the Path values of the registration become the first
    # Route entries, in the order they were registered.
    node = Node()
    aor = "sip:bob@example.test"
    node.location.update(aor, [Binding(aor, parse_uri("sip:bob@192.0.2.9:5090"), 3600,
                                       path=["<sip:127.0.0.1:5070;lr>", "<sip:edge2.example.net;lr>"])])
    node.send(invite("sip:bob@example.test"))
    fwd, = node.to(FOREIGN, node.out())
    assert str(fwd.uri) == "sip:bob@192.0.2.9:5090"
    assert [str(r.uri) for r in fwd.routes] == ["sip:127.0.0.1:5070;lr", "sip:edge2.example.net;lr"]


def test_a_strict_router_rewrite_keeps_the_rest_of_the_route_set():
    # RFC 3261 16.4: the last Route is the real Request-URI; the others
    # stay, in order.
    node = Node()
    node.send(in_dialog("sip:127.0.0.1:5060;lr", "BYE", "<sip:127.0.0.1:5070;lr>, "
                        "<sip:hop2.example.net;lr>, <sip:bob@192.0.2.1>"))
    fwd, = node.to(FOREIGN, node.out())
    assert str(fwd.uri) == "sip:bob@192.0.2.1"
    assert [str(r.uri) for r in fwd.routes] == ["sip:127.0.0.1:5070;lr", "sip:hop2.example.net;lr"]


def test_our_two_record_route_entries_are_both_removed():
    # 16.4 after a double Record-Route (16.6 step 4): the next request of
    # the dialog carries both of our entries; neither is followed.
    node = Node()
    node.send(in_dialog("sip:bob@127.0.0.1:5070", "BYE",
                        "<sip:127.0.0.1:5060;transport=tcp;lr>, <sip:127.0.0.1:5060;lr>, "
                        "<sip:127.0.0.1:5071;lr>"))
    fwd, = node.to(UAS1, node.out())
    assert [str(r.uri) for r in fwd.routes] == ["sip:127.0.0.1:5071;lr"]


def test_options_to_the_proxy_lists_what_it_accepts(node):
    node.send(invite("sip:127.0.0.1:5060", "OPTIONS"))
    (resp,) = node.to(UAC, node.out())
    assert resp.status == 200
    data = resp.to_bytes()
    assert b"\r\nAllow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, PRACK" in data
    assert b"\r\nAccept: application/sdp\r\n" in data
    assert b"\r\nAccept-Language: en\r\n" in data
    assert b"\r\nServer: sipcluster-test\r\n" in data


def test_options_with_max_forwards_0_to_the_proxy_is_answered():
    # RFC 3261 16.3 step 3: a request for the proxy itself with
    # Max-Forwards 0 is answered, not refused with 483; one with a Route
    # is not for us.
    node = Node()
    node.send(invite("sip:127.0.0.1:5060", "OPTIONS", mf=0))
    assert [m.status for m in node.to(UAC, node.out())] == [200]
    node.send(invite("sip:example.test", "OPTIONS", mf=0, branch="z9hG4bKuac2"))
    assert [m.status for m in node.to(UAC, node.out())] == [200]
    node.send(invite("sip:127.0.0.1:5060", "MESSAGE", mf=0, branch="z9hG4bKuac3"))
    assert [m.status for m in node.to(UAC, node.out())] == [483]
    node.send(invite("sip:127.0.0.1:5060", "OPTIONS", mf=0, branch="z9hG4bKuac4",
                     extra="Route: <sip:127.0.0.1:5070;lr>\n"))
    assert [m.status for m in node.to(UAC, node.out())] == [483]


# -- the best response (RFC 3261 16.7 step 6) -----------------------------------------


def forked(node, method="INVITE"):
    """bob@example.test at UAS1 and UAS2 (same q): the two forwarded copies."""
    node.bind("bob", (UAS1, 1.0), (UAS2, 1.0))
    node.send(invite("sip:bob@example.test", method))
    sent = node.out()
    b1, = node.to(UAS1, sent)
    b2, = node.to(UAS2, sent)
    return b1, b2


@pytest.mark.parametrize("first,second,best", [
    (408, 480, 480),  # a specific 4xx rather than a timeout
    (480, 408, 480),
    (408, 500, 408),  # but the lowest class first
    (486, 404, 404),
    (500, 302, 302),
    (486, 600, 600),  # any 6xx
    (600, 486, 600),
])
def test_the_best_of_two_final_responses_goes_upstream(node, first, second, best):
    b1, b2 = forked(node, "MESSAGE")
    node.send(reply(b1, first, "t1"), UAS1)
    assert finals(node, node.out()) == []
    node.send(reply(b2, second, "t2"), UAS2)
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert final.status == best
    assert final.to_tag == ("t1" if best == first else "t2")  # the callee's own response


def test_a_600_cancels_the_other_branches_like_any_6xx(node):
    b1, b2 = forked(node)
    node.send(reply(b1, 180, "t1"), UAS1)
    node.send(reply(b2, 600, "t2"), UAS2)
    sent = node.out()
    assert [m.method for m in node.to(UAS1, sent)] == ["CANCEL"]
    assert finals(node, sent) == []
    node.send(reply(b1, 487, "t1"), UAS1)
    assert finals(node, node.out()) == [600]


def test_a_599_does_not_cancel_the_other_branches(node):
    b1, b2 = forked(node)
    node.send(reply(b1, 180, "t1"), UAS1)
    node.send(reply(b2, 599, "t2"), UAS2)
    sent = node.out()
    assert requests(node.to(UAS1, sent)) == []
    node.send(reply(b1, 200, "t1"), UAS1)
    assert [m.status for m in node.to(UAC, node.out())] == [200]


@pytest.mark.parametrize("status,header", [(401, "WWW-Authenticate"), (407, "Proxy-Authenticate")])
def test_challenges_of_the_same_kind_are_all_gathered(node, status, header):
    # RFC 3261 16.7 step 7: every 401/407's challenges go into the one
    # response sent upstream.
    b1, b2 = forked(node, "MESSAGE")
    node.send(reply(b1, status, "t1", extra=[(header, 'Digest realm="a", nonce="1"')]), UAS1)
    node.send(reply(b2, status, "t2", extra=[(header, 'Digest realm="b", nonce="2"')]), UAS2)
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert final.status == status
    assert [v for k, v in final.items() if k.lower() == header.lower()] == [
        'Digest realm="a", nonce="1"', 'Digest realm="b", nonce="2"']


def test_a_408_from_downstream_goes_up_as_it_came(node):
    node.send(invite())
    fwd, = node.to(FOREIGN, node.out())
    node.send(reply(fwd, 408, "t9"), FOREIGN)
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert final.status == 408 and final.to_tag == "t9"


def test_a_branch_the_callee_never_answers_is_408_of_our_own():
    node = Node()
    node.send(invite("sip:bob@127.0.0.1:5070", "MESSAGE"))
    node.out()
    node.h.advance(31.9)
    assert finals(node, node.out()) == []
    node.h.advance(0.2)  # Timer F
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert final.status == 408 and final.reason == "Request Timeout"


# -- CANCEL while the request is still on its way (RFC 3261 16.10) --------------------


class Waiting(Stage):
    """A request stage that waits (a store, a RADIUS server) until told."""

    name = "waiting"
    points = ("request",)

    def __init__(self):
        self.waiting = defer.Deferred()

    def on_request(self, context):
        return self.waiting


def test_a_cancel_while_a_stage_waits_is_487_and_a_failed_call():
    node = Node()
    stage = node.pipeline.add(Waiting(), before="registrar")
    observer = node.pipeline.add(CallObserver())
    node.h.clock.advance(7)
    node.send(invite())
    assert [m.status for m in node.to(UAC, node.out())] == [100]
    node.send(invite(method="CANCEL"))
    sent = node.to(UAC, node.out())
    assert [(m.status, m.cseq.method) for m in sent] == [(200, "CANCEL"), (487, "INVITE")]
    assert sent[1].to_tag  # our own final response
    assert observer.failed == [("call-1@example.test", 487, 7)]
    assert node.proxy.setups == set()
    stage.waiting.callback(None)  # too late: nothing is forwarded
    assert requests(m for m, a in node.out()) == []


class Slow:
    """A resolver whose answers wait until told."""

    def __init__(self):
        self.pending = []

    def resolve(self, uri, transports):
        d = defer.Deferred()
        self.pending.append(d)
        return d


def test_a_cancel_while_the_next_hop_is_being_resolved_sends_nothing():
    resolver = Slow()
    node = Node(resolver=resolver)
    node.send(to_uas())
    node.out()
    node.send(to_uas("CANCEL"))
    assert [m.status for m in node.to(UAC, node.out())] == [200]
    resolver.pending[0].callback([Peer("udp", *UAS1)])
    sent = node.out()
    assert requests(m for m, a in sent) == []
    assert finals(node, sent) == [487]


def test_a_non_invite_being_resolved_is_still_sent_after_a_cancel():
    # CANCEL has no effect on a non-INVITE (RFC 3261 9.2): answered 481
    # since there is no INVITE transaction to match.
    resolver = Slow()
    node = Node(resolver=resolver)
    node.send(to_uas("MESSAGE"))
    node.out()
    resolver.pending[0].callback([Peer("udp", *UAS1)])
    assert [m.method for m in requests(node.to(UAS1, node.out()))] == ["MESSAGE"]


class Dialogs(Stage):
    name = "dialogs"
    points = (DIALOG,)

    def __init__(self):
        self.events = []

    def dialog_confirmed(self, request, response):
        self.events.append(("confirmed", request.method, request.call_id, response.status))

    def dialog_ended(self, request, response):
        self.events.append(("ended", request.method, request.call_id, response.status))

    def call_failed(self, request, response, started):
        self.events.append(("failed", request.method, request.call_id, response.status))


def test_dialog_stages_hear_of_confirmed_ended_and_failed_calls(node):
    dialogs = node.pipeline.add(Dialogs())
    node.send(invite())
    fwd, = node.to(FOREIGN, node.out())
    node.send(reply(fwd, 200), FOREIGN)
    node.send(in_dialog("sip:bob@127.0.0.1:5070", "BYE", "<sip:127.0.0.1:5060;lr>")
              .replace(b"CSeq: 1 ", b"CSeq: 2 ").replace(b"z9hG4bKuac1", b"z9hG4bKbye"))
    sent = node.out()
    bye, = requests(node.to(FOREIGN, sent))
    node.send(reply(bye, 200), FOREIGN)
    # A 300 is a failed call attempt, as any final response of 300 or more.
    node.send(invite(branch="z9hG4bKuac2").replace(b"call-1@", b"call-2@"))
    sent += node.out()
    fwd, = requests(node.to(FOREIGN, sent))[1:]
    node.send(reply(fwd, 300, extra=[("Contact", "<sip:bob@192.0.2.7>")]), FOREIGN)
    sent += node.out()
    assert finals(node, sent) == [200, 200, 300]
    assert dialogs.events == [
        ("confirmed", "INVITE", "call-1@example.test", 200),
        ("ended", "BYE", "call-1@example.test", 200),
        ("failed", "INVITE", "call-2@example.test", 300)]


# -- a target's own timeout and failure reports (tm's fr_timer) ----------------------


class Timed(Stage):
    """A target stage: every request to the given addresses, with a branch timeout."""

    name = "timed"
    points = ("targets",)

    def __init__(self, addrs, timeout):
        self.addrs = addrs
        self.timeout = timeout
        self.failed = []

    def targets(self, context):
        from sipcluster.proxy.forwarding import Target
        return [Target(parse_uri("sip:bob@%s:%d" % addr), timeout=self.timeout,
                       on_failed=lambda t, status: self.failed.append((str(t.uri), status)))
                for addr in self.addrs]


def timed(addrs=(UAS1,), timeout=2, **kwargs):
    node = Node(**kwargs)
    stage = node.pipeline.add(Timed(list(addrs), timeout), before="registrar")
    return node, stage


@pytest.mark.parametrize("method", ["INVITE", "MESSAGE"])
def test_a_target_timeout_fails_the_branch_with_its_own_408(method):
    node, stage = timed(timeout=2)
    node.send(invite(method=method))
    first, = requests(node.to(UAS1, node.out()))
    node.h.advance(1.9)
    sent = node.out()
    assert finals(node, sent) == [] and stage.failed == []
    assert [m.method for m in node.to(UAS1, sent)] == [method] * 2  # 0.5 s, 1.5 s
    node.h.advance(0.2)
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert (final.status, final.reason) == (408, "Request Timeout (no answer from next hop)")
    assert stage.failed == [("sip:bob@127.0.0.1:5071", 408)]
    # The branch retransmits no more (tm stops on fr_timer), and its
    # Timer B later is no second failure.
    node.h.advance(40)
    assert requests(node.to(UAS1, node.out())) == []
    assert stage.failed == [("sip:bob@127.0.0.1:5071", 408)]


def test_a_target_timeout_then_a_provisional_is_cancelled_not_relayed():
    node, stage = timed(timeout=2)
    node.send(invite())
    first, = requests(node.to(UAS1, node.out()))
    node.h.advance(2.1)
    assert finals(node, node.out()) == [408]
    node.send(reply(first, 180), UAS1)
    sent = node.out()
    assert [m.method for m in node.to(UAS1, sent)] == ["CANCEL"]
    assert node.to(UAC, sent) == []


def test_any_response_stops_the_target_timeout():
    node, stage = timed(timeout=2)
    node.send(invite())
    first, = requests(node.to(UAS1, node.out()))
    node.send(reply(first, 100), UAS1)
    node.h.advance(5)
    assert finals(node, node.out()) == [] and stage.failed == []
    node.send(reply(first, 486), UAS1)
    assert finals(node, node.out()) == [486]
    assert stage.failed == []  # an answer is no failure of the next hop


def test_failures_without_a_response_are_reported_to_the_target():
    # Timer F (no timeout of its own) and a transport error: 408 and 503.
    node, stage = timed(addrs=(UAS1, UAS2), timeout=None)
    failing_writes(node, UAS2)
    node.send(invite(method="MESSAGE"))
    node.out()
    assert stage.failed == [("sip:bob@127.0.0.1:5072", 503)]
    node.h.advance(32.1)
    assert finals(node, node.out()) == [408]
    assert stage.failed == [("sip:bob@127.0.0.1:5072", 503), ("sip:bob@127.0.0.1:5071", 408)]


def test_a_target_report_that_raises_does_not_stop_the_answer():
    node, stage = timed(timeout=1)
    stage.failed = None  # its on_failed now raises
    node.send(invite(method="MESSAGE"))
    node.out()
    node.h.advance(1.1)
    assert finals(node, node.out()) == [408]


def test_a_transport_error_of_the_only_branch_is_500_upstream():
    # RFC 3261 16.7 step 1 / 8.1.3.1: the transport error is a 503, and
    # a 503 becomes 500 upstream (16.7 step 6).
    node, stage = timed(timeout=None)
    failing_writes(node, UAS1)
    node.send(invite())
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert final.status == 500 and not final.has("retry-after")
    assert stage.failed == [("sip:bob@127.0.0.1:5071", 503)]


# -- both address families (RFC 5658: a Record-Route per side) ------------------------


DUAL = {"sip": {"listen": ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060", "udp:[::1]:5060"]}}
V6_UAS = ("::1", 5070)


def dual(resolver=None):
    return Node(settings=DUAL, resolver=resolver)


def test_from_ipv4_to_an_ipv6_next_hop_both_sides_are_recorded():
    node = dual()
    node.send(invite("sip:bob@[::1]:5070"))
    fwd, = node.to(V6_UAS, node.out())
    assert (fwd.top_via.host, fwd.top_via.port) == ("[::1]", 5060)
    assert [str(r.uri) for r in fwd.record_routes] == ["sip:[::1]:5060;lr", "sip:127.0.0.1:5060;lr"]


def test_from_ipv6_to_an_ipv4_next_hop_both_sides_are_recorded():
    node = dual()
    node.h.receive(invite(branch="z9hG4bKv6").replace(b"127.0.0.1:5080", b"[::1]:5080"),
                   ("::1", 5080), to=("::1", 5060))
    sent = node.out()
    fwd, = node.to(FOREIGN, sent)
    assert (fwd.top_via.host, fwd.top_via.port) == ("127.0.0.1", 5060)
    assert [str(r.uri) for r in fwd.record_routes] == ["sip:127.0.0.1:5060;lr", "sip:[::1]:5060;lr"]
    assert [m.status for m in node.to(("::1", 5080), sent)] == [100]


def test_from_ipv6_to_ipv6_one_record_route():
    node = dual()
    node.h.receive(invite("sip:bob@[::1]:5070", branch="z9hG4bKv6").replace(
        b"127.0.0.1:5080", b"[::1]:5080"), ("::1", 5080), to=("::1", 5060))
    fwd, = node.to(V6_UAS, node.out())
    assert [str(r.uri) for r in fwd.record_routes] == ["sip:[::1]:5060;lr"]


@pytest.mark.parametrize("stateless", [False, True])
def test_a_name_resolving_to_ipv6_moves_the_via_and_the_record_route(stateless):
    node = Node(stateless=stateless, settings=DUAL,
                resolver=Hops({"uas.example.net": [("udp", "::1", 5070)]}))
    node.send(to_uas())
    fwd, = node.to(V6_UAS, node.out())
    assert (fwd.top_via.host, fwd.top_via.port) == ("[::1]", 5060)
    assert [str(r.uri) for r in fwd.record_routes] == ["sip:[::1]:5060;lr", "sip:127.0.0.1:5060;lr"]


def test_the_next_address_in_another_family_gets_its_own_via_and_record_route():
    node = dual(Hops({"uas.example.net": [("udp", "::1", 5070), UAS1]}))
    node.send(to_uas())
    first, = node.to(V6_UAS, node.out())
    node.send(reply(first, 503), V6_UAS)
    second, = requests(node.to(UAS1, node.out()))
    assert (second.top_via.host, second.top_via.port) == ("127.0.0.1", 5060)
    assert second.top_via.branch == first.top_via.branch + ".2"
    assert [str(r.uri) for r in second.record_routes] == ["sip:127.0.0.1:5060;lr"]


# -- loops and spirals (RFC 3261 16.3 step 4, 16.6 step 8) ----------------------------


def looped(node, change=lambda data: data):
    """Send an INVITE, then its forwarded copy back to us, changed by C{change}: the answers."""
    node.send(invite())
    fwd = node.to(FOREIGN, node.out())[0]
    node.send(change(fwd.to_bytes()), FOREIGN)
    return node.out()


@pytest.mark.parametrize("change", [
    lambda d: d.replace(b"CSeq: 1 INVITE", b"CSeq: 2 INVITE"),
    lambda d: d.replace(b"call-1@example.test", b"call-9@example.test"),
    lambda d: d.replace(b"tag=a1", b"tag=a9"),
    lambda d: d.replace(b"To: Bob <sip:bob@example.test>", b"To: Bob <sip:bob@example.test>;tag=b9"),
    lambda d: d.replace(b"Max-Forwards:", b"Route: <sip:127.0.0.1:5070;lr>\r\nMax-Forwards:"),
])
def test_a_request_back_with_a_field_changed_is_a_spiral(node, change):
    sent = looped(node, change)
    assert [m.status for m, a in sent if not hasattr(m, "method") and m.status >= 200] == []
    assert len(requests(m for m, a in sent)) == 1


def test_a_request_back_with_a_proxy_require_is_refused_for_that_not_as_a_loop(node):
    sent = looped(node, lambda d: d.replace(b"Max-Forwards:", b"Proxy-Require: x\r\nMax-Forwards:"))
    assert [m.status for m, a in sent] == [420]


def test_a_request_without_from_tag_is_forwarded_and_its_loop_detected(node):
    node.send(invite().replace(b";tag=a1", b""))
    fwd, = node.to(FOREIGN, node.out())
    node.send(fwd.to_bytes(), FOREIGN)
    assert [m.status for m, a in node.out()] == [482]


def test_undecodable_bytes_are_hashed_as_they_came():
    # Header values keep undecodable bytes (surrogate escapes): the
    # branch, loop hash and our To tag are made from them all the same.
    for stateless in (False, True):
        node = Node(stateless=stateless)
        bad = invite().replace(b"call-1@", b"call-\xff@").replace(b";branch=z9hG4bKuac1", b"")
        node.send(bad)
        fwd, = requests(node.to(FOREIGN, node.out()))
        node.send(fwd.to_bytes(), FOREIGN)
        assert [m.status for m, a in node.out()] == [482]
        node.send(bad.replace(b"sip:bob@127.0.0.1:5070", b"sip:nobody@example.test"))
        final, = [m for m, a in node.out() if m.status >= 200]
        assert final.status == 404 and final.to_tag


def test_a_to_uri_that_does_not_parse_is_400_even_after_good_ones(node):
    # RFC 3261 16.3 step 1: every request's To is read; one that parsed
    # before does not make the next one pass unread.
    node.send(invite())
    node.out()
    node.send(invite(branch="z9hG4bKuac2").replace(b"To: Bob <sip:bob@example.test>",
                                                    b"To: Bob <sip:bob@[bad>"))
    final, = [m for m, a in node.out() if m.status >= 200]
    assert final.status == 400
    node.send(invite(branch="z9hG4bKuac3").replace(b"To: Bob <sip:bob@example.test>",
                                                    b"To: Bob <sip:bob@[bad>"))
    final, = [m for m, a in node.out() if m.status >= 200]
    assert final.status == 400


def test_our_100_has_no_to_tag_and_in_dialog_answers_keep_the_tag(node):
    node.send(invite())
    trying, = node.to(UAC, node.out())
    assert trying.status == 100 and trying.to_tag is None
    node.send(in_dialog("sip:nobody@example.test", "BYE", "<sip:127.0.0.1:5060;lr>"))
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert final.status == 404 and final.to_tag == "b1"


@pytest.mark.parametrize("host", ["127.0.0.256", "127.0.0.0001", "127.0.0", "127.0.0.1.1", "127.0.0.x"])
def test_a_host_that_only_looks_numeric_is_a_name(host):
    node = Node()
    node.send(invite("sip:bob@%s:5070" % host))
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert (final.status, final.reason) == (502, "Cannot resolve %s" % host)


def test_the_highest_numeric_octets_are_addresses():
    node = Node()
    node.send(invite("sip:bob@127.0.0.255:5070"))
    assert [m.method for m in requests(node.to(("127.0.0.255", 5070), node.out()))] == ["INVITE"]
    node = Node()
    node.send(invite("sip:bob@127.0.0.099:5070"))
    assert [m.method for m in requests(m for m, a in node.out())] == ["INVITE"]


@pytest.mark.parametrize("transport,v6", [("udp", False), ("tcp", False), ("udp", True)])
def test_an_alias_flow_decides_transport_and_family(transport, v6):
    node = Node(settings=DUAL)
    host = "::1" if v6 else "127.0.0.1"
    node.send(invite("sip:alice@192.168.1.20:5060;alias=%s~40123~%s" % (host, transport)))
    if transport == "tcp":
        assert [c[:2] for c in node.h.reactor.tcpClients] == [(host, 40123)]
        fwd, = tcp_sent(node, (host, 40123))
    else:
        fwd, = [m for m, a in node.out() if a == (host, 40123)]
    assert fwd.top_via.transport == transport.upper()
    assert fwd.top_via.host == ("[::1]" if v6 else "127.0.0.1")
    assert str(fwd.uri) == "sip:alice@192.168.1.20:5060"


def test_a_numeric_ipv6_maddr_is_sent_to_over_ipv6():
    node = Node(settings=DUAL)
    node.send(invite("sip:bob@uas.example.net:5070;maddr=[::1]"))
    fwd, = node.to(V6_UAS, node.out())
    assert fwd.top_via.host == "[::1]"
    assert [str(r.uri) for r in fwd.record_routes][0] == "sip:[::1]:5060;lr"


# -- a node on another port than 5060, or with two sockets ----------------------------


def on_port(port=5062, stateless=False, extra=()):
    node = Node(stateless=stateless, settings={"sip": {"listen": [
        "udp:127.0.0.1:%d" % port, "tcp:127.0.0.1:%d" % port] + list(extra)}})
    node.h.port = port
    return node


@pytest.mark.parametrize("stateless", [False, True])
def test_responses_come_back_through_a_node_on_another_port(stateless):
    node = on_port(stateless=stateless)
    node.send(invite())
    fwd, = requests(node.to(FOREIGN, node.out()))
    assert fwd.top_via.port == 5062
    node.send(reply(fwd, 486), FOREIGN)
    assert finals(node, node.out()) == [486]


def test_a_response_to_someone_else_is_dropped_and_counted_every_time():
    node = Node(stateless=True)
    for n in (1, 2):
        node.send(reply(parse_message(invite()), 200), FOREIGN)
        assert node.out() == []
        assert node.h.layer.stats["dropped"] == n


@pytest.mark.parametrize("stateless", [False, True])
def test_our_own_answer_leaves_by_the_socket_the_request_came_to(stateless):
    # RFC 3581 4 / 18.2.2: the response goes out from where the request
    # came in, so that a NAT lets it through.
    node = on_port(stateless=stateless, extra=["udp:127.0.0.1:5064"])
    node.h.receive(invite(mf=0), UAC, to=("127.0.0.1", 5064))
    second = [s for s in node.h.reactor.sockets if s.port == 5064]
    assert [parse_message(d).status for d, a in second[0].written] == [483]
    assert [m.status for m in node.to(UAC, node.out())] == [483]


def test_a_response_left_without_via_is_answered_with_its_status_and_reason(node):
    node.send(invite())
    fwd = node.to(FOREIGN, node.out())[0]
    broken = reply(fwd, 486)
    broken.reason = "Busy Somewhere Else"
    broken.set("via", str(fwd.top_via))
    node.send(broken, FOREIGN)
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert (final.status, final.reason) == (486, "Busy Somewhere Else")


# -- more of 16.6, 16.7 and 16.10 on the wire ------------------------------------------


class Recording(Stage):
    """A failure stage noting the (status, reason) of the responses it is shown."""

    name = "recording"
    points = ("failure",)
    needs_transactions = True

    def __init__(self):
        self.seen = []

    def failure(self, context, responses):
        self.seen.append([(r.status, r.reason) for r in responses])


def test_failure_stages_see_our_own_failure_responses():
    # What the branch ended with: a transport error is a 503 (RFC 3261
    # 16.7 step 1), a target timeout our 408; upstream both are answered
    # by the best of them (503 as 500, 16.7 step 6).
    node, stage = timed(addrs=(UAS1, UAS2), timeout=1)
    seen = node.pipeline.add(Recording())
    failing_writes(node, UAS2)
    node.send(invite(method="MESSAGE"))
    node.out()
    node.h.advance(1.1)
    assert sorted(seen.seen[0]) == [(408, "Request Timeout (no answer from next hop)"),
                                    (503, "Service Unavailable (transport error)")]
    assert finals(node, node.out()) == [408]


def test_a_branch_that_cannot_be_prepared_fails_with_the_error_of_its_route():
    # A Path value that is no address: that branch is answered 400, not
    # forwarded and not a 500 of ours.
    node = Node()
    aor = "sip:bob@example.test"
    node.location.update(aor, [Binding(aor, parse_uri("sip:bob@192.0.2.9:5090"), 3600,
                                       path=["<sip:edge.example.net;lr"])])
    node.send(invite("sip:bob@example.test"))
    sent = node.out()
    assert requests(m for m, a in sent) == []
    final, = [m for m in node.to(UAC, sent) if m.status >= 200]
    assert final.status == 400 and final.reason != "Server Internal Error"


def test_a_non_invite_provisional_goes_upstream():
    node = Node()
    node.send(invite(method="MESSAGE"))
    fwd, = node.to(FOREIGN, node.out())
    node.send(reply(fwd, 180), FOREIGN)
    assert [m.status for m in node.to(UAC, node.out())] == [180]
    node.send(reply(fwd, 200), FOREIGN)
    assert [m.status for m in node.to(UAC, node.out())] == [200]


def test_timer_c_is_for_invites_only():
    # RFC 3261 16.6 step 11: Timer C guards INVITE branches; a MESSAGE
    # branch ends by its own Timer F (64*T1).
    node = Node(timer_c=5)
    start = node.h.clock.seconds()
    node.send(invite(method="MESSAGE"))
    node.out()
    assert start + 5 not in node.tl.timer_heap.scheduled()
    node.h.advance(31.9)
    assert finals(node, node.out()) == []
    node.h.advance(0.2)
    assert finals(node, node.out()) == [408]


def test_timer_c_without_any_response_ends_the_branch_and_its_transaction():
    # Nothing to cancel (RFC 3261 9.1: no CANCEL before a provisional):
    # the branch is given up with 408 and its client transaction ended,
    # so it retransmits no more.
    node = Node(timer_c=5)
    start = node.h.clock.seconds()
    node.send(invite())
    node.out()
    assert start + 5 in node.tl.timer_heap.scheduled()
    node.h.advance(4.9)
    assert finals(node, node.out()) == []
    node.h.advance(0.2)
    assert finals(node, node.out()) == [408]
    node.h.advance(40)
    assert requests(node.to(FOREIGN, node.out())) == []
    assert node.tl.clients == {}


def test_a_300_is_a_final_failure_not_a_success(node):
    b1, b2 = forked(node)
    node.send(reply(b1, 300, "t1", extra=[("Contact", "<sip:bob@192.0.2.7>")]), UAS1)
    sent = node.out()
    assert finals(node, sent) == [] and requests(node.to(UAS2, sent)) == []
    node.send(reply(b2, 200, "t2"), UAS2)
    assert [m.status for m in node.to(UAC, node.out())] == [200]


def test_every_2xx_of_a_fork_goes_upstream_and_confirms_its_dialog(node):
    # RFC 3261 16.7 step 5: each 2xx is relayed, even after another one;
    # each is a dialog of its own (13.2.2.4), its retransmissions are not.
    dialogs = node.pipeline.add(Dialogs())
    b1, b2 = forked(node)
    node.send(reply(b1, 200, "t1"), UAS1)
    node.send(reply(b2, 200, "t2"), UAS2)
    node.send(reply(b1, 200, "t1"), UAS1)
    assert [(m.status, m.to_tag) for m in node.to(UAC, node.out())] == [
        (200, "t1"), (200, "t2"), (200, "t1")]
    assert [(e[0], e[3]) for e in dialogs.events] == [("confirmed", 200), ("confirmed", 200)]


def test_a_6xx_stops_the_later_q_groups(node):
    # RFC 3261 16.7 step 5: after a 6xx no new branch is started.
    node.bind("bob", (UAS1, 1.0), (UAS2, 1.0), (UAS3, 0.5))
    node.send(invite("sip:bob@example.test"))
    sent = node.out()
    b1, = node.to(UAS1, sent)
    b2, = node.to(UAS2, sent)
    node.send(reply(b1, 180, "t1"), UAS1)
    node.send(reply(b2, 603, "t2"), UAS2)
    node.out()
    node.send(reply(b1, 487, "t1"), UAS1)
    sent = node.out()
    assert requests(node.to(UAS3, sent)) == []
    assert finals(node, sent) == [603]


def test_a_cancel_stops_failure_stages_from_forking_again():
    from sipcluster.proxy.forwarding import Target
    node = Node()
    backup = node.pipeline.add(Backup("backup", [Target(parse_uri("sip:bob@127.0.0.1:5071"))]))
    fwd = ringing(node)
    node.send(invite(method="CANCEL"))
    node.out()
    node.send(reply(fwd, 487), FOREIGN)
    sent = node.out()
    assert requests(node.to(UAS1, sent)) == []
    assert finals(node, sent) == [487]
    assert backup.asked == 0


def test_a_cancel_while_a_failure_stage_waits_is_answered_when_it_decides():
    from sipcluster.proxy.forwarding import Target
    node = Node()
    waiting = defer.Deferred()
    node.pipeline.add(Backup("slow", waiting))
    fwd = ringing(node)
    node.send(reply(fwd, 486), FOREIGN)
    node.out()
    node.send(invite(method="CANCEL"))
    assert [(m.status, m.cseq.method) for m in node.to(UAC, node.out())] == [(200, "CANCEL")]
    waiting.callback([Target(parse_uri("sip:bob@127.0.0.1:5071"))])
    sent = node.out()
    assert requests(node.to(UAS1, sent)) == []  # cancelled: no new fork
    assert finals(node, sent) == [486]  # the best response there is


class Backup(Stage):
    """A failure stage: its targets once, at once or by a Deferred."""

    points = ("failure",)
    needs_transactions = True

    def __init__(self, name, result):
        self.name = name
        self.result = result
        self.asked = 0

    def failure(self, context, responses):
        self.asked += 1
        result, self.result = self.result, None
        return result


def test_dialog_events_are_for_initial_invites_only(node):
    dialogs = node.pipeline.add(Dialogs())
    node.send(invite(method="MESSAGE"))
    fwd, = node.to(FOREIGN, node.out())
    node.send(reply(fwd, 200), FOREIGN)
    node.send(invite(method="OPTIONS", branch="z9hG4bKuac2"))
    sent = node.out()
    fwd, = requests(node.to(FOREIGN, sent))
    node.send(reply(fwd, 486), FOREIGN)
    assert finals(node, sent + node.out()) == [200, 486]
    assert dialogs.events == []


def test_calls_leave_no_state_behind(node):
    # What the proxy keeps per request (its response context, the calls
    # being set up: StatefulProxy.contexts and .setups) goes when the
    # server transaction ends.
    b1, b2 = forked(node)
    node.send(reply(b1, 486, "t1"), UAS1)
    node.send(reply(b2, 480, "t2"), UAS2)
    node.send(invite(method="ACK").replace(b"sip:bob@127.0.0.1:5070", b"sip:bob@example.test"))
    node.h.advance(40)
    assert node.proxy.contexts == {} and node.proxy.setups == set()


def test_a_route_set_wins_over_the_target_next_hop():
    # A destination's next hop (Kamailio's $du) is only for requests
    # without Route; a Route is followed (RFC 3261 16.6 step 6).
    from sipcluster.proxy.forwarding import Target

    class NextHop(Stage):
        name = "next-hop"
        points = ("targets",)

        def targets(self, context):
            return [Target(context.request.uri, next_hop=parse_uri("sip:127.0.0.1:5071"))]

    node = Node()
    node.pipeline.add(NextHop(), before="registrar")
    node.send(invite("sip:bob@192.0.2.1", extra="Route: <sip:127.0.0.1:5072;lr>\n"))
    assert [m.method for m in requests(node.to(UAS2, node.out()))] == ["INVITE"]
    node.send(invite("sip:bob@192.0.2.1", branch="z9hG4bKuac2"))
    fwd, = requests(node.to(UAS1, node.out()))
    assert str(fwd.uri) == "sip:bob@192.0.2.1"


@pytest.mark.parametrize("stateless", [False, True])
def test_an_alias_flow_is_used_with_branch_stages_too(stateless):
    from tests.test_pipeline import Tagger
    node = Node(stateless=stateless)
    node.pipeline.add(Tagger("edit"))
    node.send(invite("sip:alice@192.168.1.20:5060;alias=127.0.0.1~40123~udp"))
    fwd, = [m for m, a in node.out() if a == ("127.0.0.1", 40123)]
    assert fwd.header("x-stage") == "edit"


def test_a_stateless_alias_flow_is_used():
    node = Node(stateless=True)
    node.send(invite("sip:alice@192.168.1.20:5060;alias=127.0.0.1~40123~udp"))
    fwd, = [m for m, a in node.out() if a == ("127.0.0.1", 40123)]
    assert str(fwd.uri) == "sip:alice@192.168.1.20:5060"


def test_a_stateless_branch_stage_refusing_keeps_its_headers():
    from tests.test_pipeline import Tagger
    from sipcluster.proxy.pipeline import Respond
    node = Node(stateless=True)
    node.pipeline.add(Tagger("no", error=Respond(488, headers=[("Warning", '399 proxy "no media"')])))
    node.send(invite())
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert final.status == 488 and final.header("warning") == '399 proxy "no media"'


def test_a_v6_caller_moved_to_tcp_records_its_own_side():
    node = Node(settings=DUAL, resolver=Hops({"uas.example.net": [("tcp", "127.0.0.1", 5070)]}))
    node.h.receive(to_uas().replace(b"127.0.0.1:5080", b"[::1]:5080"), ("::1", 5080),
                   to=("::1", 5060))
    fwd, = tcp_sent(node, FOREIGN)
    assert [str(r.uri) for r in fwd.record_routes] == [
        "sip:127.0.0.1:5060;transport=tcp;lr", "sip:[::1]:5060;lr"]


def test_stateless_from_ipv6_records_the_ipv6_side():
    node = Node(stateless=True, settings=DUAL)
    node.h.receive(invite(branch="z9hG4bKv6").replace(b"127.0.0.1:5080", b"[::1]:5080"),
                   ("::1", 5080), to=("::1", 5060))
    fwd, = node.to(FOREIGN, node.out())
    assert [str(r.uri) for r in fwd.record_routes] == ["sip:127.0.0.1:5060;lr", "sip:[::1]:5060;lr"]


def test_an_empty_target_set_is_404():
    class Nobody(Stage):
        name = "nobody"
        points = ("targets",)

        def targets(self, context):
            return []

    for stateless in (False, True):
        node = Node(stateless=stateless)
        node.pipeline.add(Nobody(), before="registrar")
        node.send(invite())
        final, = [m for m, a in node.out() if m.status >= 200]
        assert (final.status, final.reason) == (404, "Not Found")


def test_an_invite_is_answered_100_before_a_slow_target_stage_decides():
    # RFC 3261 16.2: the 100 stops the caller's retransmissions while a
    # store or DNS is asked.
    class Slow(Stage):
        name = "slow"
        points = ("targets",)

        def __init__(self):
            self.waiting = defer.Deferred()

        def targets(self, context):
            return self.waiting

    node = Node()
    slow = node.pipeline.add(Slow(), before="registrar")
    node.send(invite())
    assert [m.status for m in node.to(UAC, node.out())] == [100]
    slow.waiting.callback(None)
    assert [m.method for m in requests(node.to(FOREIGN, node.out()))] == ["INVITE"]


# -- the cluster's routing decisions (sipcluster.routing.cluster) --------------------


class Members:
    """What ClusterRouting reads of membership: our id and record, every node's."""

    def __init__(self, nodes, node_id="here"):
        self.nodes = nodes
        self.node_id = node_id
        self.record = nodes.get(node_id, {})


def test_a_flow_held_by_another_live_node_is_reached_through_its_udp_address():
    from sipcluster.routing.cluster import ClusterRouting
    node = Node()
    node.pipeline.named("location").cluster = ClusterRouting(Members({
        "here": {"region": "eu", "addresses": ["udp:127.0.0.1:5060"]},
        "node-a": {"region": "eu", "addresses": ["tcp:127.0.0.1:5099", "udp:127.0.0.1:5071"]}}))
    aor = "sip:alice@example.test"
    node.location.update(aor, [
        Binding(aor, parse_uri("sip:alice@192.168.1.20:5060"), 3600,
                received=("udp", "127.0.0.1", 40123), node="node-a")])
    node.send(invite("sip:alice@example.test"))
    fwd, = node.to(UAS1, node.out())
    assert [str(r.uri) for r in fwd.routes] == ["sip:127.0.0.1:5071;lr"]


@pytest.mark.parametrize("holder", ["here", "gone", "no-udp", None])
def test_a_flow_of_ours_or_of_a_node_we_cannot_reach_is_sent_to_directly(holder):
    from sipcluster.routing.cluster import ClusterRouting
    node = Node()
    node.pipeline.named("location").cluster = ClusterRouting(Members({
        "here": {"region": "eu", "addresses": ["udp:127.0.0.1:5060"]},
        "no-udp": {"region": "eu", "addresses": ["tcp:127.0.0.1:5099"]}}))
    aor = "sip:alice@example.test"
    node.location.update(aor, [
        Binding(aor, parse_uri("sip:alice@192.168.1.20:5060"), 3600,
                received=("udp", "127.0.0.1", 40123), node=holder)])
    node.send(invite("sip:alice@example.test"))
    fwd, = [m for m, a in node.out() if a == ("127.0.0.1", 40123)]
    assert not fwd.has("route")


def test_a_draining_node_sends_callers_to_an_active_node_of_its_region_first():
    from sipcluster.routing.cluster import ClusterRouting
    members = Members({
        "here": {"region": "eu", "state": "draining", "addresses": ["udp:10.0.0.1:5060"]},
        "us-1": {"region": "us", "state": "active", "dialogs": 0, "addresses": ["udp:10.0.1.1:5060"]},
        "eu-2": {"region": "eu", "state": "active", "dialogs": 9,
                 "addresses": ["tcp:10.0.0.2:5080", "udp:10.0.0.2:5070"]},
        "eu-3": {"region": "eu", "state": "active", "dialogs": 3, "addresses": ["udp:[2001:db8::3]:5060"]},
        "eu-4": {"region": "eu", "state": "draining", "dialogs": 0, "addresses": ["udp:10.0.0.4:5060"]},
        "eu-5": {"region": "eu", "state": "active", "dialogs": 0, "addresses": ["tcp:10.0.0.5:5060"]}})
    routing = ClusterRouting(members)
    # Our region, then the fewest dialogs; only nodes with UDP.
    assert routing.active_node_uri("bob") == "sip:bob@[2001:db8::3]:5060"
    assert routing.active_node_uri() == "sip:[2001:db8::3]:5060"
    del members.nodes["eu-3"]
    assert routing.active_node_uri("bob") == "sip:bob@10.0.0.2:5070"
    members.nodes["eu-2"]["dialogs"] = None  # not reported yet: counts as 0
    members.nodes["eu-6"] = {"region": "eu", "state": "active", "dialogs": 1,
                             "addresses": ["udp:10.0.0.6:5060"]}
    assert routing.active_node_uri("bob") == "sip:bob@10.0.0.2:5070"
    del members.nodes["eu-2"], members.nodes["eu-6"]
    assert routing.active_node_uri("bob") == "sip:bob@10.0.1.1:5060"  # another region at last
    # Equal in everything: the node id decides, so every node agrees.
    members.nodes["us-0"] = {"region": "us", "state": "active", "dialogs": 0,
                             "addresses": ["udp:10.0.1.0:5060"]}
    assert routing.active_node_uri("bob") == "sip:bob@10.0.1.0:5060"
    for node_id in ("us-0", "us-1"):
        del members.nodes[node_id]
    assert routing.active_node_uri("bob") is None


def test_region_rank_prefers_contacts_registered_through_our_region():
    from sipcluster.routing.cluster import ClusterRouting
    routing = ClusterRouting(Members({"here": {"region": "eu"}, "far": {"region": "us"},
                                      "near": {"region": "eu"}}))
    ranks = [routing.region_rank(Binding("sip:a@x", parse_uri("sip:a@192.0.2.1"), 60, node=n))
             for n in ("near", "far", "here", "unknown", None)]
    assert ranks == [0, 1, 0, 0, 0]


@pytest.mark.parametrize("stateless", [False, True])
def test_a_response_whose_top_via_of_ours_lost_its_port_is_still_ours(stateless):
    # RFC 3261 18.2.2 / 20.42: a sent-by without port means 5060, which
    # is this node's.
    node = Node(stateless=stateless)
    node.send(invite())
    fwd, = requests(node.to(FOREIGN, node.out()))
    answer = reply(fwd, 486)
    answer.set_top_via(answer.top_via.__class__.parse(str(answer.top_via).replace(":5060;", ";", 1)))
    assert answer.top_via.port is None
    node.send(answer, FOREIGN)
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert final.status == 486 and [v.branch for v in final.vias] == ["z9hG4bKuac1"]


def test_numeric_hosts_are_classified_once_and_bounded(monkeypatch):
    from sipcluster.proxy import forwarding
    monkeypatch.setattr(forwarding, "_NUMERIC", {})
    monkeypatch.setattr(forwarding, "_NUMERIC_SIZE", 3)
    cases = [("192.0.2.1", True), ("2001:db8::1", True), ("proxy.example.com", False),
             ("256.1.1.1", False), ("1.2.3", False), ("fe80::1::2", False), ("10.0.0.255", True),
             ("mx.a.b.c", False), ("0001.2.3.4", False), ("1.2.3.04", True)]
    for _ in range(2):
        for host, numeric in cases:
            assert forwarding.is_numeric(host) is numeric, host
            assert len(forwarding._NUMERIC) <= 3


@pytest.mark.parametrize("method", ["INVITE", "ACK"])
def test_a_stateless_forward_that_cannot_be_sent_is_logged_not_answered(method):
    # RFC 3261 16.11: no state, so no next address and no answer of our own
    # for a transport error: the node says so in its log, once.
    node = Node(stateless=True)
    failing_writes(node, UAS1)
    request = invite("sip:bob@127.0.0.1:5071", method)
    if method == "ACK":
        request = request.replace(b"To: Bob <sip:bob@example.test>",
                                  b"To: Bob <sip:bob@example.test>;tag=b1")
    assert stateless_forward_failures(node, request) == ["UDP send to udp:127.0.0.1:5071 failed"]
    assert node.out() == []


def test_a_host_is_classified_once(monkeypatch):
    from sipcluster.proxy import forwarding
    monkeypatch.setattr(forwarding, "_NUMERIC", {})
    asked = []
    real = forwarding._is_numeric
    monkeypatch.setattr(forwarding, "_is_numeric", lambda host: asked.append(host) or real(host))
    for _ in range(3):
        assert forwarding.is_numeric("192.0.2.7") is True
        assert forwarding.is_numeric("gw.example.com") is False
    assert asked == ["192.0.2.7", "gw.example.com"]


def test_branch_hashes_are_short_stable_hex():
    """The branch a stateless proxy makes: magic cookie, 12 hex digits of the
    loop hash, a dot, 16 of the transaction's (RFC 3261 16.6 step 8, 16.11)."""
    import re
    from sipcluster.proxy.forwarding import loop_hash, short_hash, stateless_branch_suffix
    assert short_hash("x", 6) == short_hash("x", 6) and re.fullmatch("[0-9a-f]{12}", short_hash("x", 6))
    assert short_hash("x", 6) != short_hash("y", 6) and len(short_hash("x", 8)) == 16
    # BLAKE2s of the text's UTF-8 at that digest size, whatever was hashed
    # before (every node and worker must make the same branch), from an
    # empty table of empty hashes too.
    from hashlib import blake2s
    from sipcluster.proxy import forwarding
    saved, forwarding._EMPTY_HASHES = forwarding._EMPTY_HASHES, {}
    try:
        for text, size in [("x", 6), ("caf\u00e9\x00y", 8), ("x", 8), ("", 6), ("x" * 200, 6)]:
            assert short_hash(text, size) == blake2s(text.encode(), digest_size=size).hexdigest()
        assert sorted(forwarding._EMPTY_HASHES) == [6, 8]
        kept = forwarding._EMPTY_HASHES[6]
        short_hash("z", 6)
        assert forwarding._EMPTY_HASHES[6] is kept and kept.hexdigest() == blake2s(
            digest_size=6).hexdigest()
    finally:
        forwarding._EMPTY_HASHES = saved
    request = parse_message(crlf("""\
INVITE sip:bob@example.test SIP/2.0
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc
From: <sip:alice@example.test>;tag=1
To: <sip:bob@example.test>
Call-ID: c1
CSeq: 1 INVITE
Max-Forwards: 70
Content-Length: 0

"""))
    assert re.fullmatch("[0-9a-f]{12}", loop_hash(request))
    assert re.fullmatch("[0-9a-f]{16}", stateless_branch_suffix(request, "sip:bob@192.0.2.9"))


# -- what a call leaves behind ------------------------------------------------


def _collector_garbage(run):
    """
    The objects of ours that only the cyclic collector would free after
    C{run()}: reference cycles.  A proxy's transactions, contexts and
    messages should go when the last timer of the call ends, by reference
    counting, not minutes later at a pass of the collector over every live
    object.
    """
    import gc
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        run()
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        ours = [o for o in gc.garbage if type(o).__module__.startswith("sipcluster")]
    finally:
        gc.set_debug(0)
        del gc.garbage[:]
        if enabled:
            gc.enable()
    return sorted({type(o).__name__ for o in ours})


def test_a_call_leaves_no_reference_cycle():
    node = Node()

    def call():
        node.send(invite())
        fwd = node.to(FOREIGN, node.out())[0]
        node.send(reply(fwd, 180), FOREIGN)
        ok = reply(fwd, 200, extra=[("Record-Route", v) for v in fwd.values("record-route")])
        node.send(ok, FOREIGN)
        route = node.to(UAC, node.out())[-1].header("record-route")
        node.send(in_dialog("sip:bob@127.0.0.1:5070", "ACK", route).replace(
            b"z9hG4bKuac1", b"z9hG4bKack1"))
        node.send(in_dialog("sip:bob@127.0.0.1:5070", "BYE", route).replace(
            b"CSeq: 1 BYE", b"CSeq: 2 BYE").replace(b"z9hG4bKuac1", b"z9hG4bKbye1"))
        bye = node.to(FOREIGN, node.out())[-1]
        assert bye.method == "BYE"
        node.send(reply(bye, 200), FOREIGN)
        assert [m.status for m in node.to(UAC, node.out())] == [200]
        node.h.advance(40, step=1)   # past Timers K, L, M and J
        assert node.tl.servers == {} and node.tl.clients == {}
        assert node.proxy.contexts == {}

    assert _collector_garbage(call) == []


def test_a_call_waiting_on_its_timers_holds_no_request():
    # Through the 5 to 32 s its transactions wait after the final
    # responses, a call keeps only what those states use: the INVITE's
    # response context (for the 2xx of other forks), the responses to
    # re-send.  The BYE's context goes at its final, a rejected INVITE's
    # too, and no transaction holds its request.
    node = Node()
    node.send(invite())
    fwd = node.to(FOREIGN, node.out())[0]
    ok = reply(fwd, 200, extra=[("Record-Route", v) for v in fwd.values("record-route")])
    node.send(ok, FOREIGN)
    route = node.to(UAC, node.out())[-1].header("record-route")
    node.send(in_dialog("sip:bob@127.0.0.1:5070", "BYE", route).replace(
        b"CSeq: 1 BYE", b"CSeq: 2 BYE").replace(b"z9hG4bKuac1", b"z9hG4bKbye1"))
    bye = node.to(FOREIGN, node.out())[-1]
    node.send(reply(bye, 200), FOREIGN)
    assert [m.status for m in node.to(UAC, node.out())] == [200]
    invite_key, = [key for key in node.tl.servers if key[2] == "INVITE"]
    assert list(node.proxy.contexts) == [invite_key]
    txs = list(node.tl.servers.values()) + list(node.tl.clients.values())
    assert len(txs) == 4 and [tx.request for tx in txs] == [None] * 4
    assert [tx.owner for tx in node.tl.clients.values() if tx.key[1] == "BYE"] == [None]
    # A retransmitted BYE still gets the 200 again, from the transaction.
    node.send(in_dialog("sip:bob@127.0.0.1:5070", "BYE", route).replace(
        b"CSeq: 1 BYE", b"CSeq: 2 BYE").replace(b"z9hG4bKuac1", b"z9hG4bKbye1"))
    assert [m.status for m in node.to(UAC, node.out())] == [200]
    # A rejected call: its context goes with the final response, and a
    # retransmitted 486 is ACKed again by its transaction alone.
    node.send(invite(branch="z9hG4bKuac2").replace(b"call-1@", b"call-2@"))
    fwd = node.to(FOREIGN, node.out())[0]
    node.send(reply(fwd, 486), FOREIGN)
    assert [m.status for m in node.to(UAC, node.out())] == [486]
    assert list(node.proxy.contexts) == [invite_key]
    node.send(reply(fwd, 486), FOREIGN)
    assert [m.method for m in node.to(FOREIGN, node.out())] == ["ACK"]


def test_a_rejected_call_and_an_unanswered_branch_leave_no_reference_cycle():
    node = Node()

    def calls():
        node.send(invite())
        fwd = node.to(FOREIGN, node.out())[0]
        node.send(reply(fwd, 486), FOREIGN)   # Timer D, an ACK of our own
        assert [m.status for m in node.to(UAC, node.out())] == [486]
        node.send(invite(branch="z9hG4bKuac2").replace(b"call-1@", b"call-2@"))
        node.h.advance(40, step=1)            # Timer B: no answer at all
        assert 408 in [m.status for m in node.to(UAC, node.out())]
        node.h.advance(40, step=1)
        assert node.tl.servers == {} and node.tl.clients == {}
        assert node.proxy.contexts == {}

    assert _collector_garbage(calls) == []
