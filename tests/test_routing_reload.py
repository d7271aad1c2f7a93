"""
Reloading rules and destination sets (sipcluster.routing.reload): a new
file takes effect for new requests, destinations kept keep their state, a
request in progress finishes as it started, a faulty file keeps the old
configuration and logs one line naming file and key.
"""

import pytest
from twisted.logger import globalLogPublisher

from tests.test_proxy import UAC, Node, invite, reply

D1, D2, D3 = ("127.0.0.1", 5071), ("127.0.0.1", 5072), ("127.0.0.1", 5073)

FIRST = {"rules": [{"domain": "lb.test", "set": "lb"}],
         "sets": {"lb": {"destinations": ["sip:127.0.0.1:5071", "sip:127.0.0.1:5072"]}}}
SECOND = '''
[[routing.rules]]
from_user = "mallory"
reject = 403
[[routing.rules]]
domain = "lb.test"
set = "lb"
[routing.sets.lb]
destinations = ["sip:127.0.0.1:5072", "sip:127.0.0.1:5073"]
'''


@pytest.fixture
def node(tmp_path):
    n = Node(settings={"routing": FIRST})
    n.path = tmp_path / "node.toml"
    n.h.node.routing_reload.path = str(n.path)
    return n


@pytest.fixture
def log_lines():
    lines = []

    def observe(event):
        if event.get("log_namespace", "").startswith("sipcluster.routing.reload"):
            lines.append(event)
    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def call(node, n, user="alice"):
    data = invite("sip:bob@lb.test", branch="z9hG4bKr%d" % n).replace(
        b"call-1@", b"call-%d@" % n).replace(b"sip:alice@", b"sip:%s@" % user.encode())
    node.send(data)


def invites(node, out):
    return [(a, m) for m, a in out if getattr(m, "method", None) == "INVITE"]


def test_a_new_file_applies_to_new_requests_and_keeps_destination_state(node):
    sets = node.h.node.destinations
    d2 = sets["lb"].destinations[1]
    d2.up = False
    call(node, 1)
    ((addr, in_progress),) = invites(node, node.out())
    assert addr == D1
    node.path.write_text(SECOND)
    assert node.h.node.routing_reload.reload()
    new = node.h.node.destinations["lb"]
    assert new.destinations[0] is d2 and not d2.up  # kept, still down
    call(node, 2)
    assert [a for a, _ in invites(node, node.out())] == [D3]
    call(node, 3, user="mallory")
    assert [m.status for m in node.to(UAC, node.out()) if m.status >= 200] == [403]
    # The call set up before the reload still completes through D1.
    node.send(reply(in_progress, 200), D1)
    assert [m.status for m in node.to(UAC, node.out())] == [200]


def test_a_faulty_file_keeps_the_old_configuration_with_one_line(node, log_lines):
    node.path.write_text(SECOND.replace('from_user = "mallory"', 'from_user = 3'))
    assert not node.h.node.routing_reload.reload()
    (line,) = log_lines
    assert str(node.path) in line["error"] and "routing.rules[0].from_user" in line["error"]
    call(node, 1, user="mallory")
    assert [a for a, _ in invites(node, node.out())] == [D1]  # the old rules


def test_a_reload_may_bring_in_a_new_set(node):
    node.path.write_text(SECOND + '''
[[routing.rules]]
domain = "new.test"
set = "new"
[routing.sets.new]
destinations = ["sip:127.0.0.1:5074"]
''')
    assert node.h.node.routing_reload.reload()
    node.send(invite("sip:bob@new.test", branch="z9hG4bKnew"))
    assert [a for a, _ in invites(node, node.out())] == [("127.0.0.1", 5074)]
    call(node, 2)
    assert [a for a, _ in invites(node, node.out())] == [D2]


def test_a_stateless_node_reloads_too(tmp_path):
    node = Node(stateless=True, settings={"routing": FIRST})
    assert node.h.node.probes is None  # nothing probes without transactions
    path = tmp_path / "node.toml"
    node.h.node.routing_reload.path = str(path)
    path.write_text(SECOND)
    assert node.h.node.routing_reload.reload()
    call(node, 1, user="mallory")
    assert [m.status for m in node.to(UAC, node.out()) if m.status >= 200] == [403]


