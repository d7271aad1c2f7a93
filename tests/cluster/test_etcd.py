"""The etcd adapter against a real etcd server (tests/cluster/etcdserver.py)."""

import os
import time

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from sipcluster.cluster.etcd import EtcdStore, EtcdUnavailable, PrefixWatch
from sipcluster.cluster.store import LeaseNotFound
from tests.cluster.etcdserver import EtcdServer, SharedEtcd, etcd_for, own_etcd, requires_etcd


def cpu_seconds():
    t = os.times()
    return t.user + t.system


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


@defer.inlineCallbacks
def eventually(check, timeout=10.0, step=0.05):
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in %ss" % timeout)
        yield sleep(step)


@requires_etcd
class EtcdStoreTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.etcd = etcd_for(getattr(self, self._testMethodName))
        self.addCleanup(self.etcd.stop)
        self.store = EtcdStore(reactor, [self.etcd.endpoint], timeout=1.0)
        self.store.start()
        self.addCleanup(self.store.stop)

    @defer.inlineCallbacks
    def test_put_get_prefix_delete(self):
        rev1 = yield self.store.put("/t/a", b"1")
        rev2 = yield self.store.put("/t/b", b"2")
        self.assertGreater(rev2, rev1)
        self.assertEqual((yield self.store.get("/t/a")), b"1")
        items, revision = yield self.store.get_prefix("/t/")
        self.assertEqual([(k, v) for k, v, _ in items], [("/t/a", b"1"), ("/t/b", b"2")])
        self.assertEqual(revision, rev2)
        yield self.store.delete("/t/a")
        self.assertIsNone((yield self.store.get("/t/a")))

    @defer.inlineCallbacks
    def test_large_prefix_is_read_in_pages_at_one_revision(self):
        from sipcluster.cluster import etcd as adapter
        for i in range(30):
            yield self.store.put("/big/%02d" % i, b"x" * 100)
        stub = self.store._client.kvstub
        calls = []
        original = stub.Range

        def counting(request, *args, **kwargs):
            calls.append((request.limit, request.revision))
            return original(request, *args, **kwargs)
        stub.Range = counting
        self.addCleanup(setattr, stub, "Range", original)
        items, revision = yield self.store._call(adapter.read_prefix, "/big/", 7)
        self.assertEqual([k for k, _, _ in items], ["/big/%02d" % i for i in range(30)])
        # Five pages of at most 7, the first fixing the revision the others use.
        self.assertEqual(len(calls), 5)
        self.assertEqual({limit for limit, _ in calls}, {7})
        self.assertEqual([rev for _, rev in calls[1:]], [revision] * 4)
        last = yield self.store.put("/other", b"y")
        self.assertEqual(revision, last - 1)

    @defer.inlineCallbacks
    def test_a_page_ending_on_a_key_that_prefixes_the_next_loses_none(self):
        from sipcluster.cluster import etcd as adapter
        keys = ["/n/1", "/n/1/2", "/n/1/2/3", "/n/10", "/n/1X", "/n/1XX"]
        for key in keys:
            yield self.store.put(key, b"v")
        items, _ = yield self.store._call(adapter.read_prefix, "/n/", 1)
        self.assertEqual([k for k, _, _ in items], sorted(keys))

    @defer.inlineCallbacks
    def test_a_call_on_a_client_a_watch_error_closed_fails_as_reconnecting(self):
        from sipcluster.cluster.etcd import close_client
        lease = yield self.store.grant(30)
        close_client(self.store._client)  # what a watch error does, in etcd3's thread
        # grpc words it two ways: "Cannot invoke RPC on closed channel!" for
        # a call, "Cannot invoke RPC: Channel closed!" for a stream (refresh).
        for call in (self.store.get("/t/a"), self.store.get_prefix("/t/"), self.store.refresh(lease)):
            failed = yield self.assertFailure(call, EtcdUnavailable)
            self.assertEqual(str(failed), "client reconnecting")

    @defer.inlineCallbacks
    def test_an_error_that_is_not_etcds_is_not_passed_off_as_etcd_away(self):
        def broken(client):
            client.get("/t/a")
            raise ValueError("a bug of ours")
        failed = yield self.assertFailure(self.store._call(broken), ValueError)
        self.assertEqual(str(failed), "a bug of ours")

    @defer.inlineCallbacks
    def test_calls_run_on_a_pool_of_its_own_one_thread_idle_eight_at_most(self):
        import threading
        self.assertEqual(self.store.pool.workers, 1)
        name = yield self.store._call(lambda client: threading.current_thread().name)
        self.assertTrue(name.startswith("PoolThread-etcd-"), name)
        release, running = threading.Event(), []

        def held(client):
            running.append(threading.current_thread().name)
            release.wait(10)
        calls = [self.store._call(held) for _ in range(10)]
        self.addCleanup(release.set)
        yield eventually(lambda: len(running) == 8)
        yield sleep(0.3)
        self.assertEqual(len(running), 8)  # the node's store: threads=8
        release.set()
        yield defer.gatherResults(calls)
        self.assertEqual(len(running), 10)
        pool = self.store.pool
        self.store.stop()
        self.assertEqual((pool.started, pool.workers, self.store.pool), (False, 0, None))

    @own_etcd
    @defer.inlineCallbacks
    def test_an_endpoint_on_another_port(self):
        self.etcd.stop()
        self.etcd = EtcdServer(port=23790)
        self.addCleanup(self.etcd.stop)
        store = EtcdStore(reactor, [self.etcd.endpoint], timeout=1.0)
        store.start()
        self.addCleanup(store.stop)
        self.assertEqual(store.endpoint, "%s:23790" % self.etcd.host)
        yield store.put("/t/p", b"1")
        self.assertEqual((yield store.get("/t/p")), b"1")

    @defer.inlineCallbacks
    def test_closing_a_client_ends_its_watch_thread_quietly(self):
        import threading
        thrown = []
        self.patch(threading, "excepthook", lambda args: thrown.append(args.exc_type))
        _, revision = yield self.store.get_prefix("/q/")
        self.store.watch_prefix("/q/", lambda events: None, lambda items, rev: None, revision + 1)
        yield sleep(0.3)
        thread = self.store._client.watcher._callback_thread
        self.store.stop()
        yield eventually(lambda: not thread.is_alive(), timeout=5)
        self.assertEqual([t for t in thrown if t is not SystemExit], [])

    @defer.inlineCallbacks
    def test_create_if_absent_has_one_winner(self):
        results = yield defer.gatherResults([
            self.store.create("/t/leader", b"node-%d" % i) for i in range(8)])
        self.assertEqual(sorted(results), [False] * 7 + [True])
        winner = yield self.store.get("/t/leader")
        self.assertIn(winner, [b"node-%d" % i for i in range(8)])

    @defer.inlineCallbacks
    def test_compare_and_swap(self):
        self.assertTrue((yield self.store.replace("/t/x", b"a", 0)))
        self.assertFalse((yield self.store.replace("/t/x", b"b", 0)))
        items, _ = yield self.store.get_prefix("/t/x")
        (key, value, mod), = items
        self.assertTrue((yield self.store.replace("/t/x", b"b", mod)))
        self.assertFalse((yield self.store.replace("/t/x", b"c", mod)))  # stale
        self.assertEqual((yield self.store.get("/t/x")), b"b")

    @defer.inlineCallbacks
    def test_lease_keeps_and_drops_keys(self):
        lease = yield self.store.grant(2)
        yield self.store.put("/t/live", b"x", lease=lease)
        for _ in range(3):
            yield sleep(1)
            yield self.store.refresh(lease)
        self.assertEqual((yield self.store.get("/t/live")), b"x")
        yield self.store.revoke(lease)
        self.assertIsNone((yield self.store.get("/t/live")))

    @own_etcd
    @defer.inlineCallbacks
    def test_a_lease_of_the_shortest_ttl_is_alive_while_refreshed(self):
        # etcd's shortest lease is 1.5 election timeouts rounded up to a
        # second: 2 s with the default timings, 1 s with these.
        self.etcd.stop()
        self.etcd = EtcdServer(args=["--heartbeat-interval", "10", "--election-timeout", "100"])
        self.addCleanup(self.etcd.stop)
        store = EtcdStore(reactor, [self.etcd.endpoint], timeout=1.0)
        store.start()
        self.addCleanup(store.stop)
        lease = yield store.grant(1)
        yield store.put("/t/short", b"x", lease=lease)
        self.assertEqual((yield store.refresh(lease)), 1)
        yield store.revoke(lease)
        yield self.assertFailure(store.refresh(lease), LeaseNotFound)

    @defer.inlineCallbacks
    def test_a_write_under_a_lease_gone_fails_with_what_etcd_said(self):
        lease = yield self.store.grant(30)
        yield self.store.revoke(lease)
        gone = yield self.assertFailure(self.store.put("/t/k", b"1", lease=lease), LeaseNotFound)
        self.assertEqual(gone.args, ("NOT_FOUND: etcdserver: requested lease not found",))

    @defer.inlineCallbacks
    def test_watch_delivers_in_order_from_a_revision(self):
        _, revision = yield self.store.get_prefix("/w/")
        seen = []
        self.store.watch_prefix("/w/", seen.extend, lambda items, rev: None, revision + 1)
        yield sleep(0.3)
        yield self.store.put("/w/a", b"1")
        yield self.store.put("/w/b", b"2")
        yield self.store.delete("/w/a")
        yield eventually(lambda: len(seen) == 3)
        self.assertEqual([(kind, key) for kind, key, _, _ in seen],
                         [("put", "/w/a"), ("put", "/w/b"), ("delete", "/w/a")])

    @defer.inlineCallbacks
    def test_a_followed_prefix_told_its_events_were_compacted_lists_it_again(self):
        import etcd3.exceptions
        yield self.store.put("/f/a", b"1")
        listed, events = [], []
        watch = yield self.store.follow("/f/", events.extend, lambda items, rev: listed.append((items, rev)))
        yield sleep(0.3)
        last = yield self.store.put("/f/b", b"2")
        yield eventually(lambda: len(events) == 1)
        # What etcd3's watch thread hands over when etcd compacted the
        # revisions the watch wanted.
        reactor.callInThread(watch._from_thread, watch._client, etcd3.exceptions.RevisionCompactedError(last))
        yield eventually(lambda: len(listed) == 2)
        self.assertEqual([(k, v) for k, v, _ in listed[1][0]], [("/f/a", b"1"), ("/f/b", b"2")])
        self.assertEqual(listed[1][1], last)
        # And it watches on from there.
        after = yield self.store.put("/f/c", b"3")
        yield eventually(lambda: len(events) == 2)
        self.assertEqual(events[1], ("put", "/f/c", b"3", after))

    def watchers(self):
        """The watches etcd serves (its own metrics, on the client port)."""
        import re
        import urllib.request
        with urllib.request.urlopen(self.etcd.endpoint + "/metrics", timeout=5) as answer:
            body = answer.read().decode()
        return int(float(re.search(r"^etcd_debugging_mvcc_watcher_total (\S+)$", body, re.M).group(1)))

    @defer.inlineCallbacks
    def test_a_stopped_watch_is_cancelled_in_etcd(self):
        yield eventually(lambda: self.watchers() == 0)
        _, revision = yield self.store.get_prefix("/x/")
        x = self.store.watch_prefix("/x/", lambda events: None, lambda items, rev: None, revision + 1)
        y = self.store.watch_prefix("/y/", lambda events: None, lambda items, rev: None, revision + 1)
        yield eventually(lambda: self.watchers() == 2)
        x.stop()
        yield eventually(lambda: self.watchers() == 1)
        self.assertEqual(self.store._watches, [y])
        y.stop()
        yield eventually(lambda: self.watchers() == 0)

    @defer.inlineCallbacks
    def test_a_watch_stopped_before_etcd_confirmed_it_is_cancelled_too(self):
        yield eventually(lambda: self.watchers() == 0)
        _, revision = yield self.store.get_prefix("/x/")
        events = []
        watch = self.store.watch_prefix("/x/", events.extend, lambda items, rev: None, revision + 1)
        watch.stop()  # etcd3 is still creating it, in a pool thread
        yield sleep(0.5)
        yield eventually(lambda: self.watchers() == 0)
        yield self.store.put("/x/a", b"1")
        yield sleep(0.3)
        self.assertEqual(events, [])

    @own_etcd
    @defer.inlineCallbacks
    def test_etcd_down_fails_fast_and_watch_resumes_after_restart_without_spinning(self):
        from twisted.logger import capturedLogs, formatEvent
        _, revision = yield self.store.get_prefix("/w/")
        seen = []
        watch = self.store.watch_prefix("/w/", seen.extend, lambda items, rev: None, revision + 1)
        yield sleep(0.3)
        yield self.store.put("/w/before", b"1")
        yield eventually(lambda: len(seen) == 1)
        with capturedLogs() as logs:
            self.etcd.kill()
            started = time.monotonic()
            with self.assertRaises(EtcdUnavailable):
                yield self.store.put("/w/down", b"x")
            self.assertLess(time.monotonic() - started, 1.5)
            # A range read is a gRPC call of our own (read_prefix): its error
            # is named by its status.  (One that lands while the watch's
            # error has just closed the client, before the reactor made the
            # next, is "client reconnecting", by design: ask again.)
            for _ in range(20):
                down = yield self.assertFailure(self.store.get_prefix("/w/"), EtcdUnavailable)
                if str(down) != "client reconnecting":
                    break
                yield sleep(0.05)
            self.assertTrue(str(down).startswith("UNAVAILABLE: "), str(down))
            # No busy loop while etcd is away.
            before = cpu_seconds()
            yield sleep(2)
            self.assertLess(cpu_seconds() - before, 0.5)
            self.etcd.start()
            # A write right after the restart is seen by the resumed watch.
            yield eventually(lambda: watch.restarts >= 1, timeout=15)
        # The stream's end is logged with the gRPC status etcd3 handed over.
        lines = [formatEvent(e) for e in logs if "watch on /w/ lost" in formatEvent(e)]
        self.assertTrue(lines[0].startswith("etcd watch on /w/ lost (UNAVAILABLE: "), lines)
        yield self._put_when_up("/w/after", b"2")
        yield eventually(lambda: [k for _, k, _, _ in seen] == ["/w/before", "/w/after"], timeout=15)

    @defer.inlineCallbacks
    def _put_when_up(self, key, value):
        deadline = time.monotonic() + 15
        while True:
            try:
                yield self.store.put(key, value)
                return
            except EtcdUnavailable:
                if time.monotonic() > deadline:
                    raise
                yield sleep(0.2)

    @own_etcd
    @defer.inlineCallbacks
    def test_hung_etcd_times_out_and_stop_is_quick(self):
        yield self.store.put("/t/a", b"1")
        self.etcd.pause()
        self.addCleanup(self.etcd.resume)
        started = time.monotonic()
        with self.assertRaises(EtcdUnavailable):
            yield self.store.get("/t/a")
        self.assertLess(time.monotonic() - started, 3)
        started = time.monotonic()  # a range read of our own has the timeout too
        with self.assertRaises(EtcdUnavailable):
            yield self.store.get_prefix("/t/")
        self.assertLess(time.monotonic() - started, 3)
        started = time.monotonic()
        self.store.stop()
        self.assertLess(time.monotonic() - started, 3)

    @defer.inlineCallbacks
    def test_watch_from_a_compacted_revision_re_lists(self):
        for i in range(5):
            yield self.store.put("/c/k%d" % i, b"v%d" % i)
        last = yield self.store.put("/c/k0", b"new")
        yield self.store._call(lambda c: c.compact(last))
        resyncs = []
        events = []
        self.store.watch_prefix("/c/", events.extend,
                                lambda items, rev: resyncs.append((items, rev)), 2)
        yield eventually(lambda: resyncs)
        items, revision = resyncs[0]
        self.assertEqual(sorted((k, v) for k, v, _ in items),
                         [("/c/k0", b"new")] + [("/c/k%d" % i, b"v%d" % i) for i in range(1, 5)])
        self.assertEqual(revision, last)
        # And it goes on watching after the list.
        yield self.store.put("/c/after", b"x")
        yield eventually(lambda: [k for _, k, _, _ in events] == ["/c/after"])


