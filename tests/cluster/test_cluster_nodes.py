"""
Two real nodes and a real etcd: one logical registrar, failover on kill -9,
and the CLI's view, all on the wire.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from tests.cluster.etcdserver import EtcdServer, requires_etcd
from tests.integration.nodes import ROOT, NodeProcess, UDPAgent, next_host

pytestmark = requires_etcd


@pytest.fixture
def cluster(tmp_path):
    etcd = EtcdServer()
    nodes = []

    with started_nodes(tmp_path) as start:
        yield etcd, lambda name, *extra, **kw: start(name, [etcd.endpoint], *extra, **kw)
    etcd.stop()


@contextlib.contextmanager
def started_nodes(tmp_path):
    """start(name, endpoints, *args): a cluster node, stopped on exit."""
    nodes = []

    def start(name, endpoints, *extra, host=None):
        n = NodeProcess(host or next_host(), 5060, [
            "--store", "etcd", "--etcd", ",".join(endpoints), "--domain", "example.test",
            "--node-id", name, "--region", "eu"] + list(extra), tmp_path)
        nodes.append(n)
        return n
    try:
        yield start
    finally:
        for n in nodes:
            n.stop()


def cli(etcd, *args, expect=0):
    result = subprocess.run([sys.executable, "-m", "sipcluster.cli"] + list(args) + [
        "--etcd", etcd.endpoint, "--json"], capture_output=True, text=True, timeout=30,
        env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == expect, result.stderr
    return json.loads(result.stdout) if expect == 0 else result.stderr


def register(agent, node, user="alice"):
    data = ("REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP {a}:{p};branch=z9hG4bK{b};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:{u}@example.test>;tag=r\r\nTo: <sip:{u}@example.test>\r\n"
            "Call-ID: {c}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{u}@{a}:{p}>\r\nExpires: 600\r\n"
            "Content-Length: 0\r\n\r\n").format(a=agent.host, p=agent.port, b=uuid.uuid4().hex[:10],
                                                u=user, c=uuid.uuid4().hex)
    agent.send(data.encode(), (node.host, 5060))
    return agent.recv(5)


def invite(caller, node, user="alice"):
    data = ("INVITE sip:{u}@example.test SIP/2.0\r\nVia: SIP/2.0/UDP {a}:{p};branch=z9hG4bK{b};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:bob@example.test>;tag=i\r\nTo: <sip:{u}@example.test>\r\n"
            "Call-ID: {c}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").format(
                a=caller.host, p=caller.port, b=uuid.uuid4().hex[:10], u=user, c=uuid.uuid4().hex)
    caller.send(data.encode(), (node.host, 5060))


def wait_for(check, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_register_at_a_call_through_b_and_failover(cluster):
    etcd, node = cluster
    a = node("node-a")
    b = node("node-b")
    assert wait_for(lambda: {n["id"] for n in cli(etcd, "status")["nodes"]} == {"node-a", "node-b"})
    status = cli(etcd, "status")
    assert status["leader"] in ("node-a", "node-b")
    assert all(n["region"] == "eu" and n["state"] == "active" for n in status["nodes"])

    phone = UDPAgent(next_host())
    caller = UDPAgent(next_host())
    try:
        answer = register(phone, a)
        assert answer.status == 200  # only after etcd committed it
        regs = cli(etcd, "registrations", "sip:alice@example.test")
        assert [r["contact"] for r in regs] == ["sip:alice@%s:%d" % (phone.host, phone.port)]
        assert regs[0]["node"] == "node-a"

        # A call placed through node B reaches the phone registered at A.
        assert wait_for(lambda: _delivered(caller, phone, b), timeout=10)

        # kill -9 node A: it leaves the cluster within TTL + 1 s, and its
        # registration is still served by B.
        a.process.send_signal(signal.SIGKILL)
        a.process.wait()
        killed = time.monotonic()
        assert wait_for(lambda: {n["id"] for n in cli(etcd, "status")["nodes"]} == {"node-b"}, timeout=10)
        assert time.monotonic() - killed < 3 + 1 + 1.5  # TTL 3 s + 1 s, plus the CLI's own start-up
        assert cli(etcd, "leader")["leader"] == "node-b"
        assert _delivered(caller, phone, b)
    finally:
        phone.close()
        caller.close()


def _delivered(caller, phone, node, user="alice"):
    invite(caller, node, user)
    got = [m for m in phone.recv_all(1.0) if getattr(m, "method", None) == "INVITE"]
    return bool(got) and got[0].uri.user == user


def test_register_is_503_while_etcd_is_down_and_node_still_answers(cluster):
    etcd, node = cluster
    a = node("node-a")
    phone = UDPAgent(next_host())
    try:
        assert register(phone, a).status == 200
        etcd.pause()  # SIGSTOP: etcd hangs rather than refusing
        answer = register(phone, a, "carol")
        assert answer.status == 503 and answer.header("Retry-After")
        # The node itself is not wedged: OPTIONS is answered at once.
        from tests.integration.nodes import options_ping
        assert options_ping(a.host, 5060, timeout=1)
        etcd.resume()
        assert wait_for(lambda: register(phone, a, "carol").status == 200, timeout=15)
    finally:
        phone.close()
    # A node stops cleanly within seconds even while etcd hangs.
    etcd.pause()
    started = time.monotonic()
    a.stop()
    assert time.monotonic() - started < 8
    etcd.resume()


def test_drain_stops_new_calls_while_a_running_dialog_completes(cluster, tmp_path):
    etcd, node = cluster
    a = node("node-a", "--config", str(_config(tmp_path, "[cluster]\ndrain_retry_after_s = 7\n")))
    node("node-b")
    phone = UDPAgent(next_host())
    caller = UDPAgent(next_host())
    try:
        assert register(phone, a).status == 200
        # A call set up through A before the drain.
        call_id = uuid.uuid4().hex
        invite_text = _invite_text(caller, call_id)
        caller.send(invite_text.encode(), (a.host, 5060))
        inv = [m for m in phone.recv_all(1.0) if getattr(m, "method", None) == "INVITE"][0]
        ok = _answer(phone, inv, a, 200)
        assert wait_for(lambda: any(m.status == 200 for m in caller.recv_all(0.5)), timeout=5)

        assert cli(etcd, "drain", "node-a") == {"node": "node-a", "draining": True}
        assert wait_for(lambda: [n["state"] for n in cli(etcd, "status")["nodes"] if n["id"] == "node-a"] == ["draining"])
        # A new call is refused with 503 and the configured Retry-After.
        invite(caller, a)
        refused = [m for m in caller.recv_all(1.0) if getattr(m, "status", 0) >= 300]
        # (Retransmitted until ACKed: Timer G.)
        assert {(m.status, m.header("Retry-After")) for m in refused} == {(503, "7")}
        # The running dialog still ends normally through A.
        route = "<%s>" % ok.record_routes[0].uri
        bye = _bye(phone, caller, call_id, route, ok)
        caller.send(bye.encode(), (a.host, 5060))
        got = [m for m in phone.recv_all(1.0) if getattr(m, "method", None) == "BYE"]
        assert len({m.top_via.branch for m in got}) == 1  # one BYE (and its retransmissions)
        _answer(phone, got[0], a, 200)
        assert wait_for(lambda: any(m.status == 200 and m.cseq.method == "BYE"
                                    for m in caller.recv_all(0.5)), timeout=5)
        # Undrain: new calls are taken again.
        cli(etcd, "undrain", "node-a")
        assert wait_for(lambda: _delivered(caller, phone, a), timeout=10)
        # Draining a node that does not exist is an error.
        assert "no live node" in cli(etcd, "drain", "node-z", expect=1)
    finally:
        phone.close()
        caller.close()


def test_in_dialog_requests_reach_any_node_by_the_cluster_name(cluster, tmp_path):
    etcd, node = cluster
    config = _config(tmp_path, '[cluster]\nname = "sip.example.test"\n')
    a = node("node-a", "--config", str(config))
    b = node("node-b", "--config", str(config))
    phone = UDPAgent(next_host())
    caller = UDPAgent(next_host())
    try:
        assert register(phone, a).status == 200
        call_id = uuid.uuid4().hex
        caller.send(_invite_text(caller, call_id).encode(), (a.host, 5060))
        inv = [m for m in phone.recv_all(1.0) if getattr(m, "method", None) == "INVITE"][0]
        assert [str(r.uri) for r in inv.record_routes] == ["sip:sip.example.test;lr"]
        ok = _answer(phone, inv, a, 200)
        # The BYE arrives at node B (DNS for the cluster name may lead to
        # any node) and is routed by its Route set alone.
        bye = _bye(phone, caller, call_id, "<sip:sip.example.test;lr>", ok)
        caller.send(bye.encode(), (b.host, 5060))
        got = [m for m in phone.recv_all(1.0) if getattr(m, "method", None) == "BYE"]
        assert len({m.top_via.branch for m in got}) == 1 and not got[0].has("route")
        assert got[0].vias[0].host == b.host
    finally:
        phone.close()
        caller.close()


def _config(tmp_path, text):
    path = tmp_path / ("node-%s.toml" % uuid.uuid4().hex[:6])
    path.write_text(text)
    return path


def _invite_text(caller, call_id):
    return ("INVITE sip:alice@example.test SIP/2.0\r\nVia: SIP/2.0/UDP {a}:{p};branch=z9hG4bK{id};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:bob@example.test>;tag=i\r\nTo: <sip:alice@example.test>\r\n"
            "Call-ID: {id}\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@{a}:{p}>\r\nContent-Length: 0\r\n\r\n").format(
                a=caller.host, p=caller.port, id=call_id)


def _answer(phone, request, node, status):
    from sipcluster.sip.message import make_response
    response = make_response(request, status, to_tag="ph1")
    for value in request.values("record-route"):
        response.add("Record-Route", value)
    response.add("Contact", "<sip:alice@%s:%d>" % (phone.host, phone.port))
    phone.send(response, (node.host, 5060))
    return response


def test_concurrent_registers_for_overlapping_aors_on_two_nodes_lose_nothing(cluster, tmp_path):
    import shutil
    if shutil.which("sipp") is None:
        pytest.skip("SIPp not installed")
    from tests.integration.nodes import Sipp, scenario
    etcd, node = cluster
    nodes = [node("node-a"), node("node-b")]
    runs = []
    expected = {}
    for n, target in enumerate(nodes):
        lines = ["SEQUENTIAL"]
        for k in range(100):
            for j in range(5):
                port = 10000 + n * 1000 + k * 5 + j
                lines.append("u%d;%d;example.test" % (k, port))
                expected.setdefault("sip:u%d@example.test" % k, set()).add(port)
        users = tmp_path / ("users-%d.csv" % n)
        users.write_text("\n".join(lines) + "\n")
        runs.append(Sipp(tmp_path, "reg-%d" % n, [
            "-sf", scenario("register.xml"), "%s:5060" % target.host, "-i", target.host,
            "-p", "5090", "-inf", str(users), "-m", "500", "-r", "250", "-l", "500"]))
    try:
        assert [run.wait(60) for run in runs] == [0, 0]  # every REGISTER got its 200
    finally:
        for run in runs:
            run.stop()
    regs = cli(etcd, "registrations")
    stored = {}
    for r in regs:
        stored.setdefault(r["aor"], set()).add(int(r["contact"].rsplit(":", 1)[1]))
    assert stored == expected


def test_dialogs_are_shared_adopted_when_their_node_dies_and_end_with_a_cdr(cluster, tmp_path):
    etcd, node = cluster
    config = _config(tmp_path, '[cluster]\nname = "sip.example.test"\n')
    # B admits one dialog at a time: the adopted one counts.
    limited = _config(tmp_path, '[cluster]\nname = "sip.example.test"\nmax_dialogs = 1\n')
    a = node("node-a", "--config", str(config))
    b = node("node-b", "--config", str(limited))
    phone = UDPAgent(next_host())
    caller = UDPAgent(next_host())
    try:
        assert register(phone, a).status == 200
        call_id = uuid.uuid4().hex
        caller.send(_invite_text(caller, call_id).encode(), (a.host, 5060))
        inv = [m for m in phone.recv_all(1.0) if getattr(m, "method", None) == "INVITE"][0]
        ok = _answer(phone, inv, a, 200)
        assert wait_for(lambda: [c["call_id"] for c in cli(etcd, "calls")] == [call_id])
        (call,) = cli(etcd, "calls")
        assert call["owner"] == "node-a" and call["from"] == "sip:bob@example.test"
        assert call["route_set"] == ["<sip:sip.example.test;lr>"]

        a.process.send_signal(signal.SIGKILL)
        a.process.wait()
        # node-b takes the dialog over once node-a's lease is gone.
        assert wait_for(lambda: [(c["owner"], c.get("adopted_from")) for c in cli(etcd, "calls")]
                        == [("node-b", "node-a")], timeout=15)
        caller.recv_all(0.3)  # what the first call left
        invite(caller, b, "alice")
        refused = [m for m in caller.recv_all(1.0) if getattr(m, "status", 0) >= 200]
        # (Retransmitted while nobody ACKs it.)
        assert {(m.status, m.reason) for m in refused} == {(503, "Service Unavailable (call limit reached)")}

        bye = _bye(phone, caller, call_id, "<sip:sip.example.test;lr>", ok)
        caller.send(bye.encode(), (b.host, 5060))
        got = [m for m in phone.recv_all(1.0) if getattr(m, "method", None) == "BYE"]
        _answer(phone, got[0], b, 200)
        assert wait_for(lambda: cli(etcd, "calls") == [], timeout=10)
        assert wait_for(lambda: '"state": "terminated"' in b.log(tail=None) and call_id in b.log(tail=None))
        cdr = [line for line in b.log(tail=None).splitlines() if "sipcluster.cdr" in line]
        assert len(cdr) == 1 and '"adopted_from": "node-a"' in cdr[0] and '"end_status": 200' in cdr[0]
        # The adopted dialog is over: B admits a new call again.
        assert _delivered(caller, phone, b)
    finally:
        phone.close()
        caller.close()


def test_natted_phone_registered_at_a_is_called_through_a_from_b(cluster):
    etcd, node = cluster
    a = node("node-a")
    b = node("node-b")
    phone = UDPAgent(next_host())
    caller = UDPAgent(next_host())
    try:
        data = ("REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP {a}:{p};branch=z9hG4bKn{b};rport\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=r\r\nTo: <sip:alice@example.test>\r\n"
                "Call-ID: {c}\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@192.168.1.20:5060>\r\n"
                "Expires: 600\r\nContent-Length: 0\r\n\r\n").format(
                    a=phone.host, p=phone.port, b=uuid.uuid4().hex[:8], c=uuid.uuid4().hex)
        phone.send(data.encode(), (a.host, 5060))
        assert phone.recv(5).status == 200
        assert wait_for(lambda: {n["id"] for n in cli(etcd, "status")["nodes"]} == {"node-a", "node-b"})
        invite(caller, b)
        got = [m for m in phone.recv_all(1.5) if getattr(m, "method", None) == "INVITE"]
        assert got, "the phone behind NAT got nothing"
        # It came over A, the node holding the phone's NAT binding, with the
        # Request-URI the phone registered (no alias left).
        assert got[0].top_via.host == a.host
        assert [v.host for v in got[0].vias[:2]] == [a.host, b.host]
        assert str(got[0].uri) == "sip:alice@192.168.1.20:5060"
    finally:
        phone.close()
        caller.close()


def _cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _node_with_leader_hook(node, tmp_path, name="node-a"):
    """A node whose leader hook logs each call's argument to hook.log."""
    hook_log = tmp_path / "hook.log"
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\necho \"$1\" >> %s\n" % hook_log)
    hook.chmod(0o755)
    return node(name, "--config", str(_config(tmp_path, '[cluster]\nleader_hook = "%s"\n' % hook))), hook_log


