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


def test_probes_follow_the_new_sets(node):
    node.path.write_text(SECOND + "probe_interval_s = 1\n")
    assert node.h.node.routing_reload.reload()
    node.h.clock.advance(0)
    node.out()
    node.h.advance(1.01)
    probed = sorted({a for m, a in node.out() if getattr(m, "method", None) == "OPTIONS"})
    assert probed == [D2, D3]
