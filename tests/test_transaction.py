"""Clock-driven tests of client and server transactions (RFC 3261 17, RFC 6026)."""

import pytest
from twisted.internet import defer

from sipcluster.sip.message import Request, make_response, parse_message
from sipcluster.transaction.base import Transaction
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
    tx = h.tl.clients[next(iter(h.tl.clients))]
    assert tx._data is not None
    h.receive(answer(req, 200), UAS)
    assert tx._data is None  # retransmissions ended: the bytes let go
    # Completed (Timer K) absorbs what comes: it holds neither the request
    # nor its owner any longer.
    assert tx.request is None and tx.owner is None
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
    tx = h.tl.start_client(req, Peer("udp", *UAS), owner)
    h.sent()
    busy = answer(req, 486, "t9")
    h.receive(busy, UAS)
    assert tx._data is None  # the INVITE is not sent again
    # Completed (Timer D) only ACKs retransmissions, from the ACK's bytes.
    assert tx.request is None and tx.owner is None
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
    tx = h.tl.start_client(req, Peer("udp", *UAS), owner)
    h.receive(answer(req, 200), UAS)
    assert tx._data is None  # no retransmission in Accepted
    assert tx.request is None and tx.owner is owner  # 2xx still go up
    h.receive(answer(req, 200), UAS)
    h.receive(answer(req, 200, to_tag="fork2"), UAS)
    assert owner.responses == [200, 200, 200]
    assert [m.method for m in h.sent_to(UAS)] == ["INVITE"]  # no ACK for 2xx
    h.advance(31.9)
    assert len(h.tl.clients) == 1  # Timer M has not fired yet
    h.advance(0.2)  # Timer M
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
    assert tx.state == "confirmed"  # Timer I has not fired yet
    h.advance(0.3)
    assert tx.state == "terminated"


def test_server_invite_2xx_accepted_state(h):
    h.receive(request())
    tx = h.tu.requests[0]
    incoming = tx.request  # (let go of at the final response)
    tx.respond(answer(incoming, 200))
    assert tx.state == "accepted"
    # Accepted re-sends nothing of its own: it keeps neither the request
    # nor the response through its 32 s.
    assert tx.request is None and tx.last_response is None
    tx.respond(answer(incoming, 200))  # 2xx retransmission from the TU
    assert [m.status for m in h.sent_to(UAC)] == [200, 200]
    h.receive(request("ACK", branch="z9hG4bKnewack"))  # ACK for 2xx: new branch
    assert len(h.tu.acks) == 1
    h.advance(31.9)
    assert tx.state == "accepted"  # Timer L has not fired yet
    h.advance(0.2)  # Timer L
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


def test_key_text_tells_every_part_of_a_server_key():
    """The text a proxy hashes into its branches: one per key, telling keys
    apart by branch, sent-by and method, and RFC 2543 keys by all seven parts."""
    from sipcluster.transaction.layer import key_text, server_key
    texts = [key_text(server_key(r)) for r in (
        request(), request("BYE"), request(branch="z9hG4bKuac2"),
        request(via_host="127.0.0.9:5080"), request(via_host="127.0.0.1:5081"),
        request(branch="oldstyle1"), request(branch="oldstyle1", cseq=2))]
    assert texts[0] == "z9hG4bKuac1\x00127.0.0.1\x005080\x00INVITE"
    assert len(set(texts)) == len(texts)
    assert key_text(server_key(request("ACK"))) == texts[0]  # its INVITE's
    assert texts[5].startswith("2543\x00sip:bob@127.0.0.1:5070\x00a1\x00call-1@a.example\x001\x00")
    assert texts[5].endswith("\x00INVITE") and key_text(server_key(request(branch="oldstyle1"))) == texts[5]


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


# -- every timer fires at its length: nothing before, something right after --
#
# Each test below advances the clock to just before a timer's length and checks
# that nothing happened yet, then to the length itself and checks that it did.
# What happened is read on the wire or at the transaction user: a
# retransmission sent, a response absorbed or handed on as a stray, a request
# absorbed or handed up as new.  Several T1 and T4 values are used so that a
# timer using the wrong base (T4 for 64*T1, 32 s for 64*T1...) shows.

EARLY = 0.001


class Owner:
    """A client transaction owner recording (event, transaction[, status])."""

    def __init__(self):
        self.events = []

    def response_received(self, tx, response):
        self.events.append(("response", tx, response.status))

    def timed_out(self, tx):
        self.events.append(("timeout", tx))

    def transport_failed(self, tx):
        self.events.append(("failed", tx))


class SourceTU(RecordingTU):
    """A RecordingTU that also records where ACKs and strays came from."""

    def __init__(self):
        RecordingTU.__init__(self)
        self.sources = []

    def ack_received(self, ack, source):
        RecordingTU.ack_received(self, ack, source)
        self.sources.append(("ack", source.peer))

    def stray_response(self, response, source):
        RecordingTU.stray_response(self, response, source)
        self.sources.append(("stray", source.peer if source is not None else None))


def make_harness(**timers):
    harness = Harness()
    harness.tu = SourceTU()
    harness.tl = TransactionLayer(harness.layer, harness.clock, TimerValues(**timers), harness.tu)
    return harness


def at(h, t):
    """Advance the clock to C{t} seconds after the test began."""
    h.clock.advance(t - h.clock.seconds())


def pending(h):
    """
    How far ahead, in seconds, each timer still scheduled is: the
    transactions' own (on the layer's timer heap) and any other on the clock
    (but the heap's one DelayedCall, for its earliest deadline).
    """
    now = h.clock.seconds()
    heap = h.tl.timer_heap
    others = [call.getTime() for call in h.clock.getDelayedCalls() if call is not heap._call]
    return sorted(round(t - now, 3) for t in heap.scheduled() + others)


def statuses(h, addr=UAC):
    return [m.status for m in h.sent_to(addr)]


def methods(h, addr=UAS):
    return [m.method for m in h.sent_to(addr)]


def test_timer_a_bounds():
    h = make_harness()
    h.tl.start_client(outgoing(), Peer("udp", *UAS), Owner())
    assert methods(h) == ["INVITE"]
    for t in (0.5, 1.5, 3.5, 7.5, 15.5, 31.5):  # T1, then doubling
        at(h, t - EARLY)
        assert methods(h) == []
        at(h, t)
        assert methods(h) == ["INVITE"]


@pytest.mark.parametrize("t1", [0.5, 0.1])
def test_timer_b_bounds(t1):
    h = make_harness(t1=t1)
    owner = Owner()
    tx = h.tl.start_client(outgoing(), Peer("udp", *UAS), owner)
    at(h, 64 * t1 - EARLY)
    assert owner.events == []
    at(h, 64 * t1)
    assert owner.events == [("timeout", tx)]
    assert pending(h) == []  # Timer A went with the transaction


@pytest.mark.parametrize("t1, timer_d", [(0.5, 32.0), (0.1, 32.0), (1.0, 64.0)])
def test_timer_d_bounds(t1, timer_d):
    h = make_harness(t1=t1)
    owner = Owner()
    req = outgoing()
    tx = h.tl.start_client(req, Peer("udp", *UAS), owner)
    h.sent()
    busy = answer(req, 486, "t9")
    h.receive(busy, UAS)
    assert methods(h) == ["ACK"]
    assert pending(h) == [timer_d]  # Timers A and B stopped: D alone runs
    at(h, timer_d - EARLY)
    h.receive(busy, UAS)  # a retransmission is ACKed again
    assert methods(h) == ["ACK"]
    at(h, timer_d)
    h.receive(busy, UAS)  # the transaction is gone: a stray for the TU
    assert methods(h) == []
    assert [r.status for r in h.tu.strays] == [486]
    assert owner.events == [("response", tx, 486)]


