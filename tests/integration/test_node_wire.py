"""
What README.rst promises of a real node, checked on the wire: a twistd node
on a loopback address of its own, bare UDP and TCP agents of the test's
own, assertions on the bytes that came back (or did not).
"""

import json
import socket
import struct
import time
import uuid

import pytest

from sipcluster.sip.message import make_response
from tests.integration.nodes import UDPAgent
from tests.integration.wire import (
    TCPConnection, TCPListener, Twistd, UDP6Agent, free_port, request, requests_received,
    wait_until)


def config(net, text):
    path = net.tmp / ("node-%s.toml" % uuid.uuid4().hex[:6])
    path.write_text(text)
    return str(path)


def node_addr(net):
    return (net.host, 5060)


# -- RFC 3261 16.6 step 4: a transport change is record-routed twice ------------------


def test_udp_in_tcp_out_is_record_routed_once_per_side(net):
    net.node()
    callee = TCPListener(net.host)
    caller = UDPAgent(net.host)
    try:
        caller.send(request("INVITE", "sip:bob@%s:%d;transport=tcp" % (net.host, callee.port),
                            caller.host, caller.port).encode(), node_addr(net))
        conn = callee.accept(5)
        assert conn is not None, "the node never connected to the TCP callee"
        got = conn.recv(5)
        conn.close()
    finally:
        callee.close()
        caller.close()
    assert got.method == "INVITE"
    assert got.top_via.transport == "TCP" and got.top_via.host == net.host
    # The entry facing the callee (TCP) first, then the one facing the
    # caller (UDP): each side routes back over its own transport.
    assert [str(r.uri) for r in got.record_routes] == [
        "sip:%s:5060;transport=tcp;lr" % net.host, "sip:%s:5060;lr" % net.host]


def test_udp_in_udp_out_is_record_routed_once(net):
    net.node()
    callee = UDPAgent(net.host)
    caller = UDPAgent(net.host)
    try:
        caller.send(request("INVITE", "sip:bob@%s:%d" % (net.host, callee.port),
                            caller.host, caller.port).encode(), node_addr(net))
        got, = [m for m in requests_received(callee, 1.0) if m.method == "INVITE"][:1]
    finally:
        callee.close()
        caller.close()
    assert [str(r.uri) for r in got.record_routes] == ["sip:%s:5060;lr" % net.host]


def test_tcp_next_hop_that_refuses_the_connection_gives_the_caller_500_at_once(net):
    # RFC 3261 8.1.3.1 / 16.7 step 1: a transport error on a branch counts
    # as a 503 from it, which is not passed on as such (16.7 step 6: 500);
    # the caller gets it at once, not a 408 after Timer B.
    net.node()
    refused = free_port(net.host)  # nobody listens there
    caller = UDPAgent(net.host)
    try:
        caller.send(request("INVITE", "sip:bob@%s:%d;transport=tcp" % (net.host, refused),
                            caller.host, caller.port).encode(), node_addr(net))
        finals = [m for m in caller.recv_all(1.5) if m.status and m.status >= 200]
    finally:
        caller.close()
    assert finals and {m.status for m in finals} == {500}
    assert finals[0].to_tag


# -- TCP registrations are reached over their own connection (RFC 3261 18.2.2) ------


