"""
A real node, started with twistd, between SIPp (or a bare UDP agent) user
agents on loopback; every test asserts on what crossed the wire.
"""

import time
import uuid

from sipcluster.sip.message import parse_message
from tests.integration.nodes import UDPAgent, requires_sipp, scenario

pytestmark = requires_sipp


def node_addr(net):
    return "%s:5060" % net.host


def test_basic_call_udp(net):
    net.node()
    uas = net.sipp("uas", "-sn", "uas", "-p", "5070")
    uac = net.sipp("uac", "-sn", "uac", "%s:5070" % net.host, "-rsa", node_addr(net),
                   "-p", "5080", "-m", "3", "-r", "10")
    assert uac.wait() == 0
    uas.stop()
    received = uac.received()
    assert [m.status for m in received].count(200) == 6  # 3 INVITE + 3 BYE
    trying = [m for m in received if m.status == 100]
    assert trying and trying[0].header("server") == "sipcluster"  # our own 100
    invites = [m for m in uas.received() if getattr(m, "method", None) == "INVITE"]
    assert len(invites) == 3
    first = invites[0]
    assert first.max_forwards == 69
    assert first.top_via.host == net.host and first.top_via.port == 5060
    assert first.vias[1].port == 5080 and first.vias[1].branch.startswith("z9hG4bK-")
    assert [str(r.uri) for r in first.record_routes] == ["sip:%s:5060;lr" % net.host]


def test_basic_call_tcp(net):
    net.node()
    uas = net.sipp("uas", "-sn", "uas", "-p", "5070", "-t", "t1")
    # The Request-URI says transport=tcp: without it RFC 3263 picks UDP.
    uac = net.sipp("uac", "-sf", scenario("uac_call_transport.xml"), "%s:5070" % net.host,
                   "-rsa", node_addr(net), "-p", "5080", "-m", "3", "-r", "10", "-t", "t1")
    assert uac.wait() == 0
    uas.stop()
    invites = [m for m in uas.received() if getattr(m, "method", None) == "INVITE"]
    assert len(invites) == 3
    assert invites[0].top_via.transport == "TCP"
    assert [str(r.uri) for r in invites[0].record_routes] == [
        "sip:%s:5060;transport=tcp;lr" % net.host]


def test_cancel_before_answer(net):
    net.node()
    uas = net.sipp("uas", "-sf", scenario("uas_ring_cancel.xml"), "-p", "5070", "-m", "1")
    uac = net.sipp("uac", "-sf", scenario("uac_cancel.xml"), "%s:5070" % net.host,
                   "-rsa", node_addr(net), "-p", "5080", "-m", "1")
    assert uac.wait() == 0
    assert uas.wait(15) == 0
    statuses = [(m.status, m.cseq.method) for m in uac.received()]
    assert (200, "CANCEL") in statuses and (487, "INVITE") in statuses
    # The UAS got our CANCEL with the branch of the INVITE we sent it.
    got = uas.received()
    invite = [m for m in got if m.method == "INVITE"][0]
    cancel = [m for m in got if m.method == "CANCEL"][0]
    assert cancel.top_via.branch == invite.top_via.branch
    assert [m.method for m in got if m.method == "ACK"] == ["ACK"]  # hop-by-hop ACK for 487