@pytest.mark.parametrize("t1", [0.5, 0.1])
def test_timer_m_bounds(t1):
    h = make_harness(t1=t1)
    owner = Owner()
    req = outgoing()
    tx = h.tl.start_client(req, Peer("udp", *UAS), owner)
    ok = answer(req, 200)
    h.receive(ok, UAS)
    assert pending(h) == [64 * t1]  # Timers A and B stopped: M alone runs
    at(h, 64 * t1 - EARLY)
    h.receive(ok, UAS)  # RFC 6026 7.2: still in Accepted, passed on
    at(h, 64 * t1)
    h.receive(ok, UAS)
    assert owner.events == [("response", tx, 200), ("response", tx, 200)]
    assert [r.status for r in h.tu.strays] == [200]


def test_timer_e_bounds():
    h = make_harness()
    h.tl.start_client(outgoing("OPTIONS"), Peer("udp", *UAS), Owner())
    assert methods(h) == ["OPTIONS"]
    # T1 doubling up to T2 (4 s), then every T2.
    for t in (0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5):
        at(h, t - EARLY)
        assert methods(h) == []
        at(h, t)
        assert methods(h) == ["OPTIONS"]


@pytest.mark.parametrize("t1", [0.5, 0.1])
def test_timer_f_bounds(t1):
    h = make_harness(t1=t1)
    owner = Owner()
    tx = h.tl.start_client(outgoing("OPTIONS"), Peer("udp", *UAS), owner)
    at(h, 64 * t1 - EARLY)
    assert owner.events == []
    at(h, 64 * t1)
    assert owner.events == [("timeout", tx)]
    assert pending(h) == []


def test_timer_f_also_ends_a_proceeding_non_invite():
    h = make_harness()
    owner = Owner()
    req = outgoing("OPTIONS")
    tx = h.tl.start_client(req, Peer("udp", *UAS), owner)
    h.receive(answer(req, 100), UAS)
    at(h, 32 - EARLY)
    assert owner.events == [("response", tx, 100)]
    at(h, 32)
    assert owner.events == [("response", tx, 100), ("timeout", tx)]


@pytest.mark.parametrize("t4", [5.0, 2.0])
def test_timer_k_bounds(t4):
    h = make_harness(t4=t4)
    owner = Owner()
    req = outgoing("OPTIONS")
    tx = h.tl.start_client(req, Peer("udp", *UAS), owner)
    ok = answer(req, 200)
    h.receive(ok, UAS)
    assert tx.state == "completed"
    assert pending(h) == [t4]  # Timers E and F stopped: K alone runs
    at(h, t4 - EARLY)
    h.receive(ok, UAS)  # absorbed by the completed transaction
    assert h.tu.strays == []
    at(h, t4)
    h.receive(ok, UAS)
    assert [r.status for r in h.tu.strays] == [200]
    assert owner.events == [("response", tx, 200)]


def test_timer_g_bounds():
    h = make_harness()
    h.receive(request())
    tx = h.tu.requests[0]
    tx.respond(answer(tx.request, 486))
    assert statuses(h) == [486]
    # T1 doubling up to T2 (4 s), then every T2, until Timer H.
    for t in (0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5):
        at(h, t - EARLY)
        assert statuses(h) == []
        at(h, t)
        assert statuses(h) == [486]


@pytest.mark.parametrize("t1", [0.5, 0.1])
def test_timer_h_bounds(t1):
    h = make_harness(t1=t1)
    h.receive(request())
    tx = h.tu.requests[0]
    tx.respond(answer(tx.request, 486))
    at(h, 64 * t1 - EARLY)
    h.sent()
    h.receive(request())  # a retransmission still gets the 486
    assert statuses(h) == [486]
    assert h.tl.stats["ack_timeouts"] == 0
    at(h, 64 * t1)
    assert h.tl.stats["ack_timeouts"] == 1
    assert pending(h) == []  # Timer G went with the transaction
    h.sent()
    h.receive(request())  # no transaction any more: a new request
    assert len(h.tu.requests) == 2
    assert statuses(h) == []


@pytest.mark.parametrize("t4", [5.0, 2.0])
def test_timer_i_bounds(t4):
    h = make_harness(t4=t4)
    h.receive(request())
    tx = h.tu.requests[0]
    tx.respond(answer(tx.request, 404))
    ack = request("ACK")
    h.receive(ack)
    assert pending(h) == [t4]  # Timers G and H stopped: I alone runs
    at(h, t4 - EARLY)
    h.receive(ack)  # Confirmed absorbs ACK retransmissions
    assert h.tu.acks == []
    at(h, t4)
    h.receive(ack)  # no transaction any more: the TU gets it
    assert len(h.tu.acks) == 1
    assert statuses(h) == [404]


@pytest.mark.parametrize("t1", [0.5, 0.1])
def test_timer_j_bounds(t1):
    h = make_harness(t1=t1)
    h.receive(request("OPTIONS"))
    tx = h.tu.requests[0]
    tx.respond(answer(tx.request, 200))
    assert pending(h) == [64 * t1]
    at(h, 64 * t1 - EARLY)
    h.receive(request("OPTIONS"))  # Completed: the 200 again
    assert statuses(h) == [200, 200]
    at(h, 64 * t1)
    h.receive(request("OPTIONS"))  # no transaction any more: a new request
    assert statuses(h) == []
    assert len(h.tu.requests) == 2
    assert h.tl.servers.get(h.tu.requests[1].key) is h.tu.requests[1]


@pytest.mark.parametrize("t1", [0.5, 0.1])
def test_timer_l_bounds(t1):
    h = make_harness(t1=t1)
    h.receive(request())
    tx = h.tu.requests[0]
    tx.respond(answer(tx.request, 200))
    assert statuses(h) == [200]
    assert pending(h) == [64 * t1]
    at(h, 64 * t1 - EARLY)
    h.receive(request())  # RFC 6026 7.1: Accepted absorbs it silently
    assert statuses(h) == []
    assert len(h.tu.requests) == 1
    at(h, 64 * t1)
    h.receive(request())  # no transaction any more: a new request
    assert len(h.tu.requests) == 2


# -- timers stopped when their state ends -----------------------------------


@pytest.mark.parametrize("when", [0.1, 0.7])
def test_provisional_stops_timers_a_and_b(when):
    # Before and after the first retransmission (Timer A restarted).
    h = make_harness()
    req = outgoing()
    h.tl.start_client(req, Peer("udp", *UAS), Owner())
    at(h, when)
    h.receive(answer(req, 180), UAS)
    assert pending(h) == []  # the proxy's Timer C takes over


@pytest.mark.parametrize("when", [0.1, 0.7])
def test_final_stops_timers_e_and_f(when):
    h = make_harness()
    req = outgoing("OPTIONS")
    h.tl.start_client(req, Peer("udp", *UAS), Owner())
    at(h, when)
    h.receive(answer(req, 200), UAS)
    assert pending(h) == [5.0]  # Timer K