def test_invite_to_a_tcp_registration_comes_over_the_registering_connection(net):
    net.node("--domain", "example.test")
    phone = TCPConnection.connect(net.host, 5060)
    caller = UDPAgent(net.host)
    try:
        # The Contact names the phone's own end of the connection: an
        # ephemeral port nobody listens on, so only that connection leads there.
        contact = "<sip:alice@%s:%d;transport=tcp>" % (phone.host, phone.port)
        phone.send(request("REGISTER", "sip:example.test", phone.host, phone.port, "TCP",
                           to="<sip:alice@example.test>", extra="Contact: %s\r\nExpires: 600\r\n" % contact)
                   .replace("Contact: <sip:alice@%s:%d>\r\n" % (phone.host, phone.port), "", 1))
        answer = phone.recv(5)
        assert answer is not None and answer.status == 200
        assert [str(c.uri) for c in answer.contacts] == [contact[1:-1]]
        caller.send(request("INVITE", "sip:alice@example.test", caller.host, caller.port).encode(),
                    node_addr(net))
        got = phone.recv(5)
        assert got is not None, "the INVITE did not come over the registering connection"
        assert got.method == "INVITE" and got.uri.user == "alice"
        assert got.top_via.transport == "TCP" and got.top_via.host == net.host
        # The phone answers over the same connection; the caller hears it.
        phone.send(make_response(got, 486, to_tag="busy"))
        finals = [m.status for m in caller.recv_all(1.0) if m.status and m.status >= 200]
        assert finals and set(finals) == {486}
    finally:
        phone.close()
        caller.close()


# -- sip.advertise ------------------------------------------------------------------


def test_advertised_address_is_in_via_and_record_route_and_taken_as_ours(net):
    net.node("--config", config(net, '[sip]\nadvertise = "192.0.2.10:5099"\n'))
    callee = UDPAgent(net.host)
    caller = UDPAgent(net.host)
    try:
        caller.send(request("INVITE", "sip:bob@%s:%d" % (net.host, callee.port),
                            caller.host, caller.port).encode(), node_addr(net))
        invite = [m for m in requests_received(callee, 1.0) if m.method == "INVITE"][0]
        assert (invite.top_via.host, invite.top_via.port) == ("192.0.2.10", 5099)
        assert [str(r.uri) for r in invite.record_routes] == ["sip:192.0.2.10:5099;lr"]
        # An in-dialog request routed to the advertised address is ours:
        # that Route entry is consumed (RFC 3261 16.4), not followed.
        bye = request("BYE", "sip:bob@%s:%d" % (net.host, callee.port), caller.host, caller.port,
                      to="<sip:bob@%s>;tag=b1" % net.host, cseq=2,
                      extra="Route: <sip:192.0.2.10:5099;lr>\r\n")
        caller.send(bye.encode(), node_addr(net))
        got = [m for m in requests_received(callee, 1.0) if m.method == "BYE"]
        assert got and not got[0].has("route")
        assert (got[0].top_via.host, got[0].top_via.port) == ("192.0.2.10", 5099)
    finally:
        callee.close()
        caller.close()


# -- registrar.enabled = false -------------------------------------------------------


def test_disabled_registrar_answers_register_as_a_plain_proxy_and_stores_nothing(net):
    net.node("--domain", "example.test", "--config", config(net, "[registrar]\nenabled = false\n"))
    phone = UDPAgent(net.host)
    caller = UDPAgent(net.host)
    try:
        phone.send(request("REGISTER", "sip:example.test", phone.host, phone.port,
                           to="<sip:alice@example.test>", extra="Expires: 600\r\n").encode(),
                   node_addr(net))
        answer = phone.recv(3)
        # A request for our domain with no user part and no registrar
        # behind it: 404, and no binding listed.
        assert answer is not None and answer.status == 404
        assert not answer.has("contact")
        caller.send(request("INVITE", "sip:alice@example.test", caller.host, caller.port).encode(),
                    node_addr(net))
        finals = [m.status for m in caller.recv_all(1.0) if m.status and m.status >= 200]
        assert finals and set(finals) == {404}
        assert requests_received(phone, 0.3) == []
    finally:
        phone.close()
        caller.close()


# -- nat.stun ------------------------------------------------------------------------


def _stun_binding(agent, addr, timeout):
    txid = uuid.uuid4().bytes[:12]
    agent.sock.sendto(struct.pack("!HHI12s", 1, 0, 0x2112A442, txid), addr)
    agent.sock.settimeout(timeout)
    try:
        data, _ = agent.sock.recvfrom(2048)
    except socket.timeout:
        return None
    kind, _, cookie, rtxid = struct.unpack_from("!HHI12s", data)
    return kind, cookie, rtxid == txid


