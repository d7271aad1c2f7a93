"""The etcd location service against a real etcd, and on the memory store: nodes sharing bindings."""

import json
import time

from twisted.internet import defer, reactor
from twisted.internet.task import Clock, deferLater
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from sipcluster.cluster.etcd import EtcdStore, EtcdUnavailable
from sipcluster.cluster.store import MemoryStore, StoreUnavailable
from sipcluster.location.etcd import EtcdLocationService
from sipcluster.location.interface import Binding
from sipcluster.sip.uri import parse_uri
from tests.cluster.etcdserver import etcd_for, own_etcd, requires_etcd
from tests.cluster.test_etcd import eventually

AOR = "sip:alice@example.test"


def binding(port, expires=3600, call_id="c", cseq=1, aor=AOR):
    return Binding(aor, parse_uri("sip:alice@127.0.0.1:%d" % port), time.time() + expires,
                   call_id=call_id, cseq=cseq)


@requires_etcd
class EtcdLocationTests(unittest.TestCase):
    timeout = 90

    def setUp(self):
        self.etcd = etcd_for(getattr(self, self._testMethodName))
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

    @own_etcd
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


class StoreUnavailableOnWrite(MemoryStore):
    """A memory store whose compare-and-swap writes fail as etcd away would."""

    def replace(self, key, value, mod_revision, lease=None):
        return defer.fail(StoreUnavailable("etcd away"))


class AlwaysConflicting(MemoryStore):
    """A memory store where another node always wrote the key first."""

    replaced = 0

    def replace(self, key, value, mod_revision, lease=None):
        self.replaced += 1
        return defer.succeed(0)


class Unreachable(MemoryStore):
    """A memory store that cannot be reached: nothing to list or follow."""

    def follow(self, prefix, on_events, on_resync):
        return defer.fail(StoreUnavailable("etcd away"))


class SlowWrites(MemoryStore):
    """A memory store whose compare-and-swap writes take a second to commit."""

    def replace(self, key, value, mod_revision, lease=None):
        return deferLater(self.clock, 1, MemoryStore.replace, self, key, value, mod_revision, lease)


class OneEventATurn(MemoryStore):
    """A memory store whose watches deliver one event every 10 ms, as etcd
    may split what happened into several batches."""

    def _deliver(self):
        first, self._pending = self._pending[:1], self._pending[1:]
        pending, self._pending = self._pending, first
        MemoryStore._deliver(self)
        self._pending = pending
        if pending:
            self._flush = self.clock.callLater(0.01, self._deliver)