@pytest.mark.parametrize("when", [0.1, 0.7])
def test_ack_stops_timers_g_and_h(when):
    h = make_harness()
    h.receive(request())
    tx = h.tu.requests[0]
    tx.respond(answer(tx.request, 486))
    at(h, when)
    h.receive(request("ACK"))
    assert pending(h) == [5.0]  # Timer I


def test_2xx_and_non_2xx_stop_timers_a_and_b():
    for status, left in ((200, [32.0]), (486, [32.0])):
        h = make_harness(t1=0.25)  # B = M = 16 s, D = 32 s
        req = outgoing()
        h.tl.start_client(req, Peer("udp", *UAS), Owner())
        at(h, 0.3)
        h.receive(answer(req, status), UAS)
        assert pending(h) == ([16.0] if status == 200 else left)


# -- reliable transports -------------------------------------------------------


class FakeConnection:
    """The local end of a TCP connection a request came on."""

    def __init__(self):
        self.written = []

    def send(self, data):
        self.written.append(parse_message(data))
        return True


def tcp_source(conn):
    from sipcluster.transport.base import Source
    return Source("tcp", UAC[0], UAC[1], conn)


def tcp_request(method="INVITE"):
    return request(method).to_bytes().replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")


def tcp_client(h):
    sent = []
    h.layer.send_data = lambda data, peer: sent.append(parse_message(data)) or defer.succeed(True)
    return sent


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS"])
def test_a_connection_that_fails_later_fails_the_client_transaction(method):
    # RFC 3261 17.1.4: the stream's Deferred failing (the connection could
    # not be made) is a transport error told to the owner, once.
    from sipcluster.transport.layer import TransportError
    h = make_harness()
    connecting = defer.Deferred()
    h.layer.send_data = lambda data, peer: connecting
    owner = Owner()
    tx = h.tl.start_client(outgoing(method), Peer("tcp", *UAS), owner)
    assert owner.events == [] and tx.state != "terminated"
    connecting.errback(TransportError("connection refused"))
    assert owner.events == [("failed", tx)] and tx.state == "terminated"


def test_reliable_invite_client_timer_d_is_zero():
    h = make_harness()
    sent = tcp_client(h)
    req = outgoing()
    h.tl.start_client(req, Peer("tcp", *UAS), Owner())
    assert pending(h) == [32.0]  # Timer B only: no Timer A
    busy = answer(req, 486)
    h.receive(busy, UAS)
    assert [m.method for m in sent] == ["INVITE", "ACK"]
    h.clock.advance(0)
    h.receive(busy, UAS)
    assert [r.status for r in h.tu.strays] == [486]


def test_reliable_non_invite_client_timer_k_is_zero():
    h = make_harness()
    tcp_client(h)
    req = outgoing("OPTIONS")
    h.tl.start_client(req, Peer("tcp", *UAS), Owner())
    assert pending(h) == [32.0]  # Timer F only: no Timer E
    ok = answer(req, 200)
    h.receive(ok, UAS)
    h.clock.advance(0)
    h.receive(ok, UAS)
    assert [r.status for r in h.tu.strays] == [200]


def test_reliable_invite_server_sends_on_the_connection_without_timer_g():
    h = make_harness()
    conn = FakeConnection()
    h.layer.data_received(tcp_request(), tcp_source(conn))
    tx = h.tu.requests[0]
    tx.respond(answer(tx.request, 180))
    h.layer.data_received(tcp_request(), tcp_source(conn))  # retransmission
    tx.respond(answer(tx.request, 486))
    assert [m.status for m in conn.written] == [180, 180, 486]
    assert pending(h) == [32.0]  # Timer H only: no Timer G
    at(h, 31.9)
    assert [m.status for m in conn.written] == [180, 180, 486]
    h.layer.data_received(tcp_request("ACK"), tcp_source(conn))
    assert h.tu.acks == []
    h.clock.advance(0)  # Timer I is zero
    h.layer.data_received(tcp_request("ACK"), tcp_source(conn))
    assert len(h.tu.acks) == 1
    assert h.sent() == []  # nothing went by UDP


def test_reliable_invite_server_2xx_from_tu_on_the_connection():
    h = make_harness()
    conn = FakeConnection()
    h.layer.data_received(tcp_request(), tcp_source(conn))
    tx = h.tu.requests[0]
    incoming = tx.request  # (let go of at the final response)
    tx.respond(answer(incoming, 200))
    tx.respond(answer(incoming, 200))
    assert [m.status for m in conn.written] == [200, 200]
    assert h.sent() == []


def test_reliable_non_invite_server_timer_j_is_zero():
    h = make_harness()
    conn = FakeConnection()
    h.layer.data_received(tcp_request("OPTIONS"), tcp_source(conn))
    tx = h.tu.requests[0]
    tx.respond(answer(tx.request, 200))
    assert [m.status for m in conn.written] == [200]
    h.clock.advance(0)
    h.layer.data_received(tcp_request("OPTIONS"), tcp_source(conn))
    assert len(h.tu.requests) == 2


# -- responses leave by the socket the request came in on (RFC 3581 4) ------


def second_socket(h, host="127.0.0.2", port=5060):
    from sipcluster.transport.udp import SIPDatagramProtocol
    from tests.harness import FakeDatagramTransport
    proto = SIPDatagramProtocol(h.layer, host, port)
    sock = FakeDatagramTransport(host, port)
    proto.makeConnection(sock)
    h.layer.udp.append(proto)
    h.layer._add_local("udp", host, port)
    return proto, sock


def test_server_invite_answers_from_the_receiving_socket():
    h = make_harness()
    proto, sock = second_socket(h)
    proto.datagramReceived(request().to_bytes(), UAC)
    tx = h.tu.requests[0]
    tx.respond(answer(tx.request, 180))
    proto.datagramReceived(request().to_bytes(), UAC)  # the 180 again
    tx.respond(answer(tx.request, 486))
    proto.datagramReceived(request().to_bytes(), UAC)  # the 486 again
    at(h, 0.5)  # Timer G
    assert h.socket.written == []
    assert [(parse_message(d).status, a) for d, a in sock.written] == [
        (180, UAC), (180, UAC), (486, UAC), (486, UAC), (486, UAC)]


def test_server_invite_2xx_from_the_receiving_socket():
    h = make_harness()
    proto, sock = second_socket(h)
    proto.datagramReceived(request().to_bytes(), UAC)
    tx = h.tu.requests[0]
    incoming = tx.request  # (let go of at the final response)
    tx.respond(answer(incoming, 200))
    tx.respond(answer(incoming, 200))
    assert h.socket.written == []
    assert [parse_message(d).status for d, a in sock.written] == [200, 200]


def test_server_non_invite_answers_from_the_receiving_socket():
    h = make_harness()
    proto, sock = second_socket(h)
    proto.datagramReceived(request("OPTIONS").to_bytes(), UAC)
    tx = h.tu.requests[0]
    tx.respond(answer(tx.request, 100))
    proto.datagramReceived(request("OPTIONS").to_bytes(), UAC)
    tx.respond(answer(tx.request, 200))
    proto.datagramReceived(request("OPTIONS").to_bytes(), UAC)
    assert h.socket.written == []
    assert [parse_message(d).status for d, a in sock.written] == [100, 100, 200, 200]