def test_2xx_retransmission_reaches_the_caller(net):
    net.node()
    uas = net.sipp("uas", "-sf", scenario("uas_2xx_retransmit.xml"), "-p", "5070", "-m", "1")
    caller = UDPAgent(net.host, 5080)
    try:
        call_id = uuid.uuid4().hex
        invite = ("INVITE sip:bob@{h}:5070 SIP/2.0\r\n"
                  "Via: SIP/2.0/UDP {h}:5080;branch=z9hG4bK{c};rport\r\n"
                  "Max-Forwards: 70\r\nFrom: <sip:alice@{h}>;tag=a\r\nTo: <sip:bob@{h}:5070>\r\n"
                  "Call-ID: {c}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{h}:5080>\r\n"
                  "Content-Length: 0\r\n\r\n").format(h=net.host, c=call_id)
        caller.send(invite.encode(), (net.host, 5060))
        got = caller.recv_all(1.5)
        oks = [m for m in got if m.status == 200]
        assert len(oks) == 2, [m.status for m in got]
        assert oks[0].to_bytes() == oks[1].to_bytes()
        assert len(oks[0].vias) == 1
        route = [r for r in oks[0].record_routes]
        to = oks[0].header("to")
        ack = ("ACK sip:{h}:5070 SIP/2.0\r\nVia: SIP/2.0/UDP {h}:5080;branch=z9hG4bKack{c};rport\r\n"
               "Route: {route}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@{h}>;tag=a\r\nTo: {to}\r\n"
               "Call-ID: {c}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n").format(
                   h=net.host, c=call_id, to=to, route="<%s>" % route[0].uri)
        caller.send(ack.encode(), (net.host, 5060))
        bye = ack.replace("ACK sip", "BYE sip").replace("1 ACK", "2 BYE").replace(
            "z9hG4bKack", "z9hG4bKbye")
        caller.send(bye.encode(), (net.host, 5060))
        final = caller.recv(3)
        assert final is not None and final.status == 200 and final.cseq.method == "BYE"
    finally:
        caller.close()
    assert uas.wait(10) == 0
    methods = [m.method for m in uas.received()]
    assert methods == ["INVITE", "ACK", "BYE"]


def test_no_answer_timer_c_cancels(net):
    net.node("--timer-c", "2")
    uas = net.sipp("uas", "-sf", scenario("uas_ring_cancel.xml"), "-p", "5070", "-m", "1")
    uac = net.sipp("uac", "-sf", scenario("uac_expect_final.xml"), "%s:5070" % net.host,
                   "-rsa", node_addr(net), "-p", "5080", "-m", "1")
    assert uac.wait() == 0
    assert uas.wait(15) == 0
    assert 487 in [m.status for m in uac.received()]
    assert "CANCEL" in [m.method for m in uas.received()]


def _arrivals(agents, duration):
    """[(monotonic time, agent, message)] for what C{agents} receive within C{duration}."""
    import select
    out = []
    deadline = time.monotonic() + duration
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out
        ready, _, _ = select.select([a.sock for a in agents], [], [], left)
        now = time.monotonic()
        for agent in agents:
            if agent.sock in ready:
                data, _ = agent.sock.recvfrom(65535)
                out.append((now, agent, parse_message(data)))


def test_no_response_at_all_gives_408(net):
    # RFC 3261 17.1.1.2 over UDP: the INVITE is sent again after T1, 2*T1,
    # 4*T1 ... until Timer B (64*T1) fires; then the caller gets a 408.
    net.node("--t1-ms", "50")  # Timer B = 64*T1 = 3.2 s
    silent = UDPAgent(net.host, 5070)
    caller = UDPAgent(net.host, 5080)
    try:
        caller.send(("INVITE sip:bob@{h}:5070 SIP/2.0\r\n"
                     "Via: SIP/2.0/UDP {h}:5080;branch=z9hG4bK{c};rport\r\n"
                     "Max-Forwards: 70\r\nFrom: <sip:alice@{h}>;tag=a\r\nTo: <sip:bob@{h}:5070>\r\n"
                     "Call-ID: {c}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").format(
                         h=net.host, c=uuid.uuid4().hex).encode(), (net.host, 5060))
        got = _arrivals([silent, caller], 4.5)
    finally:
        silent.close()
        caller.close()
    copies = [(t, m) for t, agent, m in got if agent is silent]
    assert copies and {m.method for _, m in copies} == {"INVITE"}
    assert len({m.to_bytes() for _, m in copies}) == 1  # the same request each time
    times = [t for t, _ in copies]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # Sent at 0, 0.05, 0.15, 0.35, 0.75, 1.55, 3.15 s; the next would be after Timer B.
    nominal = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6]
    assert len(gaps) == len(nominal), gaps
    for gap, want in zip(gaps, nominal):
        # Never early (beyond the jitter of receiving the previous copy:
        # a copy read late makes the next gap look short); late by a
        # loaded machine's scheduling at most.
        assert want - 0.015 <= gap <= want * 1.5 + 0.1, (gaps, nominal)
    finals = [(t, m.status) for t, agent, m in got if agent is caller and m.status >= 200]
    assert finals and {status for _, status in finals} == {408}
    waited = finals[0][0] - times[0]
    assert 3.2 - 0.02 <= waited <= 3.2 + 0.6, waited


