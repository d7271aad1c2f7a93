"""Clock-driven tests of client and server transactions (RFC 3261 17, RFC 6026)."""

import pytest
from twisted.internet import defer

from sipcluster.sip.message import Request, make_response, parse_message
from sipcluster.transaction.layer import TransactionLayer
from sipcluster.transaction.timers import TimerValues
from sipcluster.transport.base import Peer
from tests.harness import Harness, RecordingOwner, RecordingTU
from tests.sipdata import crlf

UAS = ("127.0.0.1", 5070)
UAC = ("127.0.0.1", 5080)


def request(method="INVITE", branch="z9hG4bKuac1", cseq=1, via_host="127.0.0.1:5080"):
    return parse_message(crlf("""\
{m} sip:bob@127.0.0.1:5070 SIP/2.0
Via: SIP/2.0/UDP {via};branch={b}
Max-Forwards: 70
From: <sip:alice@a.example>;tag=a1
To: <sip:bob@b.example>
Call-ID: call-1@a.example
CSeq: {c} {m}
Content-Length: 0

""".format(m=method, b=branch, c=cseq, via=via_host)))


def outgoing(method="INVITE", branch="z9hG4bKproxy1"):
    req = Request(method, "sip:bob@127.0.0.1:5070")
    req.add("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=%s;rport" % branch)
    req.add("Max-Forwards", 70)
    req.add("From", "<sip:alice@a.example>;tag=a1")
    req.add("To", "<sip:bob@b.example>")
    req.add("Call-ID", "call-2@a.example")
    req.add("CSeq", "7 %s" % method)
    return req


def answer(req, status, to_tag="b1"):
    return make_response(req, status, to_tag=to_tag if status > 100 else None)


@pytest.fixture
def h():
    harness = Harness()
    harness.tu = RecordingTU()
    harness.tl = TransactionLayer(harness.layer, harness.clock, TimerValues(), harness.tu)
    return harness


def send_times(h, seconds, peer=UAS, step=0.25):
    """The clock times at which something was sent to C{peer}."""
    times = []
    t = 0.0
    while t < seconds:
        h.clock.advance(step)
        t += step
        for message, addr in h.sent():
            if addr == peer:
                times.append((round(t, 2), message))
    return times


# -- client non-INVITE --------------------------------------------------------


