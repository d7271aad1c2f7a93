"""The etcd location service against a real etcd: two nodes sharing bindings."""

import time

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from sipcluster.cluster.etcd import EtcdStore, EtcdUnavailable
from sipcluster.location.etcd import EtcdLocationService
from sipcluster.location.interface import Binding
from sipcluster.sip.uri import parse_uri
from tests.cluster.etcdserver import EtcdServer, requires_etcd
from tests.cluster.test_etcd import eventually

AOR = "sip:alice@example.test"


def binding(port, expires=3600, call_id="c", cseq=1, aor=AOR):
    return Binding(aor, parse_uri("sip:alice@127.0.0.1:%d" % port), time.time() + expires,
                   call_id=call_id, cseq=cseq)


@requires_etcd
class EtcdLocationTests(unittest.TestCase):
    timeout = 90

    def setUp(self):
        self.etcd = EtcdServer()
        self.addCleanup(self.etcd.stop)

    @defer.inlineCallbacks
    def node(self):
        store = EtcdStore(reactor, [self.etcd.endpoint], timeout=1.0)
        store.start()
        self.addCleanup(store.stop)
        location = EtcdLocationService(store, reactor, "/sc")
        yield location.start()
        self.addCleanup(location.stop)
        return location

    @defer.inlineCallbacks
    def test_a_binding_stored_on_one_node_is_seen_by_another(self):
        a = yield self.node()
        b = yield self.node()
        stored = yield a.update(AOR, [binding(5090)])
        self.assertEqual([str(x.contact) for x in stored], ["sip:alice@127.0.0.1:5090"])
        self.assertEqual(len(a.lookup(AOR)), 1)  # at once on the writer
        yield eventually(lambda: len(b.lookup(AOR)) == 1)
        # A node started later loads it.
        c = yield self.node()
        self.assertEqual([str(x.contact) for x in c.lookup(AOR)], ["sip:alice@127.0.0.1:5090"])
        # Removal is seen too.
        yield b.update(AOR, [binding(5090, expires=-1)])
        yield eventually(lambda: a.lookup(AOR) == [])

    @defer.inlineCallbacks
    def test_concurrent_updates_on_two_nodes_lose_nothing(self):
        a = yield self.node()
        b = yield self.node()
        writes = []
        for i in range(40):
            node = a if i % 2 else b
            writes.append(node.update(AOR, [binding(6000 + i, call_id="c%d" % i)]))
        yield defer.gatherResults(writes)
        expected = {"sip:alice@127.0.0.1:%d" % (6000 + i) for i in range(40)}
        yield eventually(lambda: {str(x.contact) for x in a.lookup(AOR)} == expected
                         and {str(x.contact) for x in b.lookup(AOR)} == expected)
        self.assertGreater(a.conflicts + b.conflicts, 0)  # they did race

    @defer.inlineCallbacks
    def test_leases_are_shared_by_expiry_bucket(self):
        a = yield self.node()
        for i in range(50):
            yield a.update("sip:u%d@example.test" % i, [binding(7000, aor="sip:u%d@example.test" % i)])
        self.assertLessEqual(len(a._leases), 2)

    @defer.inlineCallbacks
    def test_etcd_down_lookups_go_on_updates_fail_and_it_catches_up(self):
        a = yield self.node()
        b = yield self.node()
        yield a.update(AOR, [binding(5090)])
        yield eventually(lambda: len(b.lookup(AOR)) == 1)
        self.etcd.kill()
        self.assertEqual(len(b.lookup(AOR)), 1)  # from the cache
        with self.assertRaises(EtcdUnavailable):
            yield b.update(AOR, [binding(5091)])
        self.etcd.start()
        # After the restart a write through one node is seen by the other.
        deadline = time.monotonic() + 15
        while True:
            try:
                yield a.update(AOR, [binding(5092)])
                break
            except EtcdUnavailable:
                self.assertLess(time.monotonic(), deadline)
                yield eventually(lambda: True, timeout=0.3)
        yield eventually(lambda: {str(x.contact) for x in b.lookup(AOR)} == {
            "sip:alice@127.0.0.1:5090", "sip:alice@127.0.0.1:5092"}, timeout=15)

    @defer.inlineCallbacks
    def test_the_purging_sweep_rewrites_records_holding_expired_bindings(self):
        a = yield self.node()
        b = yield self.node()
        bob = "sip:bob@example.test"
        yield a.update(AOR, [binding(5090, expires=1), binding(5091, expires=3600)])
        yield a.update(bob, [binding(5092, expires=1, aor=bob)])
        yield eventually(lambda: len(b.lookup(AOR)) == 2)
        yield deferLater(reactor, 1.2, lambda: None)
        # A node that is not the leader only cleans its own cache.
        self.assertEqual(b.sweep(), 2)
        items, _ = yield a.store.get_prefix("/sc/aor/")
        self.assertEqual(len(items), 2)
        # The leader's sweep rewrites etcd: one record loses a binding, the
        # other, all expired, goes; every node's cache follows.
        before = b._cache[AOR][1]
        self.assertEqual(a.sweep(purge=True), 2)
        self.assertEqual(a.purged, 2)
        # Done when the rewrite reached b by its watch and the delete is in.
        yield eventually(lambda: b._cache[AOR][1] > before and bob not in a._cache)
        items, _ = yield a.store.get_prefix("/sc/aor/")
        self.assertEqual([key for key, _, _ in items], ["/sc/aor/" + AOR])
        self.assertNotIn(b"5090", items[0][1])
        self.assertEqual([str(x.contact) for x in b.lookup(AOR)], ["sip:alice@127.0.0.1:5091"])
        # Nothing left to purge.
        self.assertEqual(a.sweep(purge=True), 0)
        self.assertEqual(a.purged, 2)
