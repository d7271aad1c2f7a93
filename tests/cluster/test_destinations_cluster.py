"""
Destination sets in a cluster, on real nodes and a real etcd: every node
probes on its own and publishes its view at <prefix>/destinations/<node>,
and `sipcluster destinations` shows each set, destination, and its state,
calls and last probe as each node sees it (table and --json).
"""

import os
import subprocess
import sys

from tests.cluster.etcdserver import requires_etcd
from tests.cluster.test_cluster_nodes import cli, cluster, wait_for  # noqa: F401 (fixture)
from tests.integration.nodes import ROOT, next_host
from tests.integration.test_routing_wire import Destination

pytestmark = requires_etcd


def test_each_node_publishes_what_it_sees_and_the_cli_shows_it(cluster, tmp_path):
    etcd, node = cluster
    alive, dead = Destination(next_host()), Destination(next_host())
    dead.mode = "silent"
    path = tmp_path / "sets.toml"
    path.write_text('''
[[routing.rules]]
domain = "lb.test"
set = "lb"
[routing.sets.lb]
destinations = ["sip:%s:5060", "sip:%s:5060"]
probe_interval_s = 0.5
probe_failures = 2
''' % (alive.host, dead.host))
    try:
        node("node-a", "--config", str(path))
        node("node-b", "--config", str(path))

        def states():
            return {(view["node"], d["uri"]): d["state"]
                    for view in cli(etcd, "destinations")
                    for dset in view["sets"] for d in dset["destinations"]}
        want = {("node-a", "sip:%s:5060" % alive.host): "up",
                ("node-a", "sip:%s:5060" % dead.host): "down",
                ("node-b", "sip:%s:5060" % alive.host): "up",
                ("node-b", "sip:%s:5060" % dead.host): "down"}
        assert wait_for(lambda: states() == want, timeout=15), states()
        (view, _) = cli(etcd, "destinations")
        (dset,) = view["sets"]
        assert dset["name"] == "lb" and dset["algorithm"] == "round_robin"
        probed = {d["uri"]: d["last_probe"] for d in dset["destinations"]}
        assert probed["sip:%s:5060" % alive.host][1] == 200
        assert probed["sip:%s:5060" % dead.host][1] is None
        table = subprocess.run(
            [sys.executable, "-m", "sipcluster.cli", "destinations", "--etcd", etcd.endpoint],
            capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=ROOT))
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split() == ["SET", "DESTINATION", "NODE", "STATE", "CALLS", "LAST", "PROBE"]
        assert any("node-b" in line and dead.host in line and "down" in line and "no answer" in line
                   for line in lines), table.stdout
    finally:
        alive.close()
        dead.close()