@pytest.mark.parametrize("stun", [False, True])
def test_stun_binding_is_answered_only_when_nat_stun_is_on(net, stun):
    net.node("--config", config(net, "[nat]\nstun = %s\n" % ("true" if stun else "false")))
    agent = UDPAgent(net.host)
    try:
        answer = _stun_binding(agent, node_addr(net), 1.0)
        if stun:
            assert answer == (0x0101, 0x2112A442, True)
        else:
            assert answer is None
        # Either way the node is alive and still speaks SIP on that port.
        from tests.integration.nodes import options_ping
        assert options_ping(net.host, 5060, timeout=2)
    finally:
        agent.close()


# -- sip.max_message_size ------------------------------------------------------------


def _padded(base, size):
    return base.replace("Max-Forwards:", "X-Pad: %s\r\nMax-Forwards:" % ("p" * (size - len(base) - 9)))


def test_request_over_max_message_size_is_not_forwarded_and_one_at_the_limit_is(net):
    net.node("--config", config(net, "[sip]\nmax_message_size = 1024\n"))
    callee = UDPAgent(net.host)
    caller = UDPAgent(net.host)
    try:
        base = request("OPTIONS", "sip:bob@%s:%d" % (net.host, callee.port), caller.host, caller.port)
        at_limit, over = _padded(base, 1024), _padded(base, 1025)
        assert (len(at_limit), len(over)) == (1024, 1025)
        caller.send(over.encode(), node_addr(net))
        assert requests_received(callee, 0.5) == []
        caller.send(at_limit.encode(), node_addr(net))
        got = requests_received(callee, 1.0)  # (with Timer E retransmissions)
        assert got and {(m.method, m.top_via.branch) for m in got} == {("OPTIONS", got[0].top_via.branch)}
    finally:
        callee.close()
        caller.close()


def test_request_over_max_message_size_is_answered_513(net):
    net.node("--config", config(net, "[sip]\nmax_message_size = 1024\n"))
    caller = UDPAgent(net.host)
    try:
        over = _padded(request("OPTIONS", "sip:bob@%s:5999" % net.host, caller.host, caller.port), 1100)
        caller.send(over.encode(), node_addr(net))
        answer = caller.recv(2)
        assert answer is not None and answer.status == 513
    finally:
        caller.close()


# -- IPv6 ------------------------------------------------------------------------------


def _has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="::1 is not configured on this machine")
def test_ipv6_node_answers_and_forwards_over_ipv6(tmp_path):
    port = free_port("::1", socket.AF_INET6)
    node = Twistd(["--listen", "udp:[::1]:%d" % port, "--listen", "tcp:[::1]:%d" % port,
                   "--node-id", "v6"], tmp_path, "v6")
    caller = UDP6Agent()
    callee = UDP6Agent()
    try:
        def options_answered():
            if node.process.poll() is not None:
                raise AssertionError("node exited: %s" % node.log())
            caller.send(request("OPTIONS", "sip:[::1]:%d" % port, "[::1]", caller.port).encode(),
                        ("::1", port))
            reply = caller.recv(0.3)
            return reply is not None and reply.status == 200
        assert wait_until(options_answered, timeout=15), node.log()
        caller.recv_all(0.2)
        caller.send(request("INVITE", "sip:bob@[::1]:%d" % callee.port, "[::1]", caller.port).encode(),
                    ("::1", port))
        got = [m for m in requests_received(callee, 1.0) if m.method == "INVITE"]
        assert got, "nothing forwarded over IPv6"
        assert (got[0].top_via.host, got[0].top_via.port) == ("[::1]", port)
        assert [str(r.uri) for r in got[0].record_routes] == ["sip:[::1]:%d;lr" % port]
        assert got[0].vias[1].received == "::1" and got[0].vias[1].rport == caller.port
        statuses = [m.status for m in caller.recv_all(0.5)]
        assert 100 in statuses
    finally:
        caller.close()
        callee.close()
        node.stop()


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="::1 is not configured on this machine")
def test_dual_stack_node_forwards_to_ipv6_with_its_ipv6_address_in_via(net):
    port = free_port("::1", socket.AF_INET6)
    net.node("--listen", "udp:[::1]:%d" % port)
    caller = UDPAgent(net.host)
    callee = UDP6Agent()
    try:
        caller.send(request("INVITE", "sip:bob@[::1]:%d" % callee.port, caller.host, caller.port).encode(),
                    node_addr(net))
        got = [m for m in requests_received(callee, 1.0) if m.method == "INVITE"]
        assert got, "nothing forwarded over IPv6"
        # RFC 3261 18.2.1: the callee answers to the Via's sent-by, which
        # must be reachable over the family it was sent on; RFC 5658: one
        # Record-Route per side when the family changes.
        assert (got[0].top_via.host, got[0].top_via.port) == ("[::1]", port)
        assert [str(r.uri) for r in got[0].record_routes] == [
            "sip:[::1]:%d;lr" % port, "sip:%s:5060;lr" % net.host]
    finally:
        caller.close()
        callee.close()