# -- server transactions: what each state does with what arrives ------------------


def test_server_invite_retransmission_in_completed_gets_the_final_at_once():
    h = make_harness()
    h.receive(request())
    tx = h.tu.requests[0]
    tx.respond(answer(tx.request, 486))
    h.receive(request())
    assert statuses(h) == [486, 486]


def test_server_invite_300_is_a_final_response():
    h = make_harness()
    h.receive(request())
    tx = h.tu.requests[0]
    tx.respond(answer(tx.request, 300))
    assert statuses(h) == [300]
    at(h, 0.5)  # Timer G: 3xx is retransmitted like 4xx-6xx (RFC 3261 17.2.1)
    assert statuses(h) == [300]
    h.receive(request("ACK"))
    assert h.tu.acks == []  # absorbed: the transaction is Completed


def test_server_transaction_finds_where_its_responses_go_once():
    """Every response of a server transaction, and each retransmission of the
    final one, goes where the first one's top Via said (RFC 3261 18.2.2):
    found once, as Kamailio's tm keeps a transaction's reply destination, so
    a later response whose top Via a UAS rewrote still goes there."""
    h = make_harness()
    h.receive(request())
    tx = h.tu.requests[0]
    tx.respond(answer(tx.request, 100))
    busy = answer(tx.request, 486)
    busy.replace_first("via", "SIP/2.0/UDP 127.0.0.9:5099;branch=z9hG4bKuac1")
    tx.respond(busy)
    at(h, 0.5)  # Timer G
    assert [(m.status, a) for m, a in h.sent()] == [(100, UAC), (486, UAC), (486, UAC)]
    # The first response's own Via decides: a non-INVITE answered from the
    # rewritten Via keeps to it.
    h.receive(request("OPTIONS", branch="z9hG4bKuac3"))
    options_tx = h.tu.requests[1]
    trying = answer(options_tx.request, 100)
    trying.replace_first("via", "SIP/2.0/UDP 127.0.0.9:5099;branch=z9hG4bKuac3")
    options_tx.respond(trying)
    options_tx.respond(answer(options_tx.request, 200))
    assert [(m.status, a) for m, a in h.sent()] == [(100, ("127.0.0.9", 5099)),
                                                    (200, ("127.0.0.9", 5099))]


def test_a_server_transaction_keeps_no_fallback_and_drops_a_response_without_via():
    """A first response whose Via is unusable goes back where the request
    came from, and the next one by its own Via again; one with no Via at all
    is dropped and counted, as the transport layer drops any."""
    h = make_harness()
    h.receive(request(), ("127.0.0.5", 5085))  # Via 127.0.0.1:5080: received=127.0.0.5
    tx = h.tu.requests[0]
    trying = answer(tx.request, 100)
    trying.replace_first("via", "SIP/2.0/UDP")
    tx.respond(trying)
    ringing = answer(tx.request, 180)
    tx.respond(ringing)
    assert [(m.status, a) for m, a in h.sent()] == [(100, ("127.0.0.5", 5085)),
                                                    (180, ("127.0.0.5", 5080))]
    bare = answer(tx.request, 180)
    while bare.has("via"):
        bare.pop_first("via")
    dropped = h.layer.stats["dropped"]
    tx.respond(bare)
    assert h.sent() == [] and h.layer.stats["dropped"] == dropped + 1
    assert h.layer.response_peer(bare) is None
    tx.respond(answer(tx.request, 200))
    assert [(m.status, a) for m, a in h.sent()] == [(200, ("127.0.0.5", 5080))]


def test_response_peer_falls_back_to_where_the_request_came_from():
    from sipcluster.transport.base import Source
    h = make_harness()
    response = answer(request(), 200)
    assert h.layer.response_peer(response) == Peer("udp", *UAC)
    response.replace_first("via", "SIP/2.0/UDP")  # no sent-by: unusable
    source = Source("udp", "127.0.0.7", 5077, h.udp)
    assert h.layer.response_peer(response, source) == Peer("udp", "127.0.0.7", 5077)
    assert h.layer.response_peer(response) is None
    assert h.layer.send_response_now(response) is False
    assert h.layer.stats["send_errors"] == 1 and h.sent() == []


def test_server_invite_ignores_the_tu_after_a_final():
    h = make_harness()
    h.receive(request())
    tx = h.tu.requests[0]
    incoming = tx.request  # (let go of at the final response)
    tx.respond(answer(incoming, 486))
    tx.respond(answer(incoming, 200))  # too late: not sent
    assert statuses(h) == [486]
    h2 = make_harness()
    h2.receive(request())
    tx2 = h2.tu.requests[0]
    incoming = tx2.request
    tx2.respond(answer(incoming, 200))
    tx2.respond(answer(incoming, 300))  # Accepted passes on 2xx only
    assert statuses(h2) == [200]


def test_server_non_invite_provisional_then_final():
    h = make_harness()
    h.receive(request("OPTIONS"))
    tx = h.tu.requests[0]
    incoming = tx.request  # (let go of at the final response)
    tx.respond(answer(incoming, 100))
    h.receive(request("OPTIONS"))  # Proceeding: the provisional again
    assert tx.request is incoming
    tx.respond(answer(incoming, 200))
    assert tx.request is None  # Completed re-sends the 200 alone
    h.receive(request("OPTIONS"))
    tx.respond(answer(incoming, 404))  # after the final: ignored
    assert statuses(h) == [100, 100, 200, 200]


def test_ack_timeouts_are_counted():
    h = make_harness()
    for branch in ("z9hG4bKone", "z9hG4bKtwo"):
        h.receive(request(branch=branch))
    for tx in h.tu.requests:
        tx.respond(answer(tx.request, 486))
    at(h, 32)
    assert h.tl.stats["ack_timeouts"] == 2


def test_on_terminated_is_called_with_the_transaction():
    h = make_harness()
    h.receive(request("OPTIONS"))
    tx = h.tu.requests[0]
    ended = []
    tx.on_terminated = ended.append
    tx.respond(answer(tx.request, 200))
    at(h, 32)
    assert ended == [tx]


# -- client transactions: owner, CANCEL, transport errors -----------------------


def test_owner_hears_each_response_with_its_transaction():
    h = make_harness()
    owner = Owner()
    req = outgoing()
    tx = h.tl.start_client(req, Peer("udp", *UAS), owner)
    h.receive(answer(req, 180), UAS)
    h.receive(answer(req, 200), UAS)
    h.receive(answer(req, 200, to_tag="fork2"), UAS)
    assert owner.events == [("response", tx, 180), ("response", tx, 200), ("response", tx, 200)]
    owner2 = Owner()
    req2 = outgoing("OPTIONS", branch="z9hG4bKproxy2")
    tx2 = h.tl.start_client(req2, Peer("udp", *UAS), owner2)
    h.receive(answer(req2, 200), UAS)
    assert owner2.events == [("response", tx2, 200)]


def test_invite_client_3xx_is_acked():
    h = make_harness()
    owner = Owner()
    req = outgoing()
    tx = h.tl.start_client(req, Peer("udp", *UAS), owner)
    h.sent()
    moved = answer(req, 300)
    h.receive(moved, UAS)
    h.receive(moved, UAS)  # a retransmission: ACKed again, not passed up
    assert methods(h) == ["ACK", "ACK"]
    assert owner.events == [("response", tx, 300)]