def test_the_destination_view_published_to_the_cluster_follows_the_new_sets(node):
    # In a cluster (store.backend = "etcd") the node publishes its view of
    # the destinations (routing.destinations.PublishedView); here a stand-in.
    view = node.h.node.destination_view = type("View", (), {"sets": None})()
    node.path.write_text(SECOND)
    assert node.h.node.routing_reload.reload()
    assert view.sets is node.h.node.destinations
    assert [str(d.uri) for d in view.sets["lb"].destinations] == [
        "sip:127.0.0.1:5072", "sip:127.0.0.1:5073"]


def test_probes_follow_the_new_sets(node):
    node.path.write_text(SECOND + "probe_interval_s = 1\n")
    assert node.h.node.routing_reload.reload()
    node.h.clock.advance(0)
    node.out()
    node.h.advance(1.01)
    probed = sorted({a for m, a in node.out() if getattr(m, "method", None) == "OPTIONS"})
    assert probed == [D2, D3]


THIRD = '''
[[routing.rules]]
domain = "lb.test"
set = "lb"
[routing.sets.lb]
destinations = [{uri = "sip:127.0.0.1:5071", priority = 1}, {uri = "sip:127.0.0.1:5072", max_load = 1}]
'''


def test_a_kept_destination_takes_its_new_priority_and_limit(node):
    node.path.write_text(THIRD)
    assert node.h.node.routing_reload.reload()
    call(node, 1)
    ((addr, first),) = invites(node, node.out())
    assert addr == D2  # priority 0 now before D1's 1
    call(node, 2)  # D2 has its one call: D1
    assert [a for a, _ in invites(node, node.out())] == [D1]


def test_a_kept_round_robin_turn_and_calls_survive_the_reload(node):
    call(node, 1)
    assert [a for a, _ in invites(node, node.out())] == [D1]
    node.path.write_text(SECOND.replace('from_user = "mallory"\nreject = 403\n[[routing.rules]]\n', "")
                         .replace('"sip:127.0.0.1:5073"', '"sip:127.0.0.1:5071"'))
    assert node.h.node.routing_reload.reload()
    # The new set is [D2, D1]; the turn after D1 was D2's.
    call(node, 2)
    call(node, 3)
    assert [a for a, _ in invites(node, node.out())] == [D1, D2]


def test_a_reload_that_fails_is_counted_and_one_that_works_too(node, log_lines):
    reload = node.h.node.routing_reload
    node.path.write_text("[routing\n")
    assert not reload.reload() and not reload.reload()
    node.path.write_text(SECOND)
    assert reload.reload()
    assert (reload.failures, reload.reloads) == (2, 1)
    assert [e["log_level"].name for e in log_lines] == ["error", "error", "info"]
    assert log_lines[0]["log_format"].startswith("routing reload failed, the old configuration stays")
    assert str(node.path) in log_lines[2]["path"] and (log_lines[2]["rules"], log_lines[2]["sets"]) == (2, 1)


