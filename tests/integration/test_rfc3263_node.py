"""
RFC 3263 on a real twistd node: next hops named by host name resolved
through a real DNS server (dnsmasq, the test's own, on loopback), SRV order
with failover to the next target within one transaction (4.3) on a 503 and
on a timeout, a target that dies mid-call, and the transport NAPTR chooses.
"""

import os
import socket
import time
import uuid

import pytest

from tests.integration.nodes import UDPAgent, next_host
from tests.integration.test_pipeline_wire import final
from tests.integration.test_rfc3263_dnsmasq import DNSMASQ, PORT, Dnsmasq

pytestmark = pytest.mark.skipif(
    DNSMASQ is None and not os.environ.get("CI"),
    reason="dnsmasq (Debian dnsmasq-base) is not installed; ops/test installs it")


def request(caller, method, uri, call_id=None, cseq=1, to_tag=None, route=None):
    return ("{m} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {a}:{p};branch=z9hG4bK{b};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=a1\r\n"
            "To: <sip:bob@gw.example.test>{tt}\r\nCall-ID: {c}\r\nCSeq: {n} {m}\r\n"
            "{route}Contact: <sip:alice@{a}:{p}>\r\nContent-Length: 0\r\n\r\n").format(
                m=method, uri=uri, a=caller.host, p=caller.port, b=uuid.uuid4().hex[:10],
                c=call_id or uuid.uuid4().hex, n=cseq, tt=";tag=%s" % to_tag if to_tag else "",
                route="Route: %s\r\n" % route if route else "").encode()


def answer(agent, request_message, status, node, to_tag="gw"):
    from sipcluster.sip.message import make_response
    response = make_response(request_message, status, to_tag=to_tag)
    for value in request_message.values("record-route"):
        response.add("Record-Route", value)
    response.add("Contact", "<sip:bob@%s:%d>" % (agent.host, agent.port))
    agent.send(response, (node.host, 5060))


def invites(agent, timeout, method="INVITE"):
    return [m for m in agent.recv_all(timeout) if getattr(m, "method", None) == method]


@pytest.fixture
def gateways(net, tmp_path):
    """Two gateways behind one name (SRV priority 10, then 20) and a node asking a dnsmasq."""
    gw1, gw2 = UDPAgent(net.host), UDPAgent(net.host)
    dns_host = next_host()
    server = Dnsmasq(dns_host, [
        "--srv-host=_sip._udp.gw.example.test,gw1.example.test,%d,10,10" % gw1.port,
        "--srv-host=_sip._udp.gw.example.test,gw2.example.test,%d,20,10" % gw2.port,
        "--host-record=gw1.example.test,%s" % net.host,
        "--host-record=gw2.example.test,%s" % net.host,
    ], str(tmp_path / "dnsmasq.log"))
    config = tmp_path / "node.toml"
    config.write_text('[dns]\nservers = ["%s:%d"]\n' % (dns_host, PORT))
    node = net.node("--config", str(config), "--t1-ms", "50")
    caller = UDPAgent(net.host)
    yield node, caller, gw1, gw2, server
    for agent in (caller, gw1, gw2):
        agent.close()
    server.stop()


def test_a_503_from_the_first_srv_target_goes_on_to_the_next(gateways):
    node, caller, gw1, gw2, _ = gateways
    caller.send(request(caller, "INVITE", "sip:bob@gw.example.test"), (node.host, 5060))
    first = invites(gw1, 0.3)[0]  # (T1 = 50 ms: retransmitted until answered)
    answer(gw1, first, 503, node)
    second = invites(gw2, 0.5)[0]
    assert second.top_via.branch != first.top_via.branch  # a new transaction
    assert str(second.uri) == "sip:bob@gw.example.test"
    answer(gw2, second, 200, node)
    finals = [m.status for m in caller.recv_all(1.0) if m.status >= 200]
    assert finals[:1] == [200] and 503 not in finals and 500 not in finals