def test_invite_client_accepted_ignores_non_2xx():
    h = make_harness()
    owner = Owner()
    req = outgoing()
    tx = h.tl.start_client(req, Peer("udp", *UAS), owner)
    h.sent()
    h.receive(answer(req, 200), UAS)
    h.receive(answer(req, 300), UAS)
    assert owner.events == [("response", tx, 200)]
    assert methods(h) == []


def test_cancel_after_a_provisional_is_sent_at_once_and_once():
    h = make_harness()
    req = outgoing()
    tx = h.tl.start_client(req, Peer("udp", *UAS), Owner())
    h.receive(answer(req, 180), UAS)
    h.sent()
    tx.cancel()
    tx.cancel()
    assert methods(h) == ["CANCEL"]
    h.receive(answer(req, 183), UAS)
    assert methods(h) == []


def test_cancel_requested_early_is_sent_once():
    h = make_harness()
    req = outgoing()
    tx = h.tl.start_client(req, Peer("udp", *UAS), Owner())
    h.sent()
    tx.cancel()
    h.receive(answer(req, 180), UAS)
    h.receive(answer(req, 183), UAS)
    assert methods(h) == ["CANCEL"]


def test_cancel_after_a_final_is_not_sent():
    h = make_harness()
    req = outgoing()
    tx = h.tl.start_client(req, Peer("udp", *UAS), Owner())
    h.receive(answer(req, 180), UAS)
    h.receive(answer(req, 486), UAS)
    h.sent()
    tx.cancel()
    assert methods(h) == []


def test_responses_to_our_cancel_are_absorbed():
    h = make_harness()
    owner = Owner()
    req = outgoing()
    tx = h.tl.start_client(req, Peer("udp", *UAS), owner)
    h.receive(answer(req, 180), UAS)
    tx.cancel()
    cancel = [m for m in h.sent_to(UAS) if m.method == "CANCEL"][0]
    h.receive(answer(cancel, 200), UAS)
    h.receive(answer(req, 487), UAS)
    assert owner.events == [("response", tx, 180), ("response", tx, 487)]
    assert h.tu.strays == []
    at(h, 64)  # the CANCEL's own Timer F and the INVITE's Timer D: quietly
    assert owner.events == [("response", tx, 180), ("response", tx, 487)]


@pytest.mark.parametrize("t1", [0.5, 0.1])
def test_cancel_unanswered_gives_the_invite_up_after_64_t1(t1):
    # RFC 3261 9.1: no final response 64*T1 after the CANCEL.
    h = make_harness(t1=t1)
    owner = Owner()
    req = outgoing()
    tx = h.tl.start_client(req, Peer("udp", *UAS), owner)
    h.receive(answer(req, 180), UAS)
    at(h, 1.0)
    tx.cancel()
    at(h, 1.0 + 64 * t1 - EARLY)
    assert owner.events == [("response", tx, 180)]
    at(h, 1.0 + 64 * t1)
    assert owner.events == [("response", tx, 180), ("timeout", tx)]
    h.receive(answer(req, 487), UAS)
    assert [r.status for r in h.tu.strays] == [487]


def test_cancel_answered_late_by_a_final_is_not_a_timeout():
    h = make_harness()
    owner = Owner()
    req = outgoing()
    tx = h.tl.start_client(req, Peer("udp", *UAS), owner)
    h.receive(answer(req, 180), UAS)
    tx.cancel()
    at(h, 1.0)
    h.receive(answer(req, 487), UAS)
    at(h, 40)
    assert owner.events == [("response", tx, 180), ("response", tx, 487)]


def invite_with_routes():
    req = outgoing()
    req.add("Route", "<sip:p1.example;lr>, <sip:p2.example;lr>")
    req.add("Route", "<sip:p3.example;lr>")
    return req


def test_ack_for_non_2xx_headers():
    # RFC 3261 17.1.1.3: Request-URI, top Via, From, Call-ID, CSeq number
    # and Route of the INVITE; To of the response.
    h = make_harness()
    req = invite_with_routes()
    h.tl.start_client(req, Peer("udp", *UAS), Owner())
    h.sent()
    h.receive(answer(req, 486, "t9"), UAS)
    ack = h.sent_to(UAS)[0]
    assert ack.start_line() == "ACK sip:bob@127.0.0.1:5070 SIP/2.0"
    assert ack.items() == [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy1;rport"),
        ("Max-Forwards", "70"),
        ("From", "<sip:alice@a.example>;tag=a1"),
        ("To", "<sip:bob@b.example>;tag=t9"),
        ("Call-ID", "call-2@a.example"),
        ("CSeq", "7 ACK"),
        ("Route", "<sip:p1.example;lr>"),
        ("Route", "<sip:p2.example;lr>"),
        ("Route", "<sip:p3.example;lr>"),
        ("Content-Length", "0"),
    ]


def test_cancel_headers():
    # RFC 3261 9.1: as the ACK, with the To of the INVITE.
    h = make_harness()
    req = invite_with_routes()
    tx = h.tl.start_client(req, Peer("udp", *UAS), Owner())
    h.receive(answer(req, 180, "t9"), UAS)
    h.sent()
    tx.cancel()
    cancel = h.sent_to(UAS)[0]
    assert cancel.start_line() == "CANCEL sip:bob@127.0.0.1:5070 SIP/2.0"
    assert cancel.items() == [
        ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKproxy1;rport"),
        ("Max-Forwards", "70"),
        ("From", "<sip:alice@a.example>;tag=a1"),
        ("To", "<sip:bob@b.example>"),
        ("Call-ID", "call-2@a.example"),
        ("CSeq", "7 CANCEL"),
        ("Route", "<sip:p1.example;lr>"),
        ("Route", "<sip:p2.example;lr>"),
        ("Route", "<sip:p3.example;lr>"),
        ("Content-Length", "0"),
    ]


# -- the layer: matching and what the TU is handed --------------------------------


def test_retransmissions_are_counted():
    h = make_harness()
    for _ in range(3):
        h.receive(request("OPTIONS"))
    assert h.tl.stats["retransmissions"] == 2


def test_ack_and_stray_go_to_the_tu_with_their_source():
    h = make_harness()
    h.receive(request("ACK", branch="z9hG4bKnewack"))
    h.receive(make_response(outgoing(branch="z9hG4bKnobody"), 200, to_tag="x"), UAS)
    assert h.tu.sources == [("ack", Peer("udp", *UAC)), ("stray", Peer("udp", *UAS))]
    assert [(a.method, a.top_via.branch) for a in h.tu.acks] == [("ACK", "z9hG4bKnewack")]


def test_response_without_cseq_is_a_stray():
    h = make_harness()
    response = make_response(outgoing(), 200, to_tag="x")
    response.remove("cseq")
    h.tl.response_received(response, None)
    assert [r.status for r in h.tu.strays] == [200]


def test_rfc3261_matching_is_by_branch_sent_by_and_method_only():
    # RFC 3261 17.2.3: with the magic cookie nothing else is compared.
    h = make_harness()
    h.receive(request("OPTIONS"))
    other = request("OPTIONS").to_bytes().replace(b"call-1@a.example", b"call-9@a.example")
    h.receive(other)
    assert len(h.tu.requests) == 1
    assert h.tl.stats["retransmissions"] == 1