class EndpointFailoverTests(unittest.TestCase):
    """Which endpoint calls go to, as calls fail (no etcd needed)."""

    def store(self, endpoints):
        store = EtcdStore(reactor, endpoints)
        store.pool = object()  # started, as far as reconnect cares
        store._new_client = lambda: object()
        store._client = store._new_client()
        return store

    def fail(self, store, error=None):
        from twisted.python.failure import Failure
        failure = Failure(error or EtcdUnavailable("DEADLINE_EXCEEDED"))
        self.assertIs(store._unanswered(failure, store._client), failure)

    def test_two_failures_in_a_row_move_to_the_next_endpoint_and_round(self):
        from twisted.logger import LogLevel, capturedLogs, formatEvent
        store = self.store(["http://127.0.0.2:2379", "http://127.0.0.3:2379"])
        with capturedLogs() as logs:
            self.fail(store)
            self.assertEqual(store.endpoint, "127.0.0.2:2379")
            self.assertEqual(logs, [])
            self.fail(store)
        self.assertEqual((store.endpoint, store.reconnects), ("127.0.0.3:2379", 1))
        self.assertEqual([(e["log_level"], formatEvent(e)) for e in logs], [
            (LogLevel.warn, "etcd at 127.0.0.2:2379 is not answering (DEADLINE_EXCEEDED); trying the next endpoint")])
        self.fail(store)
        self.fail(store)
        self.assertEqual(store.endpoint, "127.0.0.2:2379")

    def test_an_answer_in_between_keeps_the_endpoint(self):
        store = self.store(["http://127.0.0.2:2379", "http://127.0.0.3:2379"])
        self.fail(store)
        store._answered(None)
        self.fail(store)
        self.assertEqual((store.endpoint, store.reconnects), ("127.0.0.2:2379", 0))

    def test_other_errors_and_a_single_endpoint_never_reconnect(self):
        store = self.store(["http://127.0.0.2:2379", "http://127.0.0.3:2379"])
        for _ in range(3):
            self.fail(store, KeyError("no such lease"))
        single = self.store(["http://127.0.0.2:2379"])
        for _ in range(3):
            self.fail(single)
        self.assertEqual((store.reconnects, single.reconnects), (0, 0))

    def test_a_store_not_started_or_stopped_fails_calls_saying_so(self):
        store = EtcdStore(reactor, ["http://127.0.0.2:2379"])
        failure = self.failureResultOf(store.get("/k"), EtcdUnavailable)
        self.assertEqual(failure.getErrorMessage(), "store not started")
        store.stop()  # never started: nothing to stop, nothing raised
        store.start()
        store.stop()
        self.assertEqual(self.failureResultOf(store.put("/k", b"v"), EtcdUnavailable).getErrorMessage(),
                         "store not started")

    @defer.inlineCallbacks
    def test_no_etcd_at_the_endpoint_fails_calls_naming_etcd3s_error(self):
        from tests.integration.nodes import next_host
        store = EtcdStore(reactor, ["http://%s:2379" % next_host()], timeout=1.0)  # nobody there
        store.start()
        self.addCleanup(store.stop)
        failed = yield self.assertFailure(store.put("/k", b"v"), EtcdUnavailable)
        self.assertTrue(str(failed).startswith("ConnectionFailedError: "), str(failed))

    def test_the_reactor_s_shutdown_stops_a_started_store(self):
        from twisted.internet.testing import MemoryReactor
        fake = MemoryReactor()
        store = EtcdStore(fake, ["http://127.0.0.2:2379"])
        store.start()
        self.addCleanup(store.stop)
        self.assertEqual(fake.triggers, {"during": {"shutdown": [(store.stop, (), {})]}})

    def test_three_endpoints_are_tried_in_their_order_and_round(self):
        store = self.store(["http://127.0.0.2:2379", "http://127.0.0.3:2379", "http://127.0.0.4:2379"])
        seen = [store.endpoint]
        for _ in range(3):
            self.fail(store)
            self.fail(store)
            seen.append(store.endpoint)
        self.assertEqual(seen, ["127.0.0.2:2379", "127.0.0.3:2379", "127.0.0.4:2379", "127.0.0.2:2379"])
        self.assertEqual(store.reconnects, 3)

    def test_failures_of_a_client_already_replaced_do_not_count(self):
        store = self.store(["http://127.0.0.2:2379", "http://127.0.0.3:2379"])
        old = store._client
        store.reconnect()
        from twisted.python.failure import Failure
        for _ in range(3):
            store._unanswered(Failure(EtcdUnavailable("x")), old).trap(EtcdUnavailable)
        self.assertEqual(store.reconnects, 1)


