"""
A real three-member etcd cluster under two real nodes: when the member a
node talks to dies, or hangs, the node moves to another member and the
cluster goes on (no REGISTER acknowledged and lost, bindings seen by both).
"""

import pytest

from tests.cluster.etcdserver import EtcdCluster, requires_etcd
from tests.cluster.test_cluster_nodes import _delivered, cli, register, started_nodes, wait_for
from tests.integration.nodes import UDPAgent, next_host

pytestmark = requires_etcd


@pytest.fixture
def members(tmp_path):
    etcd = EtcdCluster()
    with started_nodes(tmp_path) as node:
        yield etcd, node
    etcd.stop()


class _Endpoints:
    """What the CLI helper needs: an --etcd value."""

    def __init__(self, endpoints):
        self.endpoint = ",".join(endpoints)


def test_nodes_move_to_another_member_when_theirs_dies_or_hangs(members):
    etcd, node = members
    m0, m1, m2 = etcd.members
    a = node("node-a", [m0.endpoint, m1.endpoint, m2.endpoint])
    b = node("node-b", [m1.endpoint, m2.endpoint, m0.endpoint])
    phone, phone2, phone3, caller = (UDPAgent(next_host()) for _ in range(4))
    every = _Endpoints(etcd.endpoints)
    try:
        assert register(phone, a).status == 200
        assert wait_for(lambda: _delivered(caller, phone, b))

        # A's member dies: A carries on through another one.
        m0.kill()
        assert wait_for(lambda: register(phone2, a, "dave").status == 200, timeout=20)
        assert wait_for(lambda: _delivered(caller, phone2, b, user="dave"), timeout=10)
        # The CLI, given every endpoint, skips the dead one.
        assert wait_for(lambda: {n["id"] for n in cli(every, "status")["nodes"]} == {"node-a", "node-b"}, 20)

        # Back to three members; then B's member hangs (SIGSTOP: no stream
        # breaks, only calls time out) and B moves on as well.
        m0.start(timeout=30)
        m1.pause()
        try:
            assert wait_for(lambda: register(phone3, b, "erin").status == 200, timeout=30)
            assert wait_for(lambda: _delivered(caller, phone3, a, user="erin"), timeout=10)
            b.wait_log("trying the next endpoint")
            regs = {r["aor"] for r in cli(_Endpoints([m0.endpoint, m2.endpoint]), "registrations")}
            assert regs == {"sip:alice@example.test", "sip:dave@example.test", "sip:erin@example.test"}
        finally:
            m1.resume()
    finally:
        for agent in (phone, phone2, phone3, caller):
            agent.close()