def test_a_reload_brings_in_a_hook(node):
    from tests import routing_hooks
    node.path.write_text(SECOND + '[routing]\nhook = "tests.routing_hooks:by_user"\nhook_timeout_s = 0.5\n')
    assert node.h.node.routing_reload.reload()
    node.send(invite("sip:carol@lb.test", branch="z9hG4bKh1"))
    assert [str(m.uri) for a, m in invites(node, node.out())] == ["sip:carol@127.0.0.1:5072"]
    # Its timeout is the new file's: a hook still thinking at 0.5 s is
    # given up, and the call answered 500.
    node.path.write_text(SECOND + '[routing]\nhook = "tests.routing_hooks:later"\nhook_timeout_s = 0.5\n')
    assert node.h.node.routing_reload.reload()
    del routing_hooks.pending[:]
    node.send(invite("sip:bob@lb.test", branch="z9hG4bKh2").replace(b"call-1@", b"call-h2@"))
    node.out()

    def h2(out):
        return [m for m, a in out if m.call_id == "call-h2@example.test"]
    node.h.advance(0.4)
    assert [getattr(m, "status", None) for m in h2(node.out())] == []
    node.h.advance(0.2)
    answered = h2(node.out())
    assert [(m.status, m.reason) for m in answered] == [(500, "Server Internal Error (routing hook)")]
    # And a file without the hook removes it.
    node.path.write_text(SECOND)
    assert node.h.node.routing_reload.reload()
    node.send(invite("sip:carol@lb.test", branch="z9hG4bKh3").replace(b"call-1@", b"call-h3@"))
    assert [str(m.uri) for a, m in invites(node, node.out())] == ["sip:carol@lb.test"]


def test_a_reload_replaces_the_emergency_set(tmp_path):
    settings = {"rules": [], "emergency_set": "sos", "emergency_numbers": ["112"],
                "sets": {"sos": {"destinations": ["sip:127.0.0.1:5071"]}}}
    n = Node(settings={"routing": settings})
    path = tmp_path / "node.toml"
    n.h.node.routing_reload.path = str(path)
    path.write_text('[routing]\nemergency_set = "sos"\nemergency_numbers = ["112"]\n'
                    '[routing.sets.sos]\ndestinations = ["sip:127.0.0.1:5073"]\n')
    assert n.h.node.routing_reload.reload()
    n.send(invite("sip:112@example.test"))
    assert [a for a, _ in invites(n, n.out())] == [D3]


class ThreadReactor:
    """Stands in for a reactor that takes calls from signal handlers."""

    def __init__(self):
        self.calls = []

    def callFromThread(self, f, *args):
        self.calls.append((f, args))


def test_sighup_reloads_from_the_reactor_and_stop_restores_the_handler(node, tmp_path):
    import os
    import signal as signals

    from sipcluster.routing.reload import RoutingReload
    reactor = ThreadReactor()
    reload = RoutingReload(node.h.node, str(node.path), reactor)
    before = signals.getsignal(signals.SIGHUP)
    reload.startService()
    try:
        node.path.write_text(SECOND)
        os.kill(os.getpid(), signals.SIGHUP)
        (f, args), = reactor.calls
        assert f() is True and reload.reloads == 1
        call(node, 1, user="mallory")
        assert [m.status for m in node.to(UAC, node.out()) if m.status >= 200] == [403]
    finally:
        reload.stopService()
    assert signals.getsignal(signals.SIGHUP) is before


def test_sighup_is_passed_on_to_the_workers(node):
    import os
    import signal as signals

    from sipcluster.routing.reload import RoutingReload

    class Process:
        def __init__(self):
            self.signals = []

        def signalProcess(self, name):
            self.signals.append(name)

    class Gone(Process):
        def signalProcess(self, name):
            raise OSError("gone")

    class Workers:
        processes = {1: Gone(), 2: Process()}

    reactor = ThreadReactor()
    reload = RoutingReload(node.h.node, str(node.path), reactor)
    reload.workers = Workers()
    reload.startService()
    try:
        node.path.write_text(SECOND)
        os.kill(os.getpid(), signals.SIGHUP)
    finally:
        reload.stopService()
    assert len(reactor.calls) == 2
    for f, args in reactor.calls:
        f(*args)
    assert Workers.processes[2].signals == ["HUP"]


def test_a_reload_checks_the_file_in_the_mode_the_node_runs(tmp_path):
    # A stateless node cannot probe (probes follow transactions): a file
    # that asks for it is refused on reload as it would be at start-up.
    n = Node(stateless=True, settings={"routing": FIRST})
    path = tmp_path / "node.toml"
    n.h.node.routing_reload.path = str(path)
    path.write_text(SECOND + "probe_interval_s = 1\n")
    assert not n.h.node.routing_reload.reload()
    assert n.h.node.routing_reload.failures == 1