@requires_etcd
class SharedEtcdTests(unittest.TestCase):
    """The opt-in shared etcd of the mutation run (tests/cluster/etcdserver.py)."""

    def setUp(self):
        self.server = EtcdServer()  # stands for the etcd started outside
        self.addCleanup(self.server.stop)

    def test_each_test_finds_it_empty_of_keys_and_leases(self):
        import etcd3
        import etcd3.etcdrpc
        client = etcd3.client(self.server.host, self.server.port, timeout=2)
        self.addCleanup(client.close)
        lease = client.lease(60)
        client.put("/a", b"1", lease=lease)
        client.put("/b/c", b"2")
        client.put("\x01", b"3")
        shared = SharedEtcd(self.server.endpoint)
        self.assertEqual(shared.endpoint, self.server.endpoint)
        self.assertEqual(list(client.get_all()), [])
        leases = client.leasestub.LeaseLeases(etcd3.etcdrpc.LeaseLeasesRequest(), 2)
        self.assertEqual(list(leases.leases), [])
        client.put("/d", b"4")
        # Another process's test waits for this one to end.
        script = ("import sys, time; sys.path.insert(0, %r); from tests.cluster.etcdserver import SharedEtcd; "
                  "print('waiting', flush=True); shared = SharedEtcd(%r); print(time.time(), flush=True); "
                  "shared.stop()" % (os.getcwd(), self.server.endpoint))
        import subprocess
        import sys
        other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        self.addCleanup(other.wait, 30)
        self.assertEqual(other.stdout.readline(), "waiting\n")
        time.sleep(1.0)
        self.assertEqual(client.get("/d")[0], b"4")  # not wiped under it
        released = time.time()
        shared.stop()  # wipes again: nothing for the next test
        shared.stop()  # once only
        self.assertGreaterEqual(float(other.stdout.readline()), released)
        other.stdout.close()
        self.assertEqual(list(client.get_all()), [])
        with self.assertRaises(RuntimeError):
            shared.kill()

    def test_only_when_named_and_never_for_a_test_that_restarts_etcd(self):
        def plain():
            pass

        @own_etcd
        def restarting():
            pass
        unset = {k: v for k, v in os.environ.items() if k != "SIPCLUSTER_TEST_ETCD"}
        self.patch(os, "environ", unset)
        own = etcd_for(plain)
        self.addCleanup(own.stop)
        self.assertIsInstance(own, EtcdServer)
        self.assertNotEqual(own.endpoint, self.server.endpoint)
        self.patch(os, "environ", dict(unset, SIPCLUSTER_TEST_ETCD=self.server.endpoint))
        shared = etcd_for(plain)
        self.assertIsInstance(shared, SharedEtcd)
        self.assertEqual(shared.endpoint, self.server.endpoint)
        other = etcd_for(restarting)
        self.addCleanup(other.stop)
        self.assertIsInstance(other, EtcdServer)


