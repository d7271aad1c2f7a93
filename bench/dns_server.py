"""
The cluster's DNS (not a test): answers per second from one node, and the
time from kill -9 of a node to its absence from the SRV answers.  Starts
its own etcd and twistd nodes on loopback (the test helpers), stops them by
PID.

    .venv/bin/python bench/dns_server.py [--seconds 5] [--window 32] [--kills 3]
"""

import argparse
import os
import signal
import socket
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from twisted.names import dns  # noqa: E402

from tests.cluster.etcdserver import EtcdServer  # noqa: E402
from tests.cluster.test_cluster_dns import ZONE, srv_targets  # noqa: E402
from tests.integration.nodes import NodeProcess, next_host  # noqa: E402


def start_node(etcd, tmp, name):
    host = next_host()
    path = os.path.join(tmp, "%s.toml" % name)
    with open(path, "w") as f:
        f.write('[cluster]\nname = "%s"\ndns_listen = ["%s:5353"]\n' % (ZONE, host))
    return NodeProcess(host, 5060, ["--store", "etcd", "--etcd", etcd.endpoint, "--node-id", name,
                                    "--config", path], tmp)


def answers_per_second(host, seconds, window):
    """Queries for the SRV name, C{window} in flight, for C{seconds}: answers/s."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1)
    queries = []
    for n in range(window):
        message = dns.Message(id=n + 1, recDes=0)
        message.queries = [dns.Query("_sip._udp." + ZONE, dns.SRV, dns.IN)]
        queries.append(message.toStr())
    for data in queries:
        sock.sendto(data, (host, 5353))
    answered = 0
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    while time.monotonic() < deadline:
        try:
            data, _ = sock.recvfrom(65535)
        except socket.timeout:
            for data in queries:  # lost under load: refill the window
                sock.sendto(data, (host, 5353))
            continue
        answered += 1
        sock.sendto(queries[answered % window], (host, 5353))
    elapsed = time.monotonic() - started
    sock.close()
    return answered / elapsed


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--kills", type=int, default=3)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="dns-bench-")
    etcd = EtcdServer()
    nodes = []
    try:
        nodes = [start_node(etcd, tmp, "node-%d" % n) for n in range(3)]
        deadline = time.monotonic() + 15
        while len(srv_targets(nodes[0].host)) != 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        before = cpu_seconds(nodes[0].process.pid)
        rate = answers_per_second(nodes[0].host, args.seconds, args.window)
        cpu = cpu_seconds(nodes[0].process.pid) - before
        print("answers/s from one node: %.0f (SRV with 3 targets and their A records; "
              "node CPU %.0f us per answer)" % (rate, cpu / (rate * args.seconds) * 1e6))
        gone = []
        for k in range(args.kills):
            victim = start_node(etcd, tmp, "victim-%d" % k)
            deadline = time.monotonic() + 15
            while victim.host not in [t[1] for t in srv_targets(nodes[0].host)]:
                if time.monotonic() > deadline:
                    raise RuntimeError("victim never appeared")
                time.sleep(0.05)
            victim.process.send_signal(signal.SIGKILL)
            victim.process.wait()
            killed = time.monotonic()
            while victim.host in [t[1] for t in srv_targets(nodes[0].host)]:
                if time.monotonic() - killed > 20:
                    raise RuntimeError("victim never left")
                time.sleep(0.05)
            gone.append(time.monotonic() - killed)
        print("kill -9 to absence from the answers: %s s (cluster.node_ttl_s = 3; resolvers "
              "may add up to cluster.dns_ttl_s = 5)" % ", ".join("%.2f" % g for g in gone))
    finally:
        for node in nodes:
            node.stop()
        etcd.stop()


if __name__ == "__main__":
    main()