def test_a_silent_first_target_times_out_to_the_next_and_so_does_a_bye_after_it_died(gateways):
    node, caller, gw1, gw2, _ = gateways
    call_id = uuid.uuid4().hex
    # The call is set up through gw1 (alive then).
    caller.send(request(caller, "INVITE", "sip:bob@gw.example.test", call_id), (node.host, 5060))
    first = invites(gw1, 0.3)[0]
    answer(gw1, first, 200, node)
    ok = final(caller)
    assert ok.status == 200
    # gw1 dies mid-call.  The BYE's next hop is the name again (the
    # callee's Contact here is the gateway name, as trunks give): Timer F
    # (64*T1 = 3.2 s) on gw1, then gw2 in the same transaction.
    started = time.monotonic()
    caller.send(request(caller, "BYE", "sip:bob@gw.example.test", call_id, cseq=2, to_tag="gw",
                        route=ok.header("record-route")), (node.host, 5060))
    byes = []
    while not byes and time.monotonic() - started < 6:
        message = gw2.recv(6)
        if getattr(message, "method", None) == "BYE":
            byes.append(message)
    assert byes, "the BYE never reached the second target"
    assert 3.1 <= time.monotonic() - started <= 4.5  # Timer F, not before
    assert len(invites(gw1, 0.1, method="BYE")) >= 1  # gw1 got it first (and its retransmissions)
    answer(gw2, byes[0], 200, node)
    assert final(caller).status == 200


def test_naptr_chooses_tcp_and_the_via_says_so(net, tmp_path):
    listener = socket.socket()
    listener.bind((net.host, 0))
    listener.listen(2)
    listener.settimeout(5)
    port = listener.getsockname()[1]
    dns_host = next_host()
    server = Dnsmasq(dns_host, [
        "--naptr-record=tcpgw.example.test,10,10,S,SIP+D2T,,_sip._tcp.tcpgw.example.test",
        "--srv-host=_sip._tcp.tcpgw.example.test,t1.example.test,%d,10,10" % port,
        "--host-record=t1.example.test,%s" % net.host,
    ], str(tmp_path / "dnsmasq.log"))
    config = tmp_path / "node.toml"
    config.write_text('[dns]\nservers = ["%s:%d"]\n' % (dns_host, PORT))
    node = net.node("--config", str(config))
    caller = UDPAgent(net.host)
    try:
        caller.send(request(caller, "INVITE", "sip:bob@tcpgw.example.test"), (node.host, 5060))
        conn, _ = listener.accept()
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65535)
        from sipcluster.sip.message import parse_message
        invite = parse_message(data)
        assert invite.method == "INVITE" and invite.top_via.transport == "TCP"
        # RFC 5658: one Record-Route for the UDP side, one for the TCP side.
        assert [r.uri.transport for r in invite.record_routes] == ["tcp", None]
        conn.close()
    finally:
        listener.close()
        caller.close()
        server.stop()


def test_a_name_that_does_not_resolve_is_502(gateways):
    node, caller, _, _, _ = gateways
    caller.send(request(caller, "INVITE", "sip:bob@nowhere.example.test"), (node.host, 5060))
    assert final(caller).status == 502


def test_a_response_whose_connection_is_gone_reaches_the_via_name(net, tmp_path):
    # RFC 3261 18.2.2 then RFC 3263 5: the caller's TCP connection closed
    # before the answer; the received address does not take a new one; the
    # Via's sent-by name, resolved, leads to where it listens.
    from tests.integration.test_pipeline_wire import TCPAgent
    listening = next_host()
    listener = socket.socket()
    listener.bind((listening, 0))
    listener.listen(2)
    listener.settimeout(6)
    port = listener.getsockname()[1]
    dns_host = next_host()
    server = Dnsmasq(dns_host, ["--host-record=ua.example.test,%s" % listening],
                     str(tmp_path / "dnsmasq.log"))
    config = tmp_path / "node.toml"
    config.write_text('[dns]\nservers = ["%s:%d"]\n' % (dns_host, PORT))
    node = net.node("--config", str(config))
    callee = UDPAgent(net.host)
    caller = TCPAgent(net.host, node)
    try:
        caller.send(("INVITE sip:bob@%s:%d SIP/2.0\r\n"
                     "Via: SIP/2.0/TCP ua.example.test:%d;branch=z9hG4bK%s\r\n"
                     "Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=a\r\n"
                     "To: <sip:bob@example.test>\r\nCall-ID: %s\r\nCSeq: 1 INVITE\r\n"
                     "Content-Length: 0\r\n\r\n" % (callee.host, callee.port, port,
                                                   uuid.uuid4().hex[:10], uuid.uuid4().hex)).encode())
        assert caller.recv(3).status == 100
        invite = invites(callee, 1.0)[0]
        assert invite.vias[1].received == net.host  # where it came from
        caller.close()  # the connection is gone
        time.sleep(0.2)
        answer(callee, invite, 486, node)
        conn, _ = listener.accept()
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65535)
        from sipcluster.sip.message import parse_message
        assert parse_message(data).status == 486
        conn.close()
    finally:
        listener.close()
        callee.close()
        server.stop()
