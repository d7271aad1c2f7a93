"""
One contract, two stores: every test here runs against L{MemoryStore} and
against L{EtcdStore} on a real etcd, so the single node's store behaves as
the cluster's does.
"""

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from sipcluster.cluster.etcd import EtcdStore
from sipcluster.cluster.store import IClusterStore, LeaseBuckets, LeaseNotFound, MemoryStore, json_record
from tests.cluster.etcdserver import etcd_for, requires_etcd
from tests.cluster.test_etcd import eventually, sleep


class StoreContract:
    """Mixed into a TestCase whose C{make_store} returns a started store."""

    timeout = 60

    def setUp(self):
        self.store = self.make_store()
        self.addCleanup(self.store.stop)

    def test_provides_the_interface(self):
        self.assertTrue(verifyObject(IClusterStore, self.store))

    @defer.inlineCallbacks
    def test_writes_get_increasing_revisions_and_reads_come_in_key_order(self):
        r1 = yield self.store.put("/t/b", b"2")
        r2 = yield self.store.put("/t/a", b"1")
        r3 = yield self.store.put("/t/b", b"3")
        self.assertTrue(r1 < r2 < r3)
        self.assertEqual((yield self.store.get("/t/b")), b"3")
        self.assertIsNone((yield self.store.get("/t/none")))
        items, revision = yield self.store.get_prefix("/t/")
        self.assertEqual(items, [("/t/a", b"1", r2), ("/t/b", b"3", r3)])
        self.assertGreaterEqual(revision, r3)
        self.assertTrue((yield self.store.delete("/t/a")))
        self.assertFalse((yield self.store.delete("/t/a")))

    @defer.inlineCallbacks
    def test_create_and_compare_and_swap(self):
        self.assertTrue((yield self.store.create("/c/k", b"first")))
        self.assertFalse((yield self.store.create("/c/k", b"second")))
        self.assertEqual((yield self.store.get("/c/k")), b"first")
        self.assertEqual((yield self.store.replace("/c/new", b"x", 99)), 0)
        made = yield self.store.replace("/c/new", b"x", 0)
        self.assertTrue(made)
        self.assertEqual((yield self.store.replace("/c/new", b"y", 0)), 0)  # exists now
        self.assertEqual((yield self.store.replace("/c/new", b"y", made - 1)), 0)
        again = yield self.store.replace("/c/new", b"y", made)
        self.assertGreater(again, made)
        self.assertFalse((yield self.store.delete_if("/c/new", made)))
        self.assertTrue((yield self.store.delete_if("/c/new", again)))
        self.assertIsNone((yield self.store.get("/c/new")))

    @defer.inlineCallbacks
    def test_revoking_a_lease_removes_its_keys_and_it_cannot_be_used_again(self):
        lease = yield self.store.grant(30)
        yield self.store.put("/l/a", b"1", lease=lease)
        yield self.store.put("/l/b", b"2")
        self.assertEqual((yield self.store.refresh(lease)), 30)
        made = yield self.store.replace("/l/swapped", b"3", 0, lease=lease)
        yield self.store.replace("/l/swapped", b"4", made, lease=lease)
        yield self.store.revoke(lease)
        items, _ = yield self.store.get_prefix("/l/")
        # Keys written by compare-and-swap under the lease go with it too.
        self.assertEqual([k for k, _, _ in items], ["/l/b"])
        gone = yield self.assertFailure(self.store.refresh(lease), LeaseNotFound)
        self.assertEqual(gone.args, (lease,))  # names the lease, as the memory store's does
        yield self.assertFailure(self.store.put("/l/c", b"3", lease=lease), LeaseNotFound)
        yield self.assertFailure(self.store.create("/l/c", b"3", lease=lease), LeaseNotFound)

    @defer.inlineCallbacks
    def test_follow_lists_then_delivers_later_changes_in_a_later_turn(self):
        yield self.store.put("/w/old", b"0")
        last = yield self.store.put("/other", b"x")
        listed, events = [], []
        watch = yield self.store.follow("/w/", events.extend, lambda items, rev: listed.append((items, rev)))
        # Listed at the store's revision then: the last write's.
        self.assertEqual([([(k, v) for k, v, _ in items], rev) for items, rev in listed],
                         [([("/w/old", b"0")], last)])
        written = self.store.put("/w/new", b"1")
        # Never inside the write.  (Checked before its answer: etcd's watch
        # thread may hand the event over before the pool thread the reply.)
        self.assertEqual(events, [])
        rev = yield written
        yield self.store.put("/else", b"y")
        yield self.store.delete("/w/old")
        yield eventually(lambda: len(events) == 2)
        self.assertEqual(events[0], ("put", "/w/new", b"1", rev))
        self.assertEqual(events[1][:2], ("delete", "/w/old"))
        watch.stop()
        yield self.store.put("/w/after", b"2")
        yield sleep(0.3)
        self.assertEqual(len(events), 2)

    @defer.inlineCallbacks
    def test_keys_of_an_unrefreshed_lease_expire_with_a_delete_event(self):
        lease = yield self.store.grant(2)
        events = []
        yield self.store.follow("/e/", events.extend, lambda items, rev: None)
        yield self.store.put("/e/k", b"1", lease=lease)
        yield eventually(lambda: ("delete", "/e/k") in [e[:2] for e in events], timeout=8)
        self.assertIsNone((yield self.store.get("/e/k")))

    @defer.inlineCallbacks
    def test_lease_buckets_grant_anew_when_the_store_lost_a_lease(self):
        buckets = LeaseBuckets(self.store, reactor, bucket=300, margin=30)
        first = yield buckets.lease_for(reactor.seconds() + 100)
        yield self.store.revoke(first)
        revision = yield buckets.write(reactor.seconds() + 100,
                                       lambda lease: self.store.put("/b/k", b"1", lease=lease))
        self.assertTrue(revision)
        self.assertNotEqual((yield buckets.lease_for(reactor.seconds() + 100)), first)


