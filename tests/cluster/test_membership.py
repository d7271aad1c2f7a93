"""Membership and leader election against a real etcd, and on the memory store."""

import gc
import json
import time

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest

from sipcluster.cluster.etcd import EtcdStore
from sipcluster.cluster.membership import ClusterMembership
from sipcluster.cluster.store import MemoryStore, StoreUnavailable
from tests.cluster.etcdserver import etcd_for, own_etcd, requires_etcd
from tests.cluster.test_etcd import eventually


@requires_etcd
class MembershipTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.etcd = etcd_for(getattr(self, self._testMethodName))
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

    @own_etcd
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


class _HeldStore(MemoryStore):
    """A memory store whose grant or refresh answers when the test says."""

    def __init__(self, clock):
        MemoryStore.__init__(self, clock)
        self.hold_grant = False
        self.hold_refresh = False
        self.held = []

    def grant(self, ttl):
        answer = MemoryStore.grant(self, ttl)
        return self._held(answer) if self.hold_grant else answer

    def refresh(self, lease):
        answer = MemoryStore.refresh(self, lease)
        return self._held(answer) if self.hold_refresh else answer

    def _held(self, answer):
        held = defer.Deferred()
        answer.addBoth(lambda result: self.held.append((held, result)))
        return held

    def answer_held(self):
        for held, result in self.held:
            held.callback(result)
        self.held = []


class StopWithCallInFlightTests(unittest.TestCase):
    """
    A store answer that arrives after stopService arms no timer: a leftover
    C{_check_lease} call fails the next test with DirtyReactorAggregateError
    (seen in a full run of test_rejoins_after_etcd_restart_longer_than_ttl).
    """

    def setUp(self):
        self.clock = Clock()
        self.store = _HeldStore(self.clock)
        self.store.start()
        self.member = ClusterMembership(self.store, self.clock, "/sc", "a",
                                        {"addresses": ["udp:127.0.0.1:5060"]}, ttl=3)

    def pending(self):
        return [call for call in self.clock.getDelayedCalls() if call.active()]

    def test_refresh_answered_after_stop_arms_no_lease_timer(self):
        self.member.startService()
        self.assertIsNotNone(self.member.lease)
        self.store.hold_refresh = True
        self.clock.advance(self.member._interval)
        self.assertEqual(len(self.store.held), 1)
        self.member.stopService()
        self.assertEqual(self.pending(), [])
        self.store.answer_held()
        self.assertEqual(self.pending(), [])

    def test_grant_answered_after_stop_arms_nothing_and_leaves_no_record(self):
        self.store.hold_grant = True
        self.member.startService()
        self.assertIsNone(self.member.lease)
        self.member.stopService()
        self.store.answer_held()
        self.assertEqual(self.pending(), [])
        self.assertEqual(self.store._items("/sc/"), [])
        self.assertIsNone(self.member.lease)


class Scripted(MemoryStore):
    """A memory store whose calls can be made to fail (C{fail[name]}: an
    exception), answer late (C{slow[name]}: seconds) or hang (C{hang}; the
    refreshes of C{hang_leases}), and that counts refreshes."""

    def __init__(self, clock):
        MemoryStore.__init__(self, clock)
        self.fail = {}
        self.slow = {}
        self.hang = set()
        self.hang_leases = set()
        self.refreshes = 0
        self.ttl_answer = None
        self.grant_ttl = None

    def _call(self, name, *args, **kwargs):
        if name in self.fail:
            return defer.fail(self.fail[name])
        if name in self.hang:
            return defer.Deferred()
        answer = getattr(MemoryStore, name)(self, *args, **kwargs)
        if name in self.slow:
            late = defer.Deferred()
            self.clock.callLater(self.slow[name], answer.chainDeferred, late)
            return late
        return answer

    def grant(self, ttl):
        # etcd may keep a lease longer (grant_ttl) or answer another TTL (ttl_answer).
        return self._call("grant", self.grant_ttl or self.ttl_answer or ttl)

    def refresh(self, lease):
        self.refreshes += 1
        if lease in self.hang_leases:
            return defer.Deferred()
        d = self._call("refresh", lease)
        return d.addCallback(lambda ttl: self.ttl_answer or ttl)

    def create(self, key, value, lease=None):
        return self._call("create", key, value, lease)

    def get(self, key):
        return self._call("get", key)

    def revoke(self, lease):
        return self._call("revoke", lease)