class _WatchedStore:
    """What a L{PrefixWatch} uses of its store, on a Clock (no etcd): no
    pool, so a restarted watch does not reach etcd."""

    def __init__(self):
        self.reactor = task.Clock()
        self.pool = None
        self._client = object()
        self._watches = []
        self.reconnects = 0
        self.listed = []
        self.answer = None

    def reconnect(self):
        self.reconnects += 1
        self._client = object()

    def get_prefix(self, prefix):
        self.listed.append(prefix)
        return self.answer


class PrefixWatchRetryTests(unittest.TestCase):
    """How a lost watch is retried (its store faked, time a Clock)."""

    def watch(self):
        store = _WatchedStore()
        self.resyncs = []
        watch = PrefixWatch(store, "/p/", lambda events: None,
                            lambda items, rev: self.resyncs.append((items, rev)), 5)
        watch.running = True
        watch._client = store._client
        return store, watch

    def lost(self, logs):
        from twisted.logger import formatEvent
        return [formatEvent(e) for e in logs]

    def test_retries_back_off_to_four_seconds_and_start_over_once_a_watch_started(self):
        from twisted.logger import capturedLogs
        from twisted.python.failure import Failure
        store, watch = self.watch()
        delays = []
        with capturedLogs() as logs:
            for _ in range(7):
                watch._failed(Failure(EtcdUnavailable("UNAVAILABLE: down")))
                delays.append(round(watch._retry.getTime() - store.reactor.seconds(), 3))
                store.reactor.advance(delays[-1])
        self.assertEqual(delays, [0.2, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0])
        self.assertEqual(watch.restarts, 7)
        # The client is replaced once: the later failures were not its.
        self.assertEqual(store.reconnects, 1)
        self.assertEqual(self.lost(logs), ["etcd watch on /p/ lost (EtcdUnavailable: UNAVAILABLE: down); "
                                           "again in %ss" % d for d in delays])
        watch._started(12)
        watch._client = store._client
        watch._failed(Failure(EtcdUnavailable("UNAVAILABLE: down")))
        self.assertEqual(round(watch._retry.getTime() - store.reactor.seconds(), 3), 0.2)
        self.assertEqual(store.reconnects, 2)
        self.assertEqual(store.listed, [])

    def test_an_error_from_the_watch_thread_is_logged_by_name(self):
        from twisted.logger import capturedLogs
        store, watch = self.watch()
        with capturedLogs() as logs:
            watch._failed(ValueError("stream broke"))  # handed over as is, no Failure
        self.assertEqual(self.lost(logs), ["etcd watch on /p/ lost (ValueError: stream broke); again in 0.2s"])
        self.assertEqual(store.reconnects, 1)

    def test_a_watch_refused_as_compacted_re_lists_at_once(self):
        import etcd3.exceptions
        from twisted.python.failure import Failure
        store, watch = self.watch()
        store.answer = defer.succeed(([("/p/a", b"1", 7)], 9))
        watch._failed(Failure(etcd3.exceptions.RevisionCompactedError(8)))
        self.assertEqual(store.listed, ["/p/"])
        self.assertEqual(self.resyncs, [([("/p/a", b"1", 7)], 9)])
        self.assertEqual((watch.next_revision, watch._retry, store.reconnects), (10, None, 0))

    def test_a_re_list_that_fails_is_retried_like_a_lost_watch(self):
        from twisted.logger import capturedLogs
        store, watch = self.watch()
        store.answer = defer.fail(EtcdUnavailable("UNAVAILABLE: down"))
        with capturedLogs() as logs:
            watch._resync()
        self.assertEqual(self.lost(logs), ["etcd watch on /p/ lost (EtcdUnavailable: UNAVAILABLE: down); "
                                           "again in 0.2s"])
        self.assertTrue(watch._retry.active())
        self.assertEqual(self.resyncs, [])

    def test_a_watch_stopped_while_it_re_lists_starts_nothing_and_hears_nothing(self):
        class Pool:
            calls = []

            def callInThreadWithCallback(self, *args, **kwargs):
                self.calls.append(args)

            callInThread = callInThreadWithCallback
        store, watch = self.watch()
        store.pool = Pool()
        store.answer = defer.Deferred()
        watch._resync()
        watch.stop()
        store.answer.callback(([("/p/a", b"1", 7)], 9))
        self.assertEqual((store.pool.calls, self.resyncs), ([], []))

    def test_stopping_a_watch_whose_store_stopped_leaves_etcd3_alone(self):
        # The store closed the client (and with it its watches) and dropped
        # its pool: nothing to cancel, nowhere to run it.
        store, watch = self.watch()
        watch._watch_id = 3
        watch.stop()
        self.assertEqual((watch.running, watch._watch_id), (False, None))