def test_stateless_mode_call(net):
    net.node("--mode", "stateless")
    uas = net.sipp("uas", "-sn", "uas", "-p", "5070")
    uac = net.sipp("uac", "-sn", "uac", "%s:5070" % net.host, "-rsa", node_addr(net),
                   "-p", "5080", "-m", "3", "-r", "10")
    assert uac.wait() == 0
    uas.stop()
    received = uac.received()
    # No 100 of our own in stateless mode: the only 100s are the UAS's.
    assert all(m.header("server") != "sipcluster" for m in received)
    sent = {m.call_id: m for m in uac.sent() if getattr(m, "method", None) == "INVITE"}
    invites = [m for m in uas.received() if getattr(m, "method", None) == "INVITE"]
    assert len(invites) == 3
    for invite in invites:
        original = sent[invite.call_id]
        ours, theirs = invite.vias[0], invite.vias[1]
        # RFC 3261 16.11 / 16.6 step 8: a Via of the node's own, on top of
        # SIPp's, with a branch of our making (the same magic cookie, another value).
        assert (ours.transport, ours.host, ours.port) == ("UDP", net.host, 5060)
        assert ours.branch.startswith("z9hG4bK") and ours.branch != theirs.branch
        assert theirs.branch == original.top_via.branch and theirs.port == 5080
        assert len(invite.vias) == len(original.vias) + 1
        # 16.6 step 3: Max-Forwards one less than SIPp sent.
        assert invite.max_forwards == original.max_forwards - 1
    assert len({m.vias[0].branch for m in invites}) == 3  # one per call


def test_malformed_request_gets_400_on_the_wire(net):
    net.node()
    ua = UDPAgent(net.host, 5081)
    try:
        ua.send(("OPTIONS sip:x@{h}:5070 SIP/2.0\r\nVia: SIP/2.0/UDP {h}:5081;branch=z9hG4bKm;rport\r\n"
                 "From: <sip:a@{h}>;tag=1\r\nTo: <sip:x@{h}>\r\nCall-ID: m1\r\nCSeq: one OPTIONS\r\n"
                 "Content-Length: 0\r\n\r\n").format(h=net.host).encode(), (net.host, 5060))
        reply = ua.recv(2)
        assert reply.status == 400 and reply.reason == "Bad CSeq number"
        ua.send(b"\x16\x03\x01garbage", (net.host, 5060))
        ua.send(("OPTIONS sip:{h}:5060 SIP/3.0\r\nVia: SIP/2.0/UDP {h}:5081;branch=z9hG4bKv;rport\r\n"
                 "From: <sip:a@{h}>;tag=1\r\nTo: <sip:x@{h}>\r\nCall-ID: m2\r\nCSeq: 1 OPTIONS\r\n"
                 "Content-Length: 0\r\n\r\n").format(h=net.host).encode(), (net.host, 5060))
        reply = ua.recv(2)
        assert reply.status == 505
    finally:
        ua.close()


def test_workers_share_the_port_and_keep_their_transactions(net):
    node = net.node("--workers", "2")
    # The first process answers at once; wait for the second one too, or
    # the kernel has only one socket to spread calls over.
    node.wait_log("(stateful) listening on", count=2)
    uas = net.sipp("uas", "-sn", "uas", "-p", "5070")
    # One UDP socket per call: the kernel spreads the source addresses over
    # both workers (SO_REUSEPORT hashes the 4-tuple).
    uac = net.sipp("uac", "-sn", "uac", "%s:5070" % net.host, "-rsa", node_addr(net),
                   "-p", "5080", "-t", "un", "-m", "40", "-r", "40", "-max_socket", "100")
    assert uac.wait() == 0
    uas.stop()
    invites = [m for m in uas.received() if getattr(m, "method", None) == "INVITE"]
    assert len(invites) == 40  # no call lost, none duplicated
    private_ports = {m.top_via.port for m in invites}
    assert len(private_ports) == 2  # both workers handled calls
    assert 5060 not in private_ports  # responses go to the worker's own port
    assert {str(m.record_routes[0].uri) for m in invites} == {"sip:%s:5060;lr" % net.host}
