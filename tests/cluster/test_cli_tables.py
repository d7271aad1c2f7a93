"""
The C{sipcluster} command's human-readable output (status, registrations,
calls, leader) against a real etcd and two real nodes, and a draining node
configured with C{cluster.drain_action = "redirect"}: what it answers on
the wire.
"""

import os
import subprocess
import sys
import uuid

from tests.cluster.etcdserver import requires_etcd
from tests.cluster.test_cluster_nodes import (  # noqa: F401 (cluster is a fixture)
    _answer, _bye, _config, _invite_text, cli, cluster, register, wait_for)
from tests.integration.nodes import ROOT, UDPAgent, next_host

pytestmark = requires_etcd


def text_cli(etcd, *args):
    """The command's plain output (no --json), after checking it succeeded."""
    result = subprocess.run([sys.executable, "-m", "sipcluster.cli"] + list(args) + [
        "--etcd", etcd.endpoint], capture_output=True, text=True, timeout=30,
        env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    return result.stdout


def table(text):
    """
    The rows of a table printed with aligned columns, as dicts keyed by the
    header: each column starts where its header does.
    """
    lines = text.rstrip("\n").split("\n")
    header = lines[0]
    names = [n.strip() for n in header.split("  ") if n.strip()]
    # Names may hold one space ("REACHED AT"); find each after the previous.
    starts, at = [], 0
    for name in names:
        at = header.index(name, at)
        starts.append(at)
        at += len(name)
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
        rows.append(dict(zip(names, cells)))
    return names, rows


def test_status_registrations_calls_and_leader_tables(cluster, tmp_path):
    etcd, node = cluster
    a = node("node-a")
    b = node("node-b")
    phone = UDPAgent(next_host())
    caller = UDPAgent(next_host())
    try:
        assert register(phone, a).status == 200
        call_id = uuid.uuid4().hex
        caller.send(_invite_text(caller, call_id).encode(), (a.host, 5060))
        inv = [m for m in phone.recv_all(1.0) if getattr(m, "method", None) == "INVITE"][0]
        ok = _answer(phone, inv, a, 200)
        assert wait_for(lambda: [c["call_id"] for c in cli(etcd, "calls")] == [call_id])
        # Load and dialog counts are published every 5 s.
        assert wait_for(lambda: {n["id"]: n.get("dialogs") for n in cli(etcd, "status")["nodes"]}
                        == {"node-a": 1, "node-b": 0}, timeout=15)
        leader = cli(etcd, "leader")["leader"]
        assert leader in ("node-a", "node-b")

        names, rows = table(text_cli(etcd, "status"))
        assert names == ["NODE", "ADDRESSES", "REGION", "STATE", "LEADER", "UPTIME", "LOAD",
                         "BINDINGS", "DIALOGS"]
        by_node = {row["NODE"]: row for row in rows}
        assert set(by_node) == {"node-a", "node-b"}
        for name, n in (("node-a", a), ("node-b", b)):
            row = by_node[name]
            assert row["ADDRESSES"] == "udp:%s:5060,tcp:%s:5060" % (n.host, n.host)
            assert (row["REGION"], row["STATE"]) == ("eu", "active")
            assert row["LEADER"] == ("yes" if name == leader else "")
            minutes, _, seconds = row["UPTIME"].partition("m")
            assert minutes.isdigit() and seconds.endswith("s") and int(seconds[:-1]) < 60
            assert row["LOAD"].isdigit()
        assert (by_node["node-a"]["BINDINGS"], by_node["node-a"]["DIALOGS"]) == ("1", "1")
        assert (by_node["node-b"]["BINDINGS"], by_node["node-b"]["DIALOGS"]) == ("0", "0")

        names, rows = table(text_cli(etcd, "registrations"))
        assert names == ["AOR", "CONTACT", "EXPIRES", "Q", "REACHED AT", "NODE"]
        (row,) = rows
        assert row["AOR"] == "sip:alice@example.test"
        assert row["CONTACT"] == "sip:alice@%s:%d" % (phone.host, phone.port)
        assert 590 <= int(row["EXPIRES"]) <= 600 and row["Q"] == "1.0"
        assert row["NODE"] == "node-a"
        assert text_cli(etcd, "registrations", "sip:nobody@example.test") == \
            "no registrations for sip:nobody@example.test\n"

        names, rows = table(text_cli(etcd, "calls"))
        assert names == ["CALL-ID", "FROM", "TO", "OWNER", "DURATION", "ADOPTED FROM"]
        (row,) = rows
        assert row["CALL-ID"] == call_id and row["OWNER"] == "node-a"
        assert row["FROM"] == "sip:bob@example.test" and row["TO"] == "sip:alice@example.test"
        assert row["DURATION"].startswith("0m") and row["ADOPTED FROM"] == ""

        assert text_cli(etcd, "leader") == leader + "\n"

        # The call ends: no calls left.
        caller.send(_bye(phone, caller, call_id, "<%s>" % ok.record_routes[0].uri, ok).encode(),
                    (a.host, 5060))
        bye = [m for m in phone.recv_all(1.0) if getattr(m, "method", None) == "BYE"][0]
        _answer(phone, bye, a, 200)
        assert wait_for(lambda: text_cli(etcd, "calls") == "no calls\n", timeout=10)
    finally:
        phone.close()
        caller.close()


def test_draining_node_with_redirect_action_answers_302_to_an_active_node(cluster, tmp_path):
    etcd, node = cluster
    a = node("node-a", "--config", str(_config(tmp_path, '[cluster]\ndrain_action = "redirect"\n')))
    b = node("node-b")
    caller = UDPAgent(next_host())
    try:
        assert wait_for(lambda: {n["id"] for n in cli(etcd, "status")["nodes"]} == {"node-a", "node-b"})
        cli(etcd, "drain", "node-a")
        assert wait_for(lambda: [n["state"] for n in cli(etcd, "status")["nodes"]
                                 if n["id"] == "node-a"] == ["draining"])
        call_id = uuid.uuid4().hex
        caller.send(_invite_text(caller, call_id).encode(), (a.host, 5060))
        finals = [m for m in caller.recv_all(1.0) if getattr(m, "status", 0) >= 200]
        # (Retransmitted until ACKed: Timer G.)
        assert finals and {m.status for m in finals} == {302}
        assert [str(c.uri) for c in finals[0].contacts] == ["sip:alice@%s:5060" % b.host]
        assert finals[0].call_id == call_id
        # Once B drains too there is nowhere to send the caller: 503.
        cli(etcd, "drain", "node-b")
        assert wait_for(lambda: {n["state"] for n in cli(etcd, "status")["nodes"]} == {"draining"})
        assert wait_for(lambda: _final_of_new_call(caller, a) == 503, timeout=10)
    finally:
        caller.close()


def _final_of_new_call(caller, node):
    caller.recv_all(0.1)
    caller.send(_invite_text(caller, uuid.uuid4().hex).encode(), (node.host, 5060))
    finals = [m.status for m in caller.recv_all(0.7) if getattr(m, "status", 0) >= 200]
    return finals[0] if finals else None


def test_draining_stateless_node_refuses_new_invites_with_503(cluster, tmp_path):
    # The drain gate is an admission check of the stateless proxy too.
    etcd, node = cluster
    a = node("node-a", "--mode", "stateless")
    phone = UDPAgent(next_host())
    caller = UDPAgent(next_host())
    try:
        assert register(phone, a).status == 200
        cli(etcd, "drain", "node-a")
        assert wait_for(lambda: [n["state"] for n in cli(etcd, "status")["nodes"]] == ["draining"])
        assert wait_for(lambda: _final_of_new_call(caller, a) == 503, timeout=10)
        caller.send(_invite_text(caller, uuid.uuid4().hex).encode(), (a.host, 5060))
        (refused,) = [m for m in caller.recv_all(1.0) if getattr(m, "status", 0) >= 200]
        assert refused.header("Retry-After") == "30"  # cluster.drain_retry_after_s default
        assert [m for m in phone.recv_all(0.3) if getattr(m, "method", None) == "INVITE"] == []
        cli(etcd, "undrain", "node-a")

        def delivered():
            caller.send(_invite_text(caller, uuid.uuid4().hex).encode(), (a.host, 5060))
            return any(getattr(m, "method", None) == "INVITE" for m in phone.recv_all(0.7))
        assert wait_for(delivered, timeout=10)
    finally:
        phone.close()
        caller.close()
