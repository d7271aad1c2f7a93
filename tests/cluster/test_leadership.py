"""
Leadership is held on a lease: a leader that cannot refresh it for a whole
TTL steps down (in-process, etcd faked, time on a Clock).
"""

from twisted.internet import defer
from twisted.internet.task import Clock

from sipcluster.cluster.etcd import EtcdUnavailable
from sipcluster.cluster.membership import ClusterMembership
from sipcluster.node import LeaderHook


class FakeWatch:
    def stop(self):
        pass


class FakeStore:
    """Just enough etcd: grants, puts, create-if-absent, a leader key."""

    def __init__(self):
        self.refresh_result = lambda: defer.succeed(3)
        self.leader_events = None
        self.keys = {}

    def grant(self, ttl):
        return defer.succeed(7)

    def put(self, key, value, lease=None):
        return defer.succeed(None)

    def create(self, key, value, lease=None):
        if key in self.keys:
            return defer.succeed(False)
        self.keys[key] = value
        return defer.succeed(True)

    def get(self, key):
        return defer.succeed(self.keys.get(key))

    def refresh(self, lease):
        return self.refresh_result()

    def revoke(self, lease):
        return defer.succeed(None)

    def follow(self, prefix, on_events, on_resync):
        on_resync([], 1)
        if prefix.endswith("/leader"):
            self.leader_events = on_events
        return defer.succeed(FakeWatch())


def leader(ttl=3):
    clock = Clock()
    store = FakeStore()
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
    store.refresh_result = defer.Deferred  # etcd hangs (or we were paused)
    clock.advance(2)
    assert member.is_leader  # 4 < 5
    clock.advance(1)
    assert not member.is_leader and member.leader is None
    assert actions == ["acquire", "release"]


def test_leader_cut_off_from_etcd_steps_down_and_comes_back_through_election():
    clock, store, member, actions = leader()
    store.refresh_result = lambda: defer.fail(EtcdUnavailable("etcd down"))
    clock.advance(1)
    clock.advance(1)
    assert member.is_leader  # joined at 0: valid until 3
    clock.advance(1)
    assert actions == ["acquire", "release"] and not member.connected
    # etcd back: the lease is gone (and the leader key with it), the node
    # joins again and wins the election anew (nobody else here).
    store.keys.clear()
    store.refresh_result = lambda: defer.fail(KeyError(7))
    clock.advance(1)
    clock.advance(1)
    assert member.is_leader and actions == ["acquire", "release", "acquire"]


def test_our_leader_key_deleted_means_release_even_before_the_next_election():
    clock, store, member, actions = leader()
    store.create = lambda key, value, lease=None: defer.succeed(False)  # someone else wins
    store.leader_events([("delete", "/sc/leader", b"", 9)])
    assert member.leader is None and actions == ["acquire", "release"]
    store.leader_events([("put", "/sc/leader", b"b", 10)])
    assert member.leader == "b" and actions == ["acquire", "release"]


def test_a_late_refresh_proving_the_lease_alive_gives_leadership_back():
    clock, store, member, actions = leader()
    late = []
    store.refresh_result = lambda: late.append(defer.Deferred()) or late[-1]
    clock.advance(1)  # refresh sent at 1, hangs
    clock.advance(2)  # joined at 0: valid until 3
    assert actions == ["acquire", "release"]
    # The answer comes: etcd kept the lease (and our leader key).
    store.refresh_result = lambda: defer.succeed(3)
    late[0].callback(3)
    assert member.is_leader and actions == ["acquire", "release", "acquire"]
    clock.advance(3)  # refreshed since: still valid
    assert member.is_leader


def test_stopping_cancels_the_lease_timer():
    clock, store, member, actions = leader()
    member.stopService()
    assert clock.getDelayedCalls() == []
