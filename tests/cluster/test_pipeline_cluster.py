"""
What the request pipeline must do in a cluster, on real nodes and a real
etcd: a REGISTER through an outbound proxy, a REGISTER retransmitted to
another node after its first node stored it, and the CLI's readable view.
"""

import json
import os
import subprocess
import sys
import uuid

from tests.cluster.etcdserver import requires_etcd
from tests.cluster.test_cluster_nodes import cli, cluster, wait_for  # noqa: F401 (fixture)
from tests.integration.nodes import ROOT, UDPAgent, next_host

pytestmark = requires_etcd


def register_bytes(phone, call_id, cseq, contact=None, route=None, branch=None):
    contact = contact or "<sip:alice@%s:%d>" % (phone.host, phone.port)
    return ("REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP {a}:{p};branch=z9hG4bK{b};rport\r\n"
            "{route}Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=r\r\n"
            "To: <sip:alice@example.test>\r\nCall-ID: {c}\r\nCSeq: {n} REGISTER\r\n"
            "Contact: {contact}\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n").format(
                a=phone.host, p=phone.port, b=branch or uuid.uuid4().hex[:12], c=call_id, n=cseq,
                contact=contact, route="Route: %s\r\n" % route if route else "").encode()


def test_register_retransmitted_to_another_node_is_answered_with_the_bindings(cluster):
    # The phone's REGISTER reached node A, which committed it to etcd and
    # died before answering; the phone fails over (DNS SRV) to node B with
    # the very same request.
    etcd, node = cluster
    a, b = node("node-a"), node("node-b")
    phone = UDPAgent(next_host())
    call_id = uuid.uuid4().hex
    try:
        first = register_bytes(phone, call_id, 5)
        phone.send(first, (a.host, 5060))
        assert phone.recv(5).status == 200
        assert wait_for(lambda: len(cli(etcd, "registrations", "sip:alice@example.test")) == 1)
        phone.send(first, (b.host, 5060))
        answer = phone.recv(5)
        assert answer.status == 200, answer.reason
        assert [str(c.uri) for c in answer.contacts] == ["sip:alice@%s:%d" % (phone.host, phone.port)]
        regs = cli(etcd, "registrations", "sip:alice@example.test")
        assert [(r["cseq"], r["node"]) for r in regs] == [(5, "node-a")]  # nothing changed
        # Not a retransmission: the same CSeq asking something else of the
        # binding (here its removal), or a lower CSeq, is still out of
        # order (RFC 3261 10.3 step 7).
        phone.send(register_bytes(phone, call_id, 5, contact="<sip:alice@%s:%d>;expires=0" % (
            phone.host, phone.port)), (b.host, 5060))
        assert phone.recv(5).status == 400
        phone.send(register_bytes(phone, call_id, 4), (b.host, 5060))
        assert phone.recv(5).status == 400
        phone.send(register_bytes(phone, call_id, 6), (b.host, 5060))
        assert phone.recv(5).status == 200
        assert [r["node"] for r in cli(etcd, "registrations", "sip:alice@example.test")] == ["node-b"]
    finally:
        phone.close()


def test_register_through_an_outbound_proxy_in_a_cluster(cluster):
    etcd, node = cluster
    a, b = node("node-a"), node("node-b")
    phone = UDPAgent(next_host())
    try:
        phone.send(register_bytes(phone, uuid.uuid4().hex, 1, route="<sip:%s:5060;lr>" % a.host),
                   (a.host, 5060))
        answer = phone.recv(5)
        assert answer.status == 200, answer.reason
        assert wait_for(lambda: [r["node"] for r in cli(etcd, "registrations")] == ["node-a"])
    finally:
        phone.close()


def run_cli(etcd, *args):
    return subprocess.run([sys.executable, "-m", "sipcluster.cli"] + list(args) + [
        "--etcd", etcd.endpoint], capture_output=True, text=True, timeout=30,
        env=dict(os.environ, PYTHONPATH=ROOT))


def test_status_of_a_prefix_with_no_node_says_so(cluster):
    etcd, _ = cluster
    result = run_cli(etcd, "status")
    assert result.returncode == 1 and result.stdout == ""
    assert "no live node under prefix /sipcluster" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_calls_table_shows_parties_without_uri_parameters(cluster):
    etcd, _ = cluster
    import etcd3
    host, port = etcd.endpoint.rsplit("//", 1)[1].split(":")
    client = etcd3.client(host=host, port=int(port), timeout=5)
    record = {"call_id": "c1", "from": "sip:alice@example.test;transport=udp",
              "to": "sip:bob@example.test;user=phone;transport=tcp", "owner": "node-a",
              "started": 1.0, "from_tag": "a", "to_tag": "b"}
    client.put("/sipcluster/dialogs/c1;a;b", json.dumps(record))
    client.close()
    result = run_cli(etcd, "calls")
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()[:2]
    assert "sip:alice@example.test " in row + " " and "transport" not in row
    assert "sip:bob@example.test" in row and "user=phone" not in row
    # The JSON keeps them as recorded.
    result = run_cli(etcd, "calls", "--json")
    assert json.loads(result.stdout)[0]["from"] == "sip:alice@example.test;transport=udp"
