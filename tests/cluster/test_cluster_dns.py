"""
The cluster's own name served by DNS from every node, on the wire: real
etcd, real twistd nodes, real DNS queries over UDP and TCP.
"""

import signal
import socket
import struct
import time
import uuid

from twisted.names import dns

from tests.cluster.etcdserver import requires_etcd
from tests.cluster.test_cluster_nodes import (  # noqa: F401 (fixture)
    _answer, _bye, _config, _invite_text, cli, cluster, register, wait_for)
from tests.integration.nodes import UDPAgent, next_host

pytestmark = requires_etcd

ZONE = "sip.example.test"
DNS_PORT = 5353


def query(server, name, rtype, tcp=False, source=None):
    """(rcode, answers, additional) of one DNS query to C{server} (host)."""
    message = dns.Message(id=int(uuid.uuid4().int & 0xFFFF), recDes=0)
    message.queries = [dns.Query(name, rtype, dns.IN)]
    data = message.toStr()
    if tcp:
        sock = socket.create_connection((server, DNS_PORT), timeout=3)
        sock.sendall(struct.pack("!H", len(data)) + data)
        length = struct.unpack("!H", _read(sock, 2))[0]
        reply = _read(sock, length)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(3)
        if source:
            sock.bind((source, 0))
        sock.sendto(data, (server, DNS_PORT))
        reply, _ = sock.recvfrom(65535)
    sock.close()
    answer = dns.Message()
    answer.fromStr(reply)
    return answer.rCode, answer.answers, answer.additional