def test_non_invite_client_timer_e_and_f(h):
    owner = RecordingOwner()
    h.tl.start_client(outgoing("OPTIONS"), Peer("udp", *UAS), owner)
    assert len(h.sent_to(UAS)) == 1
    times = [t for t, _ in send_times(h, 40)]
    # Timer E: T1 doubling up to T2, so 0.5, 1.5, 3.5, 7.5, 11.5, 15.5...
    assert times[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    assert all(t <= 32 for t in times)
    assert owner.timeouts == 1  # Timer F at 64*T1
    assert h.tl.clients == {}


def test_non_invite_client_proceeding_then_final_then_timer_k(h):
    owner = RecordingOwner()
    req = outgoing("OPTIONS")
    h.tl.start_client(req, Peer("udp", *UAS), owner)
    h.sent()
    h.receive(answer(req, 180), UAS)
    times = [t for t, _ in send_times(h, 9)]
    # The pending Timer E still fires, then repeats every T2 (17.1.2.2).
    assert times == [0.5, 4.5, 8.5]
    h.receive(answer(req, 200), UAS)
    h.receive(answer(req, 200), UAS)  # retransmission: absorbed
    assert owner.responses == [180, 200]
    assert send_times(h, 4.5) == []
    assert len(h.tl.clients) == 1
    h.advance(0.6)  # Timer K = T4
    assert h.tl.clients == {}


def test_reliable_client_does_not_retransmit(h):
    owner = RecordingOwner()
    sent = []
    h.layer.send_data = lambda data, peer: sent.append(peer) or defer.succeed(True)
    h.tl.start_client(outgoing("OPTIONS"), Peer("tcp", *UAS), owner)
    h.advance(31)
    assert len(sent) == 1
    h.advance(2)
    assert owner.timeouts == 1


# -- client INVITE --------------------------------------------------------------


def test_invite_client_timer_a_and_b(h):
    owner = RecordingOwner()
    h.tl.start_client(outgoing(), Peer("udp", *UAS), owner)
    h.sent()
    times = [t for t, _ in send_times(h, 33)]
    assert times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # Timer A doubles without cap
    assert owner.timeouts == 1  # Timer B = 64*T1 = 32 s
    assert h.tl.clients == {}


def test_invite_client_provisional_stops_retransmissions(h):
    owner = RecordingOwner()
    req = outgoing()
    h.tl.start_client(req, Peer("udp", *UAS), owner)
    h.sent()
    h.receive(answer(req, 100), UAS)
    h.receive(answer(req, 180), UAS)
    assert send_times(h, 60) == []
    assert owner.responses == [100, 180]
    assert owner.timeouts == 0  # Timer B no longer runs: Timer C is the proxy's


def test_invite_client_non_2xx_is_acked_hop_by_hop(h):
    owner = RecordingOwner()
    req = outgoing()
    h.tl.start_client(req, Peer("udp", *UAS), owner)
    h.sent()
    busy = answer(req, 486, "t9")
    h.receive(busy, UAS)
    acks = h.sent_to(UAS)
    assert len(acks) == 1
    ack = acks[0]
    assert ack.method == "ACK"
    assert ack.top_via.branch == "z9hG4bKproxy1"  # same branch as the INVITE
    assert ack.to_tag == "t9"
    assert ack.cseq.number == 7 and ack.cseq.method == "ACK"
    assert str(ack.uri) == str(req.uri)
    h.receive(busy, UAS)  # retransmitted 486: ACK again, not passed up again
    assert [m.method for m in h.sent_to(UAS)] == ["ACK"]
    assert owner.responses == [486]
    h.advance(31.9)
    assert len(h.tl.clients) == 1
    h.advance(0.2)  # Timer D: 32 s
    assert h.tl.clients == {}


def test_invite_client_accepted_state_passes_2xx_retransmissions(h):
    owner = RecordingOwner()
    req = outgoing()
    h.tl.start_client(req, Peer("udp", *UAS), owner)
    h.receive(answer(req, 200), UAS)
    h.receive(answer(req, 200), UAS)
    h.receive(answer(req, 200, to_tag="fork2"), UAS)
    assert owner.responses == [200, 200, 200]
    assert [m.method for m in h.sent_to(UAS)] == ["INVITE"]  # no ACK for 2xx
    h.advance(32.1)  # Timer M
    assert h.tl.clients == {}


def test_invite_client_cancel_waits_for_provisional(h):
    owner = RecordingOwner()
    req = outgoing()
    tx = h.tl.start_client(req, Peer("udp", *UAS), owner)
    h.sent()
    tx.cancel()
    assert h.sent_to(UAS) == []  # RFC 3261 9.1: not before a provisional
    h.receive(answer(req, 180), UAS)
    cancels = h.sent_to(UAS)
    assert [m.method for m in cancels] == ["CANCEL"]
    assert cancels[0].top_via.branch == req.top_via.branch
    assert cancels[0].cseq.number == 7


# -- server INVITE --------------------------------------------------------------


def test_server_invite_retransmission_and_timer_g_h(h):
    h.receive(request())
    assert len(h.tu.requests) == 1
    tx = h.tu.requests[0]
    tx.respond(answer(tx.request, 180))
    h.sent()
    h.receive(request())  # retransmission: last provisional again, TU not told
    assert [m.status for m in h.sent_to(UAC)] == [180]
    assert len(h.tu.requests) == 1
    tx.respond(answer(tx.request, 486))
    assert [m.status for m in h.sent_to(UAC)] == [486]
    times = [t for t, m in send_times(h, 33, UAC)]
    assert times[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]  # Timer G capped at T2
    assert tx.state == "terminated"  # Timer H: no ACK
    assert h.tl.servers == {}
    assert h.tl.stats["retransmissions"] == 1


def test_server_invite_ack_confirms_then_timer_i(h):
    h.receive(request())
    tx = h.tu.requests[0]
    tx.respond(answer(tx.request, 404))
    ack = request("ACK", cseq=1)
    h.receive(ack)
    assert tx.state == "confirmed"
    assert h.tu.acks == []  # absorbed hop by hop
    h.sent()
    assert send_times(h, 4.75, UAC) == []  # no more retransmissions
    h.advance(0.3)
    assert tx.state == "terminated"


def test_server_invite_2xx_accepted_state(h):
    h.receive(request())
    tx = h.tu.requests[0]
    tx.respond(answer(tx.request, 200))
    assert tx.state == "accepted"
    tx.respond(answer(tx.request, 200))  # 2xx retransmission from the TU
    assert [m.status for m in h.sent_to(UAC)] == [200, 200]
    h.receive(request("ACK", branch="z9hG4bKnewack"))  # ACK for 2xx: new branch
    assert len(h.tu.acks) == 1
    h.advance(32.1)  # Timer L
    assert tx.state == "terminated"


def test_server_non_invite(h):
    h.receive(request("OPTIONS"))
    tx = h.tu.requests[0]
    h.receive(request("OPTIONS"))
    assert h.sent() == []  # Trying: retransmissions are absorbed silently
    tx.respond(answer(tx.request, 200))
    h.receive(request("OPTIONS"))
    assert [m.status for m in h.sent_to(UAC)] == [200, 200]
    h.advance(31.9)
    assert tx.state == "completed"
    h.advance(0.2)  # Timer J
    assert tx.state == "terminated"


def test_cancel_is_matched_to_its_invite(h):
    h.receive(request())
    invite_tx = h.tu.requests[0]
    h.receive(request("CANCEL"))
    cancel_tx, matched = h.tu.cancels[0]
    assert matched is invite_tx
    assert cancel_tx.request.method == "CANCEL"
    h.receive(request("CANCEL", branch="z9hG4bKother"))
    assert h.tu.cancels[1][1] is None


def test_rfc2543_matching_without_magic_cookie(h):
    h.receive(request(branch="oldstyle1"))
    h.receive(request(branch="oldstyle1"))
    assert len(h.tu.requests) == 1
    h.receive(request(branch="oldstyle1", cseq=2))
    assert len(h.tu.requests) == 2


def test_same_branch_from_another_sent_by_is_another_transaction(h):
    h.receive(request(branch="z9hG4bKsame"))
    h.receive(request(branch="z9hG4bKsame", via_host="127.0.0.9:5080"))
    assert len(h.tu.requests) == 2


def test_stray_response_goes_to_tu(h):
    resp = make_response(outgoing(branch="z9hG4bKnobody"), 200, to_tag="x")
    h.receive(resp, UAS)
    assert [r.status for r in h.tu.strays] == [200]


def test_timer_values_from_config():
    from sipcluster.config import load
    timers = TimerValues.from_config(load(None, {"timers.t1_ms": 100}).timers)
    assert timers.t1 == 0.1
    assert timers.timeout == pytest.approx(6.4)
    assert timers.timer_d == 32.0