def test_rfc2543_matching_compares_request_uri_and_via():
    h = make_harness()
    h.receive(request(branch="oldstyle1"))
    h.receive(request(branch="oldstyle1").to_bytes().replace(
        b"INVITE sip:bob@127.0.0.1:5070", b"INVITE sip:carol@127.0.0.1:5070"))
    h.receive(request(branch="oldstyle1", via_host="127.0.0.9:5080"))
    assert len(h.tu.requests) == 3


# -- timer bookkeeping and values -------------------------------------------------


class _Timed(Transaction):
    """A transaction that notes when its timers come up, and whether each still ran then."""

    def __init__(self, layer):
        Transaction.__init__(self, layer, "key", None, False)
        self.fired = []

    def timer_fired(self, name):
        self.fired.append((name, self.timer_running(name)))


def test_a_timer_started_again_replaces_the_first():
    h = make_harness()
    tx = _Timed(h.tl)
    tx.start_timer("X", 1.0)
    tx.start_timer("X", 2.0)
    assert tx.timer_running("X")
    at(h, 1.5)
    assert tx.fired == []
    at(h, 2.0)
    # It came up once, at the second deadline, no longer running by then.
    assert tx.fired == [("X", False)]
    at(h, 3.0)
    assert tx.fired == [("X", False)]
    assert not tx.timer_running("X")
    assert pending(h) == []


def test_timers_come_up_by_name_each_once():
    h = make_harness()
    tx = _Timed(h.tl)
    tx.start_timer("B", 2.0)
    tx.start_timer("A", 1.0)
    tx.start_timer("C", 1.5)
    tx.cancel_timer("C")
    at(h, 1.0)
    assert tx.fired == [("A", False)]
    at(h, 3.0)
    assert tx.fired == [("A", False), ("B", False)]
    assert pending(h) == []


def test_a_timer_the_transaction_does_not_know_is_an_error():
    from sipcluster.transaction.client import ClientInviteTransaction, ClientNonInviteTransaction
    from sipcluster.transaction.server import ServerInviteTransaction, ServerNonInviteTransaction
    for cls in (Transaction, ClientInviteTransaction, ClientNonInviteTransaction,
                ServerInviteTransaction, ServerNonInviteTransaction):
        tx = cls.__new__(cls)
        with pytest.raises(NotImplementedError, match="^timer 'X' of %s$" % cls.__name__):
            tx.timer_fired("X")


def test_an_ended_client_transaction_holds_its_owner_no_longer():
    # The owner (a proxy's response context) holds the transaction: the
    # pair would be a reference cycle (tests/test_proxy.py).
    h = make_harness()
    owner = RecordingOwner()
    tx = h.tl.start_client(request("OPTIONS"), Peer("udp", "127.0.0.1", 5070), owner)
    assert tx.owner is owner
    at(h, 40.0)   # Timer F: the owner is told, then let go
    assert tx.state == "terminated" and tx.owner is None
    assert owner.timeouts == 1 and owner.failures == 0


def test_timer_values_defaults():
    timers = TimerValues()
    assert (timers.t1, timers.t2, timers.t4, timers.timer_c) == (0.5, 4.0, 5.0, 180.0)
    assert (timers.timeout, timers.timer_d) == (32.0, 32.0)


def test_timer_values_from_every_config_key():
    from sipcluster.config import load
    timers = TimerValues.from_config(load(None, {
        "timers.t1_ms": 250, "timers.t2_ms": 3000, "timers.t4_ms": 4000,
        "timers.timer_c_s": 200, "timers.resolution_ms": 20}).timers)
    assert (timers.t1, timers.t2, timers.t4, timers.timer_c) == (0.25, 3.0, 4.0, 200.0)
    assert timers.resolution == 0.02
    assert TimerValues.from_config(load(None, {}).timers).resolution == 0.01  # a node's default
    assert TimerValues().resolution == 0.0
    assert isinstance(timers.timer_c, float)
    assert timers.timer_d == 32.0
    assert TimerValues(t1=1.0).timer_d == 64.0


# -- transport errors (RFC 3261 17.1.4) ----------------------------------------


def break_socket(h):
    def write(data, addr):
        raise OSError("network is unreachable")
    h.socket.write = write


def test_transport_error_on_the_first_send_is_reported():
    # RFC 3261 17.1.4: the TU hears of it (and treats it as a 503).
    for method in ("INVITE", "OPTIONS"):
        h = make_harness()
        break_socket(h)
        owner = Owner()
        tx = h.tl.start_client(outgoing(method), Peer("udp", *UAS), owner)
        assert owner.events == [("failed", tx)]
        assert h.tl.clients == {}
        assert pending(h) == []  # no timer left for a transaction that ended


def test_transport_error_on_a_retransmission_is_reported():
    h = make_harness()
    owner = Owner()
    tx = h.tl.start_client(outgoing(), Peer("udp", *UAS), owner)
    break_socket(h)
    at(h, 0.5)  # Timer A
    assert owner.events == [("failed", tx)]
    assert pending(h) == []


@pytest.mark.parametrize("method, status", [("INVITE", 200), ("INVITE", 486), ("OPTIONS", 200)])
def test_transport_error_after_a_final_is_not_reported(method, status):
    # A connection that fails only once the response has come (TCP).
    h = make_harness()
    sending = defer.Deferred()
    h.layer.send_data = lambda data, peer: sending if data.startswith(method.encode()) else defer.succeed(True)
    owner = Owner()
    req = outgoing(method)
    tx = h.tl.start_client(req, Peer("tcp", *UAS), owner)
    h.receive(answer(req, status), UAS)
    sending.errback(OSError("connection reset"))
    assert owner.events == [("response", tx, status)]


def test_transport_error_after_a_timeout_is_not_reported():
    h = make_harness()
    sending = defer.Deferred()
    h.layer.send_data = lambda data, peer: sending
    owner = Owner()
    tx = h.tl.start_client(outgoing(), Peer("tcp", *UAS), owner)
    at(h, 32)  # Timer B
    sending.errback(OSError("connection timed out"))
    assert owner.events == [("timeout", tx)]


def test_a_failed_ack_send_is_absorbed():
    import gc
    from twisted.logger import globalLogPublisher
    h = make_harness()
    req = outgoing()
    h.tl.start_client(req, Peer("udp", *UAS), Owner())
    break_socket(h)
    logged = []

    def observer(event):
        if event.get("log_failure") is not None:
            logged.append(event)
    globalLogPublisher.addObserver(observer)
    try:
        h.receive(answer(req, 486), UAS)  # the ACK cannot be sent
        gc.collect()  # an unhandled failure in a Deferred is logged here
    finally:
        globalLogPublisher.removeObserver(observer)
    assert logged == []


# -- the timer heap ---------------------------------------------------------------


def _heap(resolution=0.0):
    from twisted.internet.task import Clock

    from sipcluster.transaction.timers import TimerHeap
    clock = Clock()
    return clock, TimerHeap(clock, resolution)


