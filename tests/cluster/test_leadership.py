"""
Leadership is held on a lease: a leader that cannot refresh it for a whole
TTL steps down (in-process, on the memory store, time on a Clock; etcd
failing is a refresh that fails or never answers).
"""

from twisted.internet import defer
from twisted.internet.task import Clock

from sipcluster.cluster.etcd import EtcdUnavailable
from sipcluster.cluster.membership import ClusterMembership
from sipcluster.cluster.store import MemoryStore
from sipcluster.node import LeaderHook


class CutOff(MemoryStore):
    """
    etcd as one node sees it when cut off: it goes on by itself (leases
    expire on its clock) while our calls fail ("fail"), never answer
    ("hang") or reach it but answer late ("late"), and its events do not
    reach us.
    """

    def __init__(self, clock):
        MemoryStore.__init__(self, clock)
        self.mode = None
        self.late = []
        self._withheld = False

    def refresh(self, lease):
        if self.mode == "fail":
            return defer.fail(EtcdUnavailable("etcd down"))
        if self.mode == "hang":
            return defer.Deferred()
        if self.mode == "late":
            answer = defer.Deferred()
            self.late.append((answer, MemoryStore.refresh(self, lease)))
            return answer
        return MemoryStore.refresh(self, lease)

    def _deliver(self):
        if self.mode in ("fail", "hang"):
            # Keep them for when we are back (the watch resumes).
            self._flush = self.clock.callLater(0.5, self._deliver)
            return
        MemoryStore._deliver(self)


def leader(ttl=3):
    clock = Clock()
    store = CutOff(clock)
    member = ClusterMembership(store, clock, "/sc", "a", {}, ttl=ttl)
    hook = LeaderHook(clock, "/bin/true", "a")
    actions = []
    hook.run = actions.append
    member.listeners.append(hook)
    member.startService()
    assert member.is_leader and actions == ["acquire"]
    return clock, store, member, actions


def test_leader_whose_refreshes_hang_steps_down_after_one_ttl():
    clock, store, member, actions = leader()
    clock.advance(1)
    clock.advance(1)  # refreshed at 1 and 2: valid until 5
    store.mode = "hang"  # etcd hangs (or we were paused)
    clock.advance(2)
    assert member.is_leader  # 4 < 5
    clock.advance(1)
    assert not member.is_leader and member.leader is None
    assert actions == ["acquire", "release"]


def test_leader_cut_off_from_etcd_steps_down_and_comes_back_through_election():
    clock, store, member, actions = leader()
    store.mode = "fail"
    clock.advance(1)
    clock.advance(1)
    assert member.is_leader  # joined at 0: valid until 3
    clock.advance(1)
    assert actions == ["acquire", "release"] and not member.connected
    clock.advance(3)  # etcd expired our lease meanwhile, and the leader key
    # etcd back: the node learns its lease is gone, joins again and wins
    # the election anew (nobody else here).
    store.mode = None
    for _ in range(4):
        clock.advance(0.5)
    assert member.is_leader and member.connected
    assert actions == ["acquire", "release", "acquire"]


def test_our_leader_key_deleted_means_release_even_before_the_next_election():
    clock, store, member, actions = leader()
    store.delete("/sc/leader")
    store.put("/sc/leader", b"b")  # someone else won at once
    clock.advance(0)
    assert member.leader == "b" and actions == ["acquire", "release"]


def test_a_late_refresh_proving_the_lease_alive_gives_leadership_back():
    clock, store, member, actions = leader()
    store.mode = "late"
    clock.advance(1)  # refresh sent at 1: etcd has it, we have no answer
    clock.advance(2)  # joined at 0: valid until 3
    assert actions == ["acquire", "release"]
    # The answer comes: etcd kept the lease (and our leader key).
    store.mode = None
    answer, result = store.late[0]
    result.chainDeferred(answer)
    assert member.is_leader and actions == ["acquire", "release", "acquire"]
    for _ in range(10):
        clock.advance(0.5)  # refreshed since: no flapping
    assert member.is_leader and actions == ["acquire", "release", "acquire"]


def test_stopping_cancels_the_lease_timer():
    clock, store, member, actions = leader()
    member.stopService()
    store.stop()
    assert clock.getDelayedCalls() == []