class MemoryStoreTests(StoreContract, unittest.TestCase):
    def make_store(self):
        store = MemoryStore(reactor)
        store.start()
        return store


@requires_etcd
class EtcdStoreContractTests(StoreContract, unittest.TestCase):
    def make_store(self):
        etcd = etcd_for(getattr(self, self._testMethodName))
        self.addCleanup(etcd.stop)
        store = EtcdStore(reactor, [etcd.endpoint], timeout=2.0)
        store.start()
        return store


class MemoryStoreClockTests(unittest.TestCase):
    """What the memory store does on a Clock: time is the test's."""

    def test_lease_expires_exactly_after_its_ttl_unless_refreshed(self):
        clock = Clock()
        store = MemoryStore(clock)
        lease = store.grant(10).result
        store.put("/k", b"v", lease=lease)
        clock.advance(9)
        store.refresh(lease)
        clock.advance(9.9)
        self.assertEqual(store.get("/k").result, b"v")
        clock.advance(0.1)
        self.assertIsNone(store.get("/k").result)
        self.failureResultOf(store.refresh(lease), LeaseNotFound)

    def test_rewriting_a_key_under_another_lease_moves_it(self):
        clock = Clock()
        store = MemoryStore(clock)
        short, long_ = store.grant(5).result, store.grant(50).result
        store.put("/k", b"1", lease=short)
        store.put("/k", b"2", lease=long_)
        clock.advance(6)
        self.assertEqual(store.get("/k").result, b"2")
        store.put("/k", b"3")  # no lease now: outlives them all
        clock.advance(60)
        self.assertEqual(store.get("/k").result, b"3")

    def test_stop_cancels_every_timer(self):
        clock = Clock()
        store = MemoryStore(clock)
        store.follow("/", lambda events: None, lambda items, rev: None)
        store.grant(5)
        store.put("/k", b"1")
        store.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_revisions_start_as_a_fresh_etcds_and_every_write_takes_the_next(self):
        store = MemoryStore(Clock())
        self.assertEqual(store.get_prefix("/").result, ([], 1))
        self.assertEqual(store.put("/a", b"1").result, 2)
        self.assertTrue(store.delete("/a").result)
        self.assertEqual(store.put("/b", b"1").result, 4)
        self.assertEqual(store.replace("/b", b"2", 4).result, 5)
        self.assertTrue(store.delete_if("/b", 5).result)
        self.assertEqual(store.revision, 6)

    def test_watches_get_what_happened_under_their_prefix_only(self):
        clock = Clock()
        store = MemoryStore(clock)
        store.put("/a/old", b"0")
        a_events, b_events, resyncs = [], [], []
        store.follow("/a/", a_events.append, lambda items, rev: resyncs.append((items, rev)))
        store.follow("/b/", b_events.append, lambda items, rev: None)
        self.assertEqual(resyncs, [([("/a/old", b"0", 2)], 2)])  # listed at the revision it read
        store.put("/a/k", b"1")
        store.delete("/a/k")
        clock.advance(0)
        # A delete carries an empty value, as etcd's do; the other watch hears nothing.
        self.assertEqual(a_events, [[("put", "/a/k", b"1", 3), ("delete", "/a/k", b"", 4)]])
        self.assertEqual(b_events, [])

    def test_a_watch_stopped_by_another_ones_events_gets_nothing_more(self):
        clock = Clock()
        store = MemoryStore(clock)
        got, watches = [], {}

        def first_events(events):
            got.append("first")
            watches["second"].stop()
        store.follow("/", first_events, lambda items, rev: None)
        watches["second"] = store.follow("/", lambda events: got.append("second"),
                                         lambda items, rev: None).result
        store.put("/k", b"1")
        clock.advance(0)
        self.assertEqual(got, ["first"])

    def test_a_deleted_key_written_again_without_lease_outlives_its_old_lease(self):
        clock = Clock()
        store = MemoryStore(clock)
        lease = store.grant(10).result
        store.put("/k", b"1", lease=lease)
        store.delete("/k")
        store.put("/k", b"2")
        clock.advance(10)
        self.assertEqual(store.get("/k").result, b"2")
        other = store.grant(10).result
        store.put("/j", b"1", lease=other)
        store.delete("/j")
        store.put("/j", b"2")
        store.revoke(other)
        self.assertEqual(store.get("/j").result, b"2")

    def test_a_write_or_refresh_naming_a_lease_that_is_gone_names_it(self):
        store = MemoryStore(Clock())
        lease = store.grant(10).result
        store.revoke(lease)
        for d in (store.put("/k", b"1", lease=lease), store.refresh(lease)):
            self.assertEqual(self.failureResultOf(d, LeaseNotFound).value.args, (lease,))

    def test_json_record_is_an_object_or_none(self):
        self.assertEqual(json_record(b'{"a": 1}'), {"a": 1})
        for value in (b"[1]", b"1", b"not json", b"\xff", None):
            self.assertIsNone(json_record(value))