def test_timer_heap_fires_each_timer_at_its_deadline_not_before():
    clock, heap = _heap()
    fired = []
    for delay in (32.0, 0.5, 4.0, 0.5):
        heap.call_later(delay, lambda d=delay: fired.append((d, clock.seconds())))
    assert len(clock.getDelayedCalls()) == 1  # one reactor timer, for 0.5 s
    clock.advance(0.4999)
    assert fired == []
    clock.advance(0.0001)
    assert fired == [(0.5, 0.5), (0.5, 0.5)]
    clock.advance(3.4999)
    assert len(fired) == 2
    clock.advance(0.0001)
    assert fired[2] == (4.0, 4.0)
    clock.advance(27.9999)
    assert len(fired) == 3 and len(heap) == 1
    clock.advance(0.0001)
    assert fired[3] == (32.0, 32.0)
    assert len(heap) == 0 and clock.getDelayedCalls() == []


def test_timer_heap_equal_deadlines_fire_in_the_order_armed():
    clock, heap = _heap()
    fired = []
    for n in range(5):
        heap.call_later(1.0, fired.append, n)
    clock.advance(1.0)
    assert fired == [0, 1, 2, 3, 4]


def test_timer_heap_stopped_timers_never_fire_and_leave_no_reactor_timer():
    clock, heap = _heap()
    fired = []
    a = heap.call_later(1.0, fired.append, "a")
    b = heap.call_later(2.0, fired.append, "b")
    assert heap.active(a) and heap.active(b)
    heap.cancel(a)
    heap.cancel(a)  # twice: nothing more happens
    assert not heap.active(a) and heap.scheduled() == [2.0]
    clock.advance(1.5)
    assert fired == []
    heap.cancel(b)
    assert clock.getDelayedCalls() == [] and len(heap) == 0
    clock.advance(10)
    assert fired == []
    heap.cancel(12345)  # an unknown handle: nothing


def test_timer_heap_an_earlier_timer_moves_the_reactor_timer_sooner():
    clock, heap = _heap()
    fired = []
    heap.call_later(10.0, fired.append, "late")
    heap.call_later(1.0, fired.append, "soon")
    assert [round(c.getTime(), 3) for c in clock.getDelayedCalls()] == [1.0]
    clock.advance(1.0)
    assert fired == ["soon"]
    assert [round(c.getTime(), 3) for c in clock.getDelayedCalls()] == [10.0]


def test_timer_heap_timers_armed_while_firing():
    clock, heap = _heap()
    fired = []

    def first():
        fired.append("first")
        heap.call_later(0, fired.append, "now")      # due at once
        heap.call_later(5.0, fired.append, "later")  # the next reactor timer

    heap.call_later(1.0, first)
    clock.advance(1.0)
    assert fired == ["first", "now"]
    assert [round(c.getTime(), 3) for c in clock.getDelayedCalls()] == [6.0]
    clock.advance(4.9)
    assert fired == ["first", "now"]
    clock.advance(0.1)
    assert fired == ["first", "now", "later"]


def test_timer_heap_a_failing_timer_is_logged_and_the_others_fire():
    from twisted.logger import capturedLogs
    clock, heap = _heap()
    fired = []

    def failing(argument):
        return 1 / 0

    heap.call_later(1.0, failing, "an argument")
    heap.call_later(1.0, fired.append, "after")
    with capturedLogs() as events:
        clock.advance(1.0)
    assert fired == ["after"]
    failures = [e for e in events if e.get("log_failure") is not None]
    assert len(failures) == 1 and failures[0]["log_failure"].check(ZeroDivisionError)
    assert failures[0]["log_format"] == "transaction timer {fire!r}{args!r} failed"
    assert failures[0]["fire"] is failing and failures[0]["args"] == ("an argument",)
    assert failures[0]["log_namespace"] == "sipcluster.transaction.timers.TimerHeap"


def test_timer_heap_compacts_stopped_timers_and_keeps_the_live_ones():
    clock, heap = _heap()
    fired = []
    handles = [heap.call_later(1.0 + n / 1000.0, fired.append, n) for n in range(300)]
    for handle in handles[:-3]:
        heap.cancel(handle)
    assert heap._entries < 100  # compacted
    assert [round(t, 3) for t in heap.scheduled()] == [1.297, 1.298, 1.299]
    clock.advance(2.0)
    assert fired == [297, 298, 299]
    assert clock.getDelayedCalls() == []


def test_timer_heap_stopped_pairs_never_outnumber_twice_the_live_timers_past_64():
    clock, heap = _heap()
    handles = [heap.call_later(1.0 + n, lambda: None) for n in range(200)]
    for handle in handles:
        heap.cancel(handle)
        assert heap._entries <= max(64, 2 * len(heap))
    assert heap._entries == 0 and clock.getDelayedCalls() == []
    handles = [heap.call_later(1.0, lambda: None) for n in range(65)]
    for handle in handles[:33]:
        heap.cancel(handle)
    assert heap._entries == len(heap) == 32


def test_timer_heap_a_timer_due_at_the_wake_up_fires_then():
    # A deadline the reactor's timer reaches exactly.
    clock, heap = _heap()
    fired = []
    clock.advance(0.1)
    heap.call_later(0.7, fired.append, "a")
    heap.call_later(0.2, fired.append, "b")
    clock.advance(0.2)
    assert fired == ["b"]
    clock.advance(0.5)
    assert fired == ["b", "a"]


def test_timer_heap_each_delay_has_a_queue_and_the_rest_go_to_the_heap():
    from sipcluster.transaction.timers import MAX_QUEUES
    clock, heap = _heap()
    for n in range(MAX_QUEUES + 5):
        heap.call_later(1.0 + n, lambda: None)
        heap.call_later(1.0 + n, lambda: None)
    assert len(heap._queues) == MAX_QUEUES
    assert all(len(queue) == 2 for queue in heap._queues.values())
    assert len(heap._heap) == 10
    assert heap.scheduled() == sorted(2 * [1.0 + n for n in range(MAX_QUEUES + 5)])


def test_timer_heap_fires_in_deadline_order_across_queues_and_the_heap():
    from sipcluster.transaction.timers import MAX_QUEUES
    clock, heap = _heap()
    fired = []
    # Delays whose deadlines interleave: the queues of the first delays
    # and the heap of the others all hold some of each second's timers.
    delays = [0.25 * (1 + n % (MAX_QUEUES + 8)) for n in range(400)]
    for n, delay in enumerate(delays):
        if n % 50 == 0:
            clock.advance(0.1)
        heap.call_later(delay, fired.append, (clock.seconds() + delay, n))
    assert heap._heap  # some in the heap
    clock.advance(0.3)  # a few due, in one pass
    for _ in range(200):
        clock.advance(0.05)
    assert len(fired) == 400 and fired == sorted(fired)


def test_timer_heap_a_timer_armed_after_the_clock_went_back_fires_at_its_deadline():
    # The reactor's clock is the wall clock: stepped back, a timer of a
    # delay already queued comes due before the ones ahead of it.
    clock, heap = _heap()
    fired = []
    clock.advance(10.0)
    heap.call_later(1.0, fired.append, "at 11")
    clock.advance(-5.0)
    heap.call_later(1.0, fired.append, "at 6")
    assert heap.scheduled() == [6.0, 11.0]
    clock.advance(1.0)
    assert fired == ["at 6"]
    clock.advance(5.0)
    assert fired == ["at 6", "at 11"]
    assert clock.getDelayedCalls() == [] and len(heap) == 0