class MemoryStoreMembershipTests(unittest.TestCase):
    """Membership and election on the memory store, time on a Clock."""

    def setUp(self):
        self.clock = Clock()
        self.store = Scripted(self.clock)

    def member(self, node_id, record=None, ttl=3, start=True):
        member = ClusterMembership(self.store, self.clock, "/scX/", node_id,
                                   record if record is not None else {"started": 5.0}, ttl=ttl)
        member.events = []
        member.observe(lambda event, node, rec: member.events.append((event, node, rec)))
        if start:
            member.startService()
            self.addCleanup(lambda: member.running and member.stopService())
        return member

    def record(self, node_id):
        value = self.store.get("/scX/nodes/" + node_id).result
        return None if value is None else json.loads(value)

    def run_for(self, seconds, step=0.25):
        """Let C{seconds} pass in steps, as a reactor would (times stay exact)."""
        while seconds > step:
            self.clock.advance(step)
            seconds -= step
        self.clock.advance(seconds)

    def unhandled(self, events):
        gc.collect()
        return [e for e in events if e.get("isError") or "log_failure" in e]

    def test_nodes_see_each_other_come_change_and_go_and_one_leads(self):
        a = self.member("a", {"region": "eu", "started": 5.0})
        # Our record, at once, under our lease; we lead, being alone.
        self.assertEqual(self.record("a"), {"id": "a", "region": "eu", "started": 5.0})
        self.assertEqual(a.events, [("join", "a", {"id": "a", "region": "eu", "started": 5.0}),
                                    ("leader", "a", None)])
        b = self.member("b")
        self.assertEqual(b.leader, "a")
        self.assertEqual(b.events, [("join", "a", {"id": "a", "region": "eu", "started": 5.0}),
                                    ("join", "b", {"id": "b", "started": 5.0}), ("leader", "a", None)])
        self.clock.advance(0)
        self.assertEqual(a.events[2:], [("join", "b", {"id": "b", "started": 5.0})])
        self.assertEqual(a.nodes, {"a": {"id": "a", "region": "eu", "started": 5.0},
                                   "b": {"id": "b", "started": 5.0}})
        # A change is published and seen.
        self.successResultOf(b.update(state="draining"))
        self.clock.advance(0)
        self.assertEqual(a.events[3:], [("update", "b", {"id": "b", "started": 5.0, "state": "draining"})])
        self.assertEqual(self.record("b")["state"], "draining")
        self.assertEqual(a.nodes["b"], {"id": "b", "started": 5.0, "state": "draining"})
        # The record, updated, still lives under b's lease: the lease gone, so is the record.
        self.store.revoke(b.lease)
        self.assertIsNone(self.record("b"))
        self.clock.advance(0)
        self.assertEqual(a.events[4:], [("leave", "b", {"id": "b", "started": 5.0, "state": "draining"})])
        b.stopService()
        b = self.member("b")
        self.clock.advance(0)
        del a.events[5:], b.events[:]
        # The leader leaves: its record goes at once, and the other takes over.
        a.stopService()
        self.clock.advance(0)
        self.assertEqual(b.events, [("leave", "a", {"id": "a", "region": "eu", "started": 5.0}),
                                    ("leader", None, None), ("leader", "b", None)])
        self.assertEqual((b.leader, b.is_leader, sorted(b.nodes)), ("b", True, ["b"]))

    def test_the_start_time_is_recorded_unless_given(self):
        before = time.time()
        self.member("a", {})
        self.assertEqual(sorted(self.record("a")), ["id", "started"])
        self.assertTrue(before <= self.record("a")["started"] <= time.time())

    def test_update_before_joining_is_kept_for_the_join(self):
        self.store.fail["grant"] = StoreUnavailable("etcd away")
        a = self.member("a")
        self.assertIsNone(self.successResultOf(a.update(state="draining")))
        self.assertIsNone(self.record("a"))
        self.assertFalse(a.connected)
        del self.store.fail["grant"]
        self.run_for(a._interval)  # the next tick joins
        self.assertEqual(self.record("a"), {"id": "a", "started": 5.0, "state": "draining"})
        self.assertTrue(a.connected)

    def test_not_connected_until_the_join_is_answered(self):
        self.store.hang.add("grant")
        a = self.member("a")
        self.assertFalse(a.connected)
        self.assertIsNone(self.record("a"))

    def test_a_join_failing_for_another_reason_is_logged_and_tried_again(self):
        self.store.fail["grant"] = RuntimeError("bug")
        with capturedLogs() as events:
            a = self.member("a")
        (event,) = [e for e in events if "log_failure" in e]
        self.assertEqual(formatEvent(event), "joining the cluster failed")
        self.assertTrue(event["log_failure"].check(RuntimeError))
        del self.store.fail["grant"]
        self.run_for(a._interval)
        self.assertIsNotNone(self.record("a"))
        self.flushLoggedErrors(RuntimeError)

    def test_refreshed_every_third_of_its_ttl(self):
        self.member("a", ttl=3)
        self.run_for(2.75)
        self.assertEqual(self.store.refreshes, 2)
        self.clock.advance(0.25)
        self.assertEqual(self.store.refreshes, 3)

    def test_a_slow_refresh_answer_is_followed_by_another_at_once(self):
        self.member("a", ttl=3)
        self.store.slow["refresh"] = 2.5
        self.run_for(1)  # sent at 1, answered at 3.5: valid until 4, 0.5 s left
        self.run_for(2.25)
        self.assertEqual(self.store.refreshes, 1)  # the keepalive waits for the answer
        self.clock.advance(0.25)
        self.assertEqual(self.store.refreshes, 2)  # and another at once

    def test_a_leader_steps_down_when_its_lease_is_no_longer_known_alive(self):
        # etcd keeps the lease (10 s) longer than the 3 s it answers and we trust.
        self.store.grant_ttl, self.store.ttl_answer = 10, 3
        a = self.member("a", ttl=3)
        self.store.slow["refresh"] = 2.5  # sent at 1, answered at 3.5
        with capturedLogs() as events:
            self.run_for(3)
        self.assertFalse(a.is_leader)  # joined at 0: known alive until 3 only
        self.assertIn("cluster lease not refreshed for 3s: no longer leader", [formatEvent(e) for e in events])
        self.run_for(0.25)
        self.store.hang.add("refresh")  # the refresh sent again at once never answers
        self.run_for(0.25)
        self.assertTrue(a.is_leader)  # the answer: alive until 4, and our leader key is there
        self.run_for(0.25)
        self.assertTrue(a.is_leader)
        self.clock.advance(0.25)
        self.assertFalse(a.is_leader)

    def test_a_failing_refresh_sent_at_once_after_a_slow_answer_counts(self):
        a = self.member("a", ttl=3)
        self.store.slow["refresh"] = 2.5  # sent at 1, answered at 3.5 with 0.5 s left
        self.run_for(3.25)
        self.store.fail["refresh"] = StoreUnavailable("etcd away")
        self.run_for(0.25)
        self.assertFalse(a.connected)

    def test_the_ttl_etcd_answers_is_the_one_trusted(self):
        self.store.ttl_answer = 6
        a = self.member("a", ttl=3)
        self.run_for(1)  # refreshed at 1: alive until 7
        self.store.hang.add("refresh")
        self.run_for(5.75)
        self.assertTrue(a.is_leader)
        self.clock.advance(0.25)
        self.assertFalse(a.is_leader)

    def test_a_follower_cut_off_keeps_knowing_the_leader(self):
        self.member("a")
        b = self.member("b")
        self.store.hang_leases.add(b.lease)  # b's refreshes never answer
        self.run_for(4)  # b's lease is not known alive since 3
        self.assertEqual(b.leader, "a")

    def test_an_expired_lease_means_join_again_and_step_down_at_once(self):
        a = self.member("a", ttl=1.5)
        self.store.fail["refresh"] = KeyError("lease gone")
        with capturedLogs() as events:
            self.run_for(0.5)  # the refresh at 0.5 fails; the lease was good until 1.5
        self.assertFalse(a.is_leader)
        self.assertIn("cluster lease expired; joining again", [formatEvent(e) for e in events])
        del self.store.fail["refresh"]
        self.store.delete("/scX/nodes/a")
        self.run_for(0.5)  # the next tick joins with a new lease
        self.assertIsNotNone(self.record("a"))
        self.assertTrue(a.connected)

    def test_refresh_failures_unavailable_or_unexpected(self):
        a = self.member("a")
        self.store.fail["refresh"] = StoreUnavailable("etcd away")
        self.run_for(1)
        self.assertFalse(a.connected)
        del self.store.fail["refresh"]
        self.run_for(1)  # the lease lived on: a refresh, not a join, says so
        self.assertTrue(a.connected)
        self.store.fail["refresh"] = RuntimeError("bug")
        with capturedLogs() as events:
            self.run_for(1)
        (event,) = [e for e in events if "log_failure" in e]
        self.assertEqual(formatEvent(event), "lease refresh failed")
        self.assertTrue(event["log_failure"].check(RuntimeError))
        self.flushLoggedErrors(RuntimeError)

    def test_unreadable_records_and_unknown_nodes_are_ignored(self):
        a = self.member("a")
        self.store.put("/scX/nodes/x", b"not json")
        self.store.delete("/scX/nodes/y")
        self.store.put("/scX/nodes/y", b"[1]")
        self.store.delete("/scX/nodes/y")
        self.clock.advance(0)
        self.assertEqual([e[:2] for e in a.events], [("join", "a"), ("leader", "a")])
        self.assertEqual(sorted(a.nodes), ["a"])

    def test_a_relisting_reports_who_came_changed_and_went(self):
        a = self.member("a")
        b = self.member("b")
        self.clock.advance(0)
        del a.events[:]
        # The store lists again (a watch restarted): b changed, c came, a's record and x unreadable.
        a._resync([("/scX/nodes/b", b'{"id": "b", "state": "draining"}', 9),
                   ("/scX/nodes/c", b'{"id": "c"}', 10), ("/scX/nodes/x", b"garbage", 11)], 11)
        self.assertEqual(a.events, [("leave", "a", {"id": "a", "started": 5.0}),
                                    ("update", "b", {"id": "b", "state": "draining"}),
                                    ("join", "c", {"id": "c"})])
        self.assertEqual(sorted(a.nodes), ["b", "c"])
        b.stopService()

    def test_a_failing_listener_is_logged_and_the_others_still_hear(self):
        a = self.member("a", start=False)

        def broken(event, node, record):
            raise RuntimeError("bug")
        a.listeners.insert(0, broken)
        with capturedLogs() as events:
            a.startService()
        self.addCleanup(a.stopService)
        failures = [e for e in events if "log_failure" in e]
        self.assertEqual({formatEvent(e) for e in failures}, {"membership listener failed"})
        self.assertEqual([e[:2] for e in a.events], [("join", "a"), ("leader", "a")])
        self.flushLoggedErrors(RuntimeError)

    def test_failed_campaigns_and_reads_are_not_unhandled_errors(self):
        with capturedLogs() as events:
            a = self.member("a")
            self.store.fail["create"] = StoreUnavailable("etcd away")
            self.store.delete("/scX/leader")  # its key went: it campaigns, fails
            self.clock.advance(0)
            self.assertIsNone(a.leader)
            self.run_for(1)  # a refresh: it looks for the leader again, campaigns, fails
            self.store.fail["get"] = StoreUnavailable("etcd away")
            self.run_for(1)  # the look fails
            del self.store.fail["get"], self.store.fail["create"]
            self.run_for(1)
            self.assertTrue(a.is_leader)
            self.store.fail["revoke"] = StoreUnavailable("etcd away")
            self.successResultOf(a.stopService())
            self.assertEqual(self.unhandled(events), [])

    def test_a_first_campaign_failing_is_not_an_unhandled_error(self):
        self.store.fail["create"] = StoreUnavailable("etcd away")
        with capturedLogs() as events:
            a = self.member("a")  # no leader key listed: it campaigns at once, and fails
            self.assertIsNone(a.leader)
            self.assertEqual(self.unhandled(events), [])