def test_etcd_restart_nodes_reconnect_without_burning_cpu_and_lose_nothing(cluster, tmp_path):
    etcd, node = cluster
    a, hook_log = _node_with_leader_hook(node, tmp_path)
    b = node("node-b")
    phone = UDPAgent(next_host())
    phone2 = UDPAgent(next_host())
    caller = UDPAgent(next_host())
    try:
        assert register(phone, a).status == 200
        assert wait_for(lambda: hook_log.exists() and hook_log.read_text() == "acquire\n")
        # B's cache is fed by its watch: wait until the binding has reached it
        # (a write acknowledged a millisecond before etcd dies may not have).
        assert wait_for(lambda: _delivered(caller, phone, b), timeout=10)
        etcd.kill()
        before = [_cpu_seconds(n.process.pid) for n in (a, b)]
        time.sleep(3)
        spent = [_cpu_seconds(n.process.pid) - t for n, t in zip((a, b), before)]
        assert max(spent) < 0.5, spent  # no spinning watch threads
        assert register(phone2, b, "dave").status == 503  # not stored, not acknowledged
        assert _delivered(caller, phone, b)  # lookups go on from the cache
        etcd.start()
        # Right after the restart: a binding written through A is seen by B.
        assert wait_for(lambda: register(phone2, a, "dave").status == 200, timeout=20)
        assert wait_for(lambda: _delivered(caller, phone2, b, user="dave"), timeout=10)
        # Nothing lost, both nodes back in the cluster.
        regs = {r["aor"] for r in cli(etcd, "registrations")}
        assert {"sip:alice@example.test", "sip:dave@example.test"} <= regs
        assert wait_for(lambda: {n["id"] for n in cli(etcd, "status")["nodes"]} == {"node-a", "node-b"}, 20)
    finally:
        phone.close()
        phone2.close()
        caller.close()