# -- a configuration error -----------------------------------------------------------


def _bad_config_node(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[timers]\nt1_ms = "fast"\n')
    node = Twistd(["--config", str(path)], tmp_path, "bad")
    try:
        code = node.wait(30)
    finally:
        node.stop()
    out, err = node.output()
    return path, code, out, err


def test_bad_config_file_stops_the_node_with_a_line_naming_file_key_and_expectation(tmp_path):
    path, code, out, err = _bad_config_node(tmp_path)
    assert code != 0
    errors = [line for line in (out + err).splitlines() if "config error" in line]
    assert len(errors) == 1, out + err
    assert errors[0].endswith(
        'config error: %s: timers.t1_ms: expected an integer from 10 to 60000, got "fast"' % path)


def test_bad_config_file_prints_nothing_but_that_line(tmp_path):
    _, code, out, err = _bad_config_node(tmp_path)
    assert code != 0 and len((out + err).strip().splitlines()) == 1, out + err


# -- cluster.dialog_max_s --------------------------------------------------------------


def test_dialog_older_than_dialog_max_s_ends_as_expired_with_a_cdr(net):
    # 60 s is the smallest dialog_max_s allowed, and dialogs are swept
    # every 30 s from start-up: this test waits about 90 s.
    cdr = net.tmp / "cdr.jsonl"
    node = net.node("--config", config(
        net, '[cluster]\ndialog_max_s = 60\n[accounting]\ncdr_file = "%s"\n' % cdr))
    started_at = time.monotonic()
    callee = UDPAgent(net.host)
    caller = UDPAgent(net.host)
    try:
        call_id = uuid.uuid4().hex
        caller.send(request("INVITE", "sip:bob@%s:%d" % (net.host, callee.port), caller.host,
                            caller.port, call_id=call_id).encode(), node_addr(net))
        invite = [m for m in requests_received(callee, 1.0) if m.method == "INVITE"][0]
        ok = make_response(invite, 200, to_tag="callee")
        for value in invite.values("record-route"):
            ok.add("Record-Route", value)
        ok.add("Contact", "<sip:bob@%s:%d>" % (callee.host, callee.port))
        callee.send(ok, node_addr(net))
        answered = [m for m in caller.recv_all(1.0) if m.status == 200]
        assert answered, "the caller never got the 200"
        confirmed = time.time()
        # No BYE ever comes.  Before 60 s nothing is written...
        time.sleep(max(0.0, 55 - (time.monotonic() - started_at)))
        assert not cdr.exists() or cdr.read_text() == ""
        # ... and by the first sweep past 60 s the dialog ended as expired.
        assert wait_until(lambda: cdr.exists() and cdr.read_text().strip(), timeout=45)
        (record,) = [json.loads(line) for line in cdr.read_text().splitlines()]
        assert record["call_id"] == call_id and record["state"] == "expired"
        assert record["end_status"] is None and record["ended_by"] is None
        assert 60 <= record["duration"] < 95
        assert record["started"] == pytest.approx(confirmed, abs=2)
    finally:
        callee.close()
        caller.close()