def test_timer_heap_stopping_every_timer_empties_queues_and_heap_in_place():
    from sipcluster.transaction.timers import MAX_QUEUES
    clock, heap = _heap()
    handles = [heap.call_later(1.0 + n, lambda: None) for n in range(MAX_QUEUES + 3)]
    queues = dict(heap._queues)
    for handle in handles:
        heap.cancel(handle)
    assert heap._entries == 0 and heap._heap == [] and clock.getDelayedCalls() == []
    assert heap._queues == queues and all(len(q) == 0 for q in queues.values())
    fired = []
    heap.call_later(2.0, fired.append, "again")
    clock.advance(2.0)
    assert fired == ["again"]


def test_timer_heap_with_a_resolution_fires_a_step_s_timers_together_at_its_end():
    clock, heap = _heap(0.01)
    fired = []
    clock.advance(5.0)
    for delay in (0.009, 0.001, 0.004):
        heap.call_later(delay, lambda d=delay: fired.append((d, round(clock.seconds(), 6))))
    # One reactor timer, at the end of the step the deadlines fall in.
    assert [round(c.getTime(), 6) for c in clock.getDelayedCalls()] == [5.01]
    clock.advance(0.0099)
    assert fired == []
    clock.advance(0.0001)
    assert fired == [(0.001, 5.01), (0.004, 5.01), (0.009, 5.01)]
    assert clock.getDelayedCalls() == [] and len(heap) == 0


def test_timer_heap_with_a_resolution_a_deadline_on_a_step_s_end_fires_then():
    clock, heap = _heap(0.25)
    fired = []
    heap.call_later(0.5, fired.append, "on the step")
    heap.call_later(0.6, fired.append, "in the next")
    assert [c.getTime() for c in clock.getDelayedCalls()] == [0.5]
    clock.advance(0.5)
    assert fired == ["on the step"]
    assert [c.getTime() for c in clock.getDelayedCalls()] == [0.75]
    clock.advance(0.25)
    assert fired == ["on the step", "in the next"]


def test_timer_heap_with_a_resolution_rearms_only_for_an_earlier_step():
    clock, heap = _heap(0.1)
    heap.call_later(1.05, lambda: None)
    (call,) = clock.getDelayedCalls()
    assert round(call.getTime(), 6) == 1.1
    heap.call_later(1.02, lambda: None)   # earlier, in the same step: left as it is
    assert clock.getDelayedCalls() == [call] and call.active()
    heap.call_later(0.55, lambda: None)   # an earlier step: moved there
    (moved,) = clock.getDelayedCalls()
    assert not call.active() and round(moved.getTime(), 6) == 0.6


def test_timer_heap_with_a_resolution_a_chain_of_timers_does_not_drift():
    # Timer A's retransmissions: each armed by the last as it fires, with
    # Timer B counted from the start.  Counted from the end of each step,
    # the chain (deadlines n * 0.625 s, steps of 0.25 s; binary fractions, so
    # that the floats are exact) would fall behind at each link and fire
    # its sixth after B.
    clock, heap = _heap(0.25)
    fired = []

    def link(n):
        fired.append((n, clock.seconds()))
        if n < 6:
            heap.call_later(0.625, link, n + 1)

    heap.call_later(0.625, link, 1)
    heap.call_later(3.8, fired.append, ("B", None))
    for _ in range(40):
        clock.advance(0.125)
    assert [n for n, _ in fired] == [1, 2, 3, 4, 5, 6, "B"]
    # Each link at the end of the step of its own deadline.
    assert [at for n, at in fired[:6]] == [0.75, 1.25, 2.0, 2.5, 3.25, 3.75]
    # Woken late (a busy reactor): the next link counts from two steps ago
    # at the earliest, not from the deadline missed, so no burst follows.
    fired[:] = []
    heap.call_later(0.625, link, 5)
    clock.advance(10.0)
    assert fired == [(5, 15.0)]
    assert [c.getTime() for c in clock.getDelayedCalls()] == [15.25]


def test_timer_heap_resolution_is_never_negative():
    from twisted.internet.task import Clock

    from sipcluster.transaction.timers import TimerHeap
    for wrong in (-0.01, float("nan")):
        with pytest.raises(ValueError):
            TimerHeap(Clock(), wrong)


def test_transaction_layer_keeps_its_timers_to_the_configured_resolution(h):
    assert h.tl.timer_heap.resolution == 0.0   # TimerValues() has none
    tl = TransactionLayer(h.layer, h.clock, TimerValues(resolution=0.01), h.tu)
    assert tl.timer_heap.resolution == 0.01


@pytest.mark.parametrize("resolution", [0.0, 0.01, 0.25])
def test_timer_heap_against_a_model(resolution):
    # Random arming, stopping and time against the plain rule: every armed
    # timer not stopped fires once, at its deadline (with a resolution: not
    # before it, and at most a step after it), in (deadline, armed) order.
    from hypothesis import given, settings, strategies as st

    operations = st.lists(st.one_of(
        st.tuples(st.just("arm"), st.sampled_from([0, 0.5, 1.0, 2.0, 4.0, 32.0, 0.3, 7.5]),
                  st.integers(0, 40)),
        st.tuples(st.just("stop"), st.integers(0, 200)),
        st.tuples(st.just("advance"), st.sampled_from([0.1, 0.5, 1.0, 3.0, 10.0])),
    ), max_size=120)

    @settings(max_examples=300, deadline=None)
    @given(operations)
    def check(ops):
        clock, heap = _heap(resolution)
        fired = []  # (deadline, handle) in the order fired
        wrong = []  # what fired that should not have, or early
        model = {}  # handle -> deadline, of the timers armed and not stopped or fired
        handles = []

        def fire(box):
            # (Checked after each operation: an assertion here would be
            # caught and logged by the heap, as any failing timer is.)
            deadline = model.pop(box[0], None)  # armed, not stopped, not fired yet
            if deadline is None or deadline > clock.seconds() + 1e-9:
                wrong.append((box[0], deadline, clock.seconds()))
            fired.append((deadline, box[0]))

        for op in ops:
            if op[0] == "arm":
                # Past 30 the second number makes a delay of its own, so
                # that delays outnumber MAX_QUEUES and some go to the heap.
                delay = op[1] + op[2] * 0.01 if op[2] > 30 else op[1]
                box = []
                handle = heap.call_later(delay, fire, box)
                box.append(handle)
                handles.append(handle)
                model[handle] = clock.seconds() + delay
            elif op[0] == "stop" and handles:
                handle = handles[op[1] % len(handles)]
                heap.cancel(handle)
                model.pop(handle, None)
            elif op[0] == "advance":
                clock.advance(op[1])
                # Nothing due is left (with a resolution, nothing due a
                # step ago).
                assert all(deadline + resolution > clock.seconds() - 1e-9
                           for deadline in model.values())
            assert wrong == []
            if model:
                # Not late: the heap is armed for the earliest deadline, or
                # for the end of its step (task.Clock moves the time first,
                # then runs what is due, so lateness shows here, not when a
                # timer fires).
                armed = [call.getTime() for call in clock.getDelayedCalls()]
                assert armed and min(armed) <= min(model.values()) + resolution + 1e-9
            assert heap._entries == len(heap._heap) + sum(len(q) for q in heap._queues.values())
            assert heap._entries <= max(64, 2 * len(heap))
            assert len(heap) == len(model)
        assert fired == sorted(fired)
        assert heap.scheduled() == sorted(model.values())
    check()
