"""Membership and leader election against a real etcd."""

import time

from twisted.internet import defer, reactor
from twisted.trial import unittest

from sipcluster.cluster.etcd import EtcdStore
from sipcluster.cluster.membership import ClusterMembership
from tests.cluster.etcdserver import EtcdServer, requires_etcd
from tests.cluster.test_etcd import eventually


@requires_etcd
class MembershipTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.etcd = EtcdServer()
        self.addCleanup(self.etcd.stop)
        self.stores = []

    def member(self, node_id, ttl=2, region="eu"):
        store = EtcdStore(reactor, [self.etcd.endpoint], timeout=1.0)
        store.start()
        self.addCleanup(store.stop)
        member = ClusterMembership(store, reactor, "/sc", node_id,
                                   {"addresses": ["udp:127.0.0.1:5060"], "region": region,
                                    "state": "active"}, ttl=ttl)
        member.startService()
        self.addCleanup(lambda: member.running and member.stopService())
        return member

    @defer.inlineCallbacks
    def test_nodes_see_each_other_and_one_leader(self):
        a = self.member("a")
        b = self.member("b")
        yield eventually(lambda: set(a.nodes) == {"a", "b"} == set(b.nodes))
        self.assertEqual(a.nodes["b"]["region"], "eu")
        yield eventually(lambda: a.leader is not None and a.leader == b.leader)
        self.assertEqual([m.is_leader for m in (a, b)].count(True), 1)

    @defer.inlineCallbacks
    def test_update_is_seen(self):
        a = self.member("a")
        b = self.member("b")
        yield eventually(lambda: "a" in b.nodes)
        yield a.update(state="draining", load=3)
        yield eventually(lambda: b.nodes["a"].get("state") == "draining")
        self.assertEqual(b.nodes["a"]["load"], 3)

    @defer.inlineCallbacks
    def test_clean_leave_is_immediate_and_leadership_moves(self):
        a = self.member("a")
        yield eventually(lambda: a.is_leader)
        b = self.member("b")
        yield eventually(lambda: "a" in b.nodes and b.leader == "a")
        yield a.stopService()
        started = time.monotonic()
        yield eventually(lambda: "a" not in b.nodes and b.is_leader)
        self.assertLess(time.monotonic() - started, 1.5)

    @defer.inlineCallbacks
    def test_silent_death_is_seen_within_ttl_plus_one_second(self):
        a = self.member("a", ttl=2)
        b = self.member("b", ttl=2)
        yield eventually(lambda: "a" in b.nodes and a.leader is not None)
        # A dead node refreshes nothing and revokes nothing.
        a._refresh.stop()
        a.store.stop()
        started = time.monotonic()
        yield eventually(lambda: "a" not in b.nodes, timeout=10)
        self.assertLess(time.monotonic() - started, 2 + 1)
        yield eventually(lambda: b.is_leader)

    @defer.inlineCallbacks
    def test_rejoins_after_etcd_restart_longer_than_ttl(self):
        a = self.member("a", ttl=2)
        yield eventually(lambda: "a" in a.nodes and a.is_leader)
        self.etcd.kill()
        yield eventually(lambda: not a.connected, timeout=5)
        # Past the lease it no longer counts itself leader.
        yield eventually(lambda: a.leader is None, timeout=5)
        self.etcd.start()
        yield eventually(lambda: a.connected and "a" in a.nodes and a.is_leader, timeout=20)