def _read(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def srv_targets(server, transport="udp", **kw):
    rcode, answers, additional = query(server, "_sip._%s.%s" % (transport, ZONE), dns.SRV, **kw)
    assert rcode == dns.OK
    addresses = {r.name.name.decode(): r.payload.dottedQuad() for r in additional if r.type == dns.A}
    return sorted((r.payload.priority, addresses.get(r.payload.target.name.decode()), r.payload.port)
                  for r in answers)


def dns_node(node, tmp_path, name, extra="", args=()):
    config = _config(tmp_path, '[cluster]\nname = "%s"\ndns_listen = ["%%s:%d"]\n%s' % (
        ZONE, DNS_PORT, extra))
    # Each node serves DNS on its own address: fill it in once it is known.
    host = next_host()
    config.write_text(config.read_text() % host)
    return node(name, "--config", str(config), *args, host=host)


def test_srv_lists_live_nodes_drops_a_killed_one_and_takes_it_back(cluster, tmp_path):
    etcd, start = cluster
    nodes = {name: dns_node(start, tmp_path, name) for name in ("node-a", "node-b", "node-c")}
    hosts = {name: n.host for name, n in nodes.items()}
    every = sorted((10, h, 5060) for h in hosts.values())
    assert wait_for(lambda: srv_targets(hosts["node-b"]) == every, timeout=10)
    # The same from every node, over TCP too, and the zone's own records.
    assert srv_targets(hosts["node-c"], tcp=True) == every
    rcode, answers, _ = query(hosts["node-a"], ZONE, dns.NAPTR)
    assert sorted((r.payload.order, r.payload.service.string, r.payload.replacement.name.decode())
                  for r in answers) == [(10, b"SIP+D2U", "_sip._udp." + ZONE),
                                        (20, b"SIP+D2T", "_sip._tcp." + ZONE)]
    rcode, answers, _ = query(hosts["node-a"], ZONE, dns.A)
    assert sorted(r.payload.dottedQuad() for r in answers) == sorted(hosts.values())
    assert all(r.ttl == 5 for r in answers)
    # Names of the zone that do not exist, and other zones.
    assert query(hosts["node-a"], "nope." + ZONE, dns.A)[0] == dns.ENAME
    assert query(hosts["node-a"], "example.org", dns.A)[0] == dns.EREFUSED

    victim = nodes["node-c"]
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    killed = time.monotonic()
    rest = sorted((10, hosts[n], 5060) for n in ("node-a", "node-b"))
    assert wait_for(lambda: srv_targets(hosts["node-a"]) == rest, timeout=10)
    gone_after = time.monotonic() - killed
    # Its lease (cluster.node_ttl_s = 3 s) plus the watch; resolvers then
    # hold the old answer at most the TTL (5 s) more.
    assert gone_after < 3 + 1.5, gone_after

    again = dns_node(start, tmp_path, "node-c")
    back = sorted((10, h, 5060) for h in (hosts["node-a"], hosts["node-b"], again.host))
    assert wait_for(lambda: srv_targets(hosts["node-b"]) == back, timeout=10)


def test_a_draining_node_leaves_the_answers_and_regions_come_first(cluster, tmp_path):
    etcd, start = cluster
    client = next_host()
    regions = 'dns_regions = ["us=%s/32"]\n' % client
    a = dns_node(start, tmp_path, "node-a", regions)
    b = dns_node(start, tmp_path, "node-b", regions, args=("--region", "us"))
    assert wait_for(lambda: len(srv_targets(a.host)) == 2, timeout=10)
    # A client of region us gets node-b (us) first; one of no known region
    # gets both at one priority.  (node-a is of region eu.)
    assert srv_targets(a.host, source=client) == [(10, b.host, 5060), (20, a.host, 5060)]
    assert srv_targets(a.host) == sorted([(10, a.host, 5060), (10, b.host, 5060)])
    cli(etcd, "drain", "node-a")
    assert wait_for(lambda: srv_targets(b.host) == [(10, b.host, 5060)], timeout=10)
    cli(etcd, "undrain", "node-a")
    assert wait_for(lambda: len(srv_targets(b.host)) == 2, timeout=10)


def test_bye_after_the_call_node_died_reaches_a_survivor_by_the_cluster_name(cluster, tmp_path):
    etcd, start = cluster
    a = dns_node(start, tmp_path, "node-a")
    b = dns_node(start, tmp_path, "node-b")
    phone = UDPAgent(next_host())
    caller = UDPAgent(next_host())
    try:
        assert register(phone, a).status == 200
        call_id = uuid.uuid4().hex
        caller.send(_invite_text(caller, call_id).encode(), (a.host, 5060))
        inv = [m for m in phone.recv_all(1.0) if getattr(m, "method", None) == "INVITE"][0]
        assert [str(r.uri) for r in inv.record_routes] == ["sip:%s;lr" % ZONE]
        ok = _answer(phone, inv, a, 200)
        assert wait_for(lambda: [c["call_id"] for c in cli(etcd, "calls")] == [call_id])
        a.process.send_signal(signal.SIGKILL)
        a.process.wait()
        # The caller does what RFC 3263 says with the Route's host: SRV,
        # asking the DNS of any node it knows (the dead one no longer
        # answers), and sends to the first live target.
        assert wait_for(lambda: [t[1] for t in srv_targets(b.host)] == [b.host], timeout=10)
        target = srv_targets(b.host)[0]
        bye = _bye(phone, caller, call_id, "<sip:%s;lr>" % ZONE, ok)
        caller.send(bye.encode(), (target[1], target[2]))
        got = [m for m in phone.recv_all(1.5) if getattr(m, "method", None) == "BYE"]
        assert got and got[0].vias[0].host == b.host
        _answer(phone, got[0], b, 200)
        assert wait_for(lambda: cli(etcd, "calls") == [], timeout=15)
        assert wait_for(lambda: '"state": "terminated"' in b.log(tail=None), timeout=10)
        cdr = [line for line in b.log(tail=None).splitlines() if "sipcluster.cdr" in line]
        assert len(cdr) == 1 and '"ended_by_node": "node-b"' in cdr[0] and call_id in cdr[0]
        # The phone registered through A is still reachable, through B.
        caller.send(_invite_text(caller, uuid.uuid4().hex).encode(), (target[1], target[2]))
        assert [m for m in phone.recv_all(1.5) if getattr(m, "method", None) == "INVITE"]
    finally:
        phone.close()
        caller.close()


def test_the_demo_cluster_serves_its_name_and_runs_beside_another(tmp_path):
    import os
    import subprocess
    from tests.integration.nodes import ROOT
    # A base of this run's own (as next_host does), so that it can run
    # beside the default demo and beside other test runs.
    base = "127.%d.251.2" % (50 + os.getpid() % 150)
    port = "5062"
    env = dict(os.environ)
    try:
        up = subprocess.run(["bash", "ops/cluster-up", base, port], cwd=ROOT, capture_output=True,
                            text=True, timeout=240, env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "node-c started on %s:%s" % (base[:-1] + "4", port) in up.stdout
        hosts = [base[:-1] + str(n) for n in (2, 3, 4)]
        assert wait_for(lambda: srv_targets(hosts[1]) == sorted((10, h, int(port)) for h in hosts),
                        timeout=15)
        rcode, answers, _ = query(hosts[2], ZONE, dns.A)
        assert sorted(r.payload.dottedQuad() for r in answers) == hosts
    finally:
        down = subprocess.run(["bash", "ops/cluster-down", base, port], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        subprocess.run(["rm", "-rf", os.path.join(ROOT, "run", "%s-%s" % (base, port))])
    assert down.stdout.count("stopped") == 4, down.stdout + down.stderr