class MemoryStoreLocationTests(unittest.TestCase):
    """The same service on the memory store and a Clock: no etcd, time is the test's."""

    def setUp(self):
        self.clock = Clock()
        self.store = MemoryStore(self.clock)
        self.store.start()

    def service(self, store=None):
        location = EtcdLocationService(store or self.store, self.clock, "/sc/")
        self.successResultOf(location.start())
        self.addCleanup(location.stop)
        return location

    def binding(self, port, expires=3600, **kwargs):
        kwargs.setdefault("call_id", "c")
        kwargs.setdefault("cseq", 1)
        return Binding(kwargs.pop("aor", AOR), parse_uri("sip:alice@127.0.0.1:%d" % port),
                       self.clock.seconds() + expires, **kwargs)

    def stored(self, aor=AOR):
        value = self.successResultOf(self.store.get("/sc/aor/" + aor))
        return None if value is None else json.loads(value)

    def test_one_key_per_aor_holding_every_field(self):
        location = self.service()
        full = self.binding(5090, q=0.5, path=["<sip:edge.example.test;lr>"], received=("tcp", "192.0.2.1", 40000),
                            instance="<urn:uuid:1>", reg_id="1", node="n1")
        stored = self.successResultOf(location.update(AOR, [full, self.binding(5091)]))
        self.assertEqual([str(b.contact) for b in stored], ["sip:alice@127.0.0.1:5091", "sip:alice@127.0.0.1:5090"])
        self.assertEqual(self.stored(), [
            {"contact": "sip:alice@127.0.0.1:5090", "expires_at": 3600, "q": 0.5, "call_id": "c", "cseq": 1,
             "path": ["<sip:edge.example.test;lr>"], "received": ["tcp", "192.0.2.1", 40000],
             "instance": "<urn:uuid:1>", "reg_id": "1", "node": "n1"},
            {"contact": "sip:alice@127.0.0.1:5091", "expires_at": 3600, "q": 1.0, "call_id": "c", "cseq": 1,
             "path": [], "received": None, "instance": None, "reg_id": None, "node": None}])
        self.assertEqual(location.aors, 1)

    def test_an_aor_that_begins_another_is_kept_apart_when_read_again(self):
        # One key per AOR, re-read by prefix after a conflict: "...@example.te"
        # must not take the bindings of "...@example.test", the prefix's
        # other key.
        a, b = self.service(), self.service()
        long, short = "sip:alice@example.test", "sip:alice@example.te"
        self.successResultOf(a.update(long, [self.binding(5090, aor=long)]))
        self.successResultOf(a.update(short, [self.binding(5091, aor=short)]))
        self.clock.advance(0.05)  # b follows both
        self.successResultOf(b.update(short, [self.binding(5091, expires=0, aor=short)]))
        # a has not seen the removal yet: its write conflicts, it reads again.
        d = a.update(short, [self.binding(5092, aor=short)])
        self.clock.advance(0.05)
        stored = self.successResultOf(d)
        self.assertEqual(a.conflicts, 1)
        self.assertEqual([str(b.contact) for b in stored], ["sip:alice@127.0.0.1:5092"])
        self.assertEqual([b["contact"] for b in self.stored(short)], ["sip:alice@127.0.0.1:5092"])
        self.assertEqual([b["contact"] for b in self.stored(long)], ["sip:alice@127.0.0.1:5090"])

    def test_another_node_loads_and_follows_what_one_stores(self):
        a = self.service()
        full = self.binding(5090, q=0.5, path=["<sip:edge.example.test;lr>"], received=("tcp", "192.0.2.1", 40000),
                            instance="<urn:uuid:1>", reg_id="1", node="n1", call_id="c7", cseq=7)
        self.successResultOf(a.update(AOR, [full]))
        b = self.service()  # started later: loads it
        self.assertTrue(b.ready)
        (loaded,) = b.lookup(AOR)
        self.assertEqual(
            (loaded.aor, str(loaded.contact), loaded.expires_at, loaded.q, loaded.call_id, loaded.cseq,
             loaded.path, loaded.received, loaded.instance, loaded.reg_id, loaded.node),
            (AOR, "sip:alice@127.0.0.1:5090", 3600.0, 0.5, "c7", 7, ["<sip:edge.example.test;lr>"],
             ("tcp", "192.0.2.1", 40000), "<urn:uuid:1>", "1", "n1"))
        # Later changes come by the watch, in a later turn.
        self.successResultOf(a.update(AOR, [self.binding(5091, q=0.9)]))
        self.assertEqual(len(b.lookup(AOR)), 1)
        self.clock.advance(0)
        self.assertEqual([b_.q for b_ in b.lookup(AOR)], [0.9, 0.5])  # highest q first
        self.assertEqual(len(list(b.all_bindings())), 2)
        # Removing the last binding deletes the key, for everyone.
        self.successResultOf(a.update(AOR, [self.binding(5090, expires=0), self.binding(5091, expires=0)]))
        self.assertIsNone(self.stored())
        self.assertEqual((a.lookup(AOR), a.aors), ([], 0))
        self.clock.advance(0)
        self.assertEqual((b.lookup(AOR), b.aors), ([], 0))

    def test_before_the_store_answers_it_knows_nothing_and_stops_cleanly(self):
        # A node comes up without etcd: INVITEs find nobody, the service is
        # started again later (sipcluster.services.Following).
        location = EtcdLocationService(Unreachable(self.clock), self.clock, "/sc")
        self.failureResultOf(location.start(), StoreUnavailable)
        self.assertFalse(location.ready)
        self.assertEqual((location.lookup(AOR), list(location.all_bindings()), location.aors), ([], [], 0))
        location.stop()

    def test_start_says_how_much_it_loaded_and_how_long_it_took(self):
        self.clock.advance(1000)
        self.successResultOf(self.service().update(AOR, [self.binding(5090)]))
        with capturedLogs() as events:
            self.service()
        self.assertIn("loaded 1 addresses-of-record from etcd in 0.00s", [formatEvent(e) for e in events])

    def test_the_prefix_may_end_with_slashes(self):
        a = EtcdLocationService(self.store, self.clock, "/scX//")
        self.successResultOf(a.start())
        self.addCleanup(a.stop)
        self.successResultOf(a.update(AOR, [self.binding(5090)]))
        self.assertIsNotNone(self.successResultOf(self.store.get("/scX/aor/" + AOR)))

    def test_a_watch_event_older_than_our_own_write_does_not_roll_the_cache_back(self):
        store = OneEventATurn(self.clock)
        a, b = self.service(store), self.service(store)
        bob = "sip:bob@example.test"
        self.successResultOf(a.update(AOR, [self.binding(5090)]))
        self.successResultOf(a.update(AOR, [self.binding(5091)]))
        self.successResultOf(b.update(bob, [self.binding(5092, aor=bob)]))
        self.clock.advance(0)  # the first write's event only
        self.assertEqual(len(a.lookup(AOR)), 2)
        self.clock.advance(0.01)
        self.assertEqual(len(a.lookup(AOR)), 2)
        self.clock.advance(0.01)
        (seen,) = a.lookup(bob)
        self.assertEqual(seen.aor, bob)

    def test_a_stale_event_does_not_hide_the_rest_of_its_batch(self):
        a, b = self.service(), self.service()
        bob = "sip:bob@example.test"
        self.successResultOf(a.update(AOR, [self.binding(5090)]))
        self.successResultOf(a.update(AOR, [self.binding(5091)]))  # the first event is stale now
        self.successResultOf(b.update(bob, [self.binding(5092, aor=bob)]))
        self.clock.advance(0)
        self.assertEqual([x.aor for x in a.lookup(bob)], [bob])
        self.assertEqual(len(a.lookup(AOR)), 2)

    def test_updates_of_one_aor_on_one_node_are_serialized_and_then_forgotten(self):
        location = self.service(SlowWrites(self.clock))
        first = location.update(AOR, [self.binding(5090)])
        second = location.update(AOR, [self.binding(5091)])
        self.clock.advance(1)
        self.successResultOf(first)
        third = location.update(AOR, [self.binding(5092)])  # while the second is writing
        self.clock.pump([1, 1])
        self.assertEqual(len(self.successResultOf(second)), 2)
        self.assertEqual(len(self.successResultOf(third)), 3)
        self.assertEqual(location.conflicts, 0)  # none raced another on this node
        # Once done, no lock is kept for the AOR (100,000 AORs would keep 100,000).
        self.assertEqual(location._locks, {})

    def test_bindings_answers_from_the_cache(self):
        location = self.service()
        self.successResultOf(location.update(AOR, [self.binding(5090)]))
        self.assertEqual([str(b.contact) for b in self.successResultOf(location.bindings(AOR))],
                         ["sip:alice@127.0.0.1:5090"])
        self.assertEqual(self.successResultOf(location.bindings("sip:bob@example.test")), [])

    def test_a_stopped_service_follows_no_more(self):
        a, b = self.service(), self.service()
        b.stop()
        b.stop()  # twice is harmless
        self.successResultOf(a.update(AOR, [self.binding(5090)]))
        self.clock.advance(0)
        self.assertEqual(b.lookup(AOR), [])

    def test_expired_bindings_are_not_current_at_their_expiry_exactly(self):
        location = self.service()
        self.successResultOf(location.update(AOR, [self.binding(5090, expires=100), self.binding(5091)]))
        self.clock.advance(100)
        self.assertEqual([str(b.contact) for b in location.lookup(AOR)], ["sip:alice@127.0.0.1:5091"])
        self.assertEqual(len(list(location.all_bindings())), 1)
        # A change rewrites the record without them.
        self.successResultOf(location.update(AOR, [self.binding(5092)]))
        self.assertEqual([b["contact"] for b in self.stored()], ["sip:alice@127.0.0.1:5091", "sip:alice@127.0.0.1:5092"])

    def test_removing_what_is_not_stored_writes_nothing(self):
        location = self.service()
        revision = self.store.revision
        self.assertEqual(self.successResultOf(location.update(AOR, [self.binding(5090, expires=0)])), [])
        self.assertEqual(self.store.revision, revision)
        self.assertEqual(location.conflicts, 0)

    def test_records_expire_with_their_bucket_lease(self):
        # Expiry 3600 falls in the bucket ending at 3900; its lease outlives it by 30 s.
        location = self.service()
        self.successResultOf(location.update(AOR, [self.binding(5090, expires=3600)]))
        self.clock.advance(3929.9)
        self.assertIsNotNone(self.stored())
        self.clock.advance(0.1)
        self.assertIsNone(self.stored())
        self.assertEqual(location.aors, 0)  # the delete came by the watch

    def test_unreadable_records_and_entries_are_skipped(self):
        for key, value in (("sip:a@example.test", b"\xff not utf-8"), ("sip:b@example.test", b"not json"),
                           ("sip:c@example.test", b'{"contact": "sip:c@127.0.0.1"}'), ("sip:d@example.test", b"5")):
            self.store.put("/sc/aor/" + key, value)
        good = {"contact": "sip:alice@127.0.0.1:5090", "expires_at": 100}
        entries = [{"expires_at": 100}, {"contact": "not a uri", "expires_at": 100},
                   {"contact": "sip:alice@127.0.0.1:5091", "expires_at": "soon"},
                   {"contact": "sip:alice@127.0.0.1:5092", "expires_at": 100, "cseq": None}, good]
        self.store.put("/sc/aor/" + AOR, json.dumps(entries).encode("utf-8"))
        location = self.service()
        (loaded,) = location.lookup(AOR)
        # The defaults of a minimal entry.
        self.assertEqual((str(loaded.contact), loaded.q, loaded.call_id, loaded.cseq, loaded.path,
                          loaded.received, loaded.instance, loaded.reg_id, loaded.node),
                         ("sip:alice@127.0.0.1:5090", 1.0, "", 0, [], None, None, None, None))
        for aor in ("sip:a@example.test", "sip:b@example.test", "sip:c@example.test", "sip:d@example.test"):
            self.assertEqual(location.lookup(aor), [])

    def test_a_write_racing_another_nodes_is_merged_after_a_short_backoff(self):
        a, b = self.service(), self.service()
        self.successResultOf(b.update(AOR, [self.binding(5091)]))
        # a has not seen b's write yet: its compare-and-swap fails.
        d = a.update(AOR, [self.binding(5090)])
        self.assertEqual(a.conflicts, 1)
        self.clock.advance(0.0009)
        self.assertNoResult(d)  # backing off (1 to 20 ms)
        self.clock.advance(0.0191)
        self.assertEqual(sorted(str(x.contact) for x in self.successResultOf(d)),
                         ["sip:alice@127.0.0.1:5090", "sip:alice@127.0.0.1:5091"])
        self.assertEqual(len(self.stored()), 2)

    def test_a_removal_racing_another_nodes_write_keeps_that_write(self):
        a, b = self.service(), self.service()
        self.successResultOf(a.update(AOR, [self.binding(5090)]))
        self.clock.advance(0)
        self.successResultOf(b.update(AOR, [self.binding(5091)]))
        d = a.update(AOR, [self.binding(5090, expires=0)])  # a's delete-if fails: b wrote since
        self.assertEqual(a.conflicts, 1)
        self.clock.advance(0.02)
        self.assertEqual([str(x.contact) for x in self.successResultOf(d)], ["sip:alice@127.0.0.1:5091"])
        self.assertEqual([x["contact"] for x in self.stored()], ["sip:alice@127.0.0.1:5091"])

    def test_too_many_conflicts_fail_the_update(self):
        store = AlwaysConflicting(self.clock)
        location = self.service(store)
        d = location.update(AOR, [self.binding(5090)])
        self.clock.pump([0.02] * 10)
        failure = self.failureResultOf(d, StoreUnavailable)
        self.assertEqual(str(failure.value), "too many conflicting updates of " + AOR)
        self.assertEqual((store.replaced, location.conflicts), (8, 8))

    def test_updates_of_one_aor_on_one_node_wait_for_each_other(self):
        location = self.service()
        first = location.update(AOR, [self.binding(5090)])
        second = location.update(AOR, [self.binding(5091)])
        self.successResultOf(first)
        self.assertEqual(len(self.successResultOf(second)), 2)
        self.assertEqual(location.conflicts, 0)

    def test_sweep_cleans_the_cache_and_the_leaders_purges_the_store(self):
        a, b = self.service(), self.service()
        bob, carol = "sip:bob@example.test", "sip:carol@example.test"
        self.successResultOf(a.update(carol, [self.binding(5093, aor=carol)]))  # nothing expires
        self.successResultOf(a.update(AOR, [self.binding(5090, expires=10), self.binding(5091)]))
        self.successResultOf(a.update(bob, [self.binding(5092, expires=10, aor=bob)]))
        self.clock.advance(0)
        self.clock.advance(10)
        self.assertEqual(b.sweep(), 2)
        self.assertEqual(b.sweep(), 0)
        self.assertEqual((b.aors, len(b.lookup(AOR))), (2, 1))
        self.assertEqual(len(self.stored()), 2)  # a follower only cleans its own cache
        self.assertIsNotNone(self.stored(bob))
        self.assertEqual((a.sweep(purge=True), a.purged), (2, 2))
        self.assertEqual([x["contact"] for x in self.stored()], ["sip:alice@127.0.0.1:5091"])
        self.assertIsNone(self.stored(bob))
        self.assertEqual((a.sweep(purge=True), a.purged), (0, 2))

    def test_the_purge_is_bounded_per_sweep(self):
        location = self.service()
        location.PURGE_BATCH = 2
        aors = ["sip:u%d@example.test" % i for i in range(3)]
        for aor in aors:
            self.successResultOf(location.update(aor, [self.binding(5090, expires=10, aor=aor)]))
        self.clock.advance(10)
        self.assertEqual(location.sweep(purge=True), 2)
        self.assertEqual(location.purged, 2)
        self.assertEqual([self.stored(aor) is None for aor in aors], [True, True, False])
        # The third is purged at the next sweep, not forgotten.
        self.assertEqual(location.aors, 1)
        self.assertEqual(location.lookup(aors[2]), [])
        self.assertEqual((location.sweep(purge=True), location.purged), (1, 3))
        self.assertEqual([self.stored(aor) for aor in aors], [None, None, None])
        self.assertEqual(location.aors, 0)

    def test_a_failed_purge_is_logged_and_tried_at_the_next_sweep(self):
        location = self.service()
        self.successResultOf(location.update(AOR, [self.binding(5090, expires=10), self.binding(5091)]))
        location.store = StoreUnavailableOnWrite(self.clock)
        self.clock.advance(10)
        with capturedLogs() as events:
            self.assertEqual(location.sweep(purge=True), 1)
        self.assertEqual([formatEvent(e) for e in events if e.get("log_namespace", "").endswith("EtcdLocationService")],
                         ["cannot purge expired bindings of %s: etcd away" % AOR])
        self.assertEqual(location.sweep(purge=True), 1)  # still in the cache