def test_a_paused_leader_steps_down_and_comes_back_as_follower(cluster, tmp_path):
    """
    SIGSTOP the leader beyond its lease: B takes over; when A runs again
    its leader hook releases (it no longer holds leadership) and it rejoins
    under B, so the hook never stays "acquired" on two nodes.
    """
    etcd, node = cluster
    a, hook_log = _node_with_leader_hook(node, tmp_path)
    assert wait_for(lambda: hook_log.exists() and hook_log.read_text() == "acquire\n")
    b = node("node-b")
    assert wait_for(lambda: len(cli(etcd, "status")["nodes"]) == 2)
    os.kill(a.process.pid, signal.SIGSTOP)
    try:
        assert wait_for(lambda: cli(etcd, "leader")["leader"] == "node-b", timeout=10)
    finally:
        os.kill(a.process.pid, signal.SIGCONT)
    assert wait_for(lambda: hook_log.read_text() == "acquire\nrelease\n", timeout=10)
    assert wait_for(lambda: {n["id"] for n in cli(etcd, "status")["nodes"]} == {"node-a", "node-b"}, 15)
    assert cli(etcd, "leader")["leader"] == "node-b"
    time.sleep(1.5)  # and it stays so
    assert hook_log.read_text() == "acquire\nrelease\n"


def _bye(phone, caller, call_id, route, ok):
    """The caller's BYE for the call answered by C{ok}, with one Route."""
    return ("BYE sip:alice@{p}:{pp} SIP/2.0\r\nVia: SIP/2.0/UDP {c}:{cp};branch=z9hG4bK{b};rport\r\n"
            "Route: {r}\r\nMax-Forwards: 70\r\nFrom: <sip:bob@example.test>;tag=i\r\n"
            "To: {to}\r\nCall-ID: {id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n").format(
                p=phone.host, pp=phone.port, c=caller.host, cp=caller.port, b=uuid.uuid4().hex[:10],
                id=call_id, r=route, to=ok.header("to"))
