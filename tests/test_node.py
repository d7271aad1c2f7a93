"""
The node as build_node composes it: its services start in order and stop
the other way round, one after the other; followers of the store keep
trying while it is away; the pipeline a configuration gives.
"""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from sipcluster import config
from sipcluster.node import build_node
from sipcluster.services import Following, Lifecycle, OrderedServices, Repeating


def test_children_stop_one_after_the_other_last_started_first():
    events = []
    slow = defer.Deferred()
    top = OrderedServices()
    Lifecycle("store", lambda: events.append("store up"),
              lambda: events.append("store down")).setServiceParent(top)
    Lifecycle("transport", lambda: events.append("transport up"),
              lambda: (events.append("transport down"), slow)[1]).setServiceParent(top)
    top.startService()
    assert events == ["store up", "transport up"]
    done = top.stopService()
    # The store waits until the listeners are closed.
    assert events[-1] == "transport down" and not done.called
    slow.callback(None)
    assert events[-1] == "store down" and done.called


def test_a_child_failing_to_stop_is_logged_and_the_others_still_stop():
    from twisted.logger import globalLogPublisher
    events, failures = [], []
    top = OrderedServices()
    Lifecycle("store", None, lambda: events.append("store down")).setServiceParent(top)

    def broken():
        raise RuntimeError("socket already gone")
    Lifecycle("transport", None, broken).setServiceParent(top)
    top.startService()
    observer = lambda e: failures.append(e) if "log_failure" in e else None  # noqa: E731
    globalLogPublisher.addObserver(observer)
    try:
        done = top.stopService()
    finally:
        globalLogPublisher.removeObserver(observer)
    assert events == ["store down"] and done.called and not top.running
    (failure,) = failures
    assert failure["name"] == "transport" and failure["log_failure"].check(RuntimeError)


def test_a_follower_retries_until_the_store_answers_and_stops_retrying_when_stopped():
    clock = Clock()
    attempts = []

    def start():
        attempts.append(clock.seconds())
        return defer.fail(RuntimeError("etcd away")) if len(attempts) < 3 else defer.succeed(None)
    follower = Following("drain", start, lambda: attempts.append("stopped"), clock, retry=2)
    follower.startService()
    clock.advance(2)
    clock.advance(2)
    assert attempts == [0, 2, 4]
    clock.advance(10)
    assert attempts == [0, 2, 4]
    follower.stopService()
    assert attempts[-1] == "stopped" and clock.getDelayedCalls() == []
    # Stopped while waiting to retry: the retry is cancelled.
    attempts[:] = []
    follower = Following("x", lambda: defer.fail(RuntimeError()), lambda: None, clock)
    follower.startService()
    follower.stopService()
    assert clock.getDelayedCalls() == []


def test_repeating_duty_first_runs_after_one_interval():
    clock = Clock()
    runs = []
    duty = Repeating("housekeeping", 30, lambda: runs.append(clock.seconds()), clock)
    duty.startService()
    clock.advance(29)
    assert runs == []
    clock.advance(1)
    assert runs == [30]
    duty.stopService()
    clock.advance(60)
    assert runs == [30]


def test_a_single_node_is_composed_in_start_order():
    node = build_node(config.load(None, {"accounting.failed_calls": True}), MemoryReactorClock())
    assert [s.name for s in node] == ["store", "dialogs", "housekeeping", "sip-transport"]
    assert [s.name for s in node.pipeline.stages] == [
        "dialogs", "registrar", "local", "location", "request-uri"]
    assert node.pipeline.request == []


def test_a_cluster_node_starts_its_listeners_last_and_stops_them_first():
    node = build_node(config.load(None, {"store.backend": "etcd", "cluster.leader_hook": "/bin/true"}),
                      MemoryReactorClock())
    names = [s.name for s in node]
    assert names == ["store", "location", "cluster-membership", "drain", "dialogs",
                     "housekeeping", "load", "sip-transport"]


def test_registrar_disabled_leaves_it_out_of_the_pipeline():
    node = build_node(config.load(None, {"registrar.enabled": False, "node.mode": "stateless"}),
                      MemoryReactorClock())
    assert node.registrar is None and node.transactions is None
    assert [s.name for s in node.pipeline.stages] == ["local", "location", "request-uri"]


def test_the_load_a_node_publishes_is_its_transactions_and_zero_when_stateless():
    from tests.harness import NodeHarness
    from tests.test_proxy import invite
    stateless = NodeHarness({"node": {"mode": "stateless"}})
    stateless.receive(invite())
    assert stateless.node.load() == 0
    stateful = NodeHarness()
    assert stateful.node.load() == 0
    stateful.receive(invite())
    assert stateful.node.load() == 2  # the caller's server transaction, ours to the next hop
