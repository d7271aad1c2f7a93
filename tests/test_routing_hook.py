"""
routing.hook (sipcluster.routing.hook): the operator's function sees the
request and the candidates, returns targets, a set name, a rejection or
nothing, maybe later (bounded by a timeout); its failures answer 500 and
log one line.
"""

import pytest
from twisted.logger import globalLogPublisher

from sipcluster import config
from sipcluster.config import ConfigError
from tests import routing_hooks
from tests.test_proxy import UAC, Node, invite

D1, D2, D3 = ("127.0.0.1", 5071), ("127.0.0.1", 5072), ("127.0.0.1", 5073)


def hooked(hook, timeout=1.0):
    return Node(settings={"routing": {
        "hook": "tests.routing_hooks:" + hook, "hook_timeout_s": timeout,
        "rules": [{"domain": "lb.test", "set": "lb"}],
        "sets": {"lb": {"destinations": ["sip:127.0.0.1:5071"]}}}})


def sent(node, out):
    return [(a, m) for m, a in out if getattr(m, "method", None) == "INVITE"]


def finals(node, out):
    return [(m.status, m.reason) for m in node.to(UAC, out) if m.status >= 200]


@pytest.fixture
def errors():
    lines = []

    def observe(event):
        if event.get("log_namespace", "").startswith("sipcluster.routing.hook"):
            lines.append(event)
    globalLogPublisher.addObserver(observe)
    yield lines
    globalLogPublisher.removeObserver(observe)


def test_the_hook_sees_the_request_and_candidates_and_chooses():
    node = hooked("by_user")
    del routing_hooks.seen[:]
    node.send(invite("sip:bob@lb.test", extra="X-Tier: gold\n"))
    assert [a for a, _ in sent(node, node.out())] == [D1]  # None: the rules' choice
    ((method, uri, tier, candidates),) = routing_hooks.seen
    assert (method, uri, tier) == ("INVITE", "sip:bob@lb.test", "gold")
    assert [(c.uri, c.next_hop) for c in candidates] == [("sip:bob@lb.test", "sip:127.0.0.1:5071")]
    node.send(invite("sip:carol@other.test", branch="z9hG4bKh2"))
    ((addr, fwd),) = sent(node, node.out())
    assert addr == D2 and str(fwd.uri) == "sip:carol@127.0.0.1:5072"
    node.send(invite("sip:mallory@lb.test", branch="z9hG4bKh3"))
    assert finals(node, node.out()) == [(403, "Forbidden (hook)")]
    node.send(invite("sip:dave@other.test", branch="z9hG4bKh4"))
    assert [a for a, _ in sent(node, node.out())] == [D1]
    node.send(invite("sip:erin@lb.test", branch="z9hG4bKh5"))
    ((addr, fwd),) = sent(node, node.out())
    assert addr == D3 and str(fwd.uri) == "sip:erin@lb.test"


@pytest.mark.parametrize("hook", ["broken", "wrong"])
def test_a_failing_hook_answers_500_and_logs_one_line(hook, errors):
    node = hooked(hook)
    node.send(invite("sip:bob@lb.test"))
    out = node.out()
    assert finals(node, out) == [(500, "Server Internal Error (routing hook)")]
    assert sent(node, out) == []
    assert len(errors) == 1 and "log_failure" not in errors[0]
    assert node.h.node.routing.hook.failures == 1


def test_a_deferred_answer_is_waited_for_and_bounded(errors):
    node = hooked("later", timeout=2)
    del routing_hooks.pending[:]
    node.send(invite("sip:bob@lb.test"))
    out = node.out()
    assert [m.status for m in node.to(UAC, out)] == [100] and sent(node, out) == []
    routing_hooks.pending.pop().callback(["sip:bob@127.0.0.1:5072"])
    assert [a for a, _ in sent(node, node.out())] == [D2]
    node.send(invite("sip:bob@lb.test", branch="z9hG4bKslow").replace(b"call-1", b"call-2"))
    node.out()
    node.h.advance(2.1)
    assert finals(node, node.out()) == [(500, "Server Internal Error (routing hook)")]
    assert len(errors) == 1 and "2" in errors[0]["what"]


@pytest.mark.parametrize("value,fragment", [
    ("tests.routing_hooks", 'expected "package.module:function"'),
    ("tests.nonexistent_module:f", "cannot import tests.nonexistent_module"),
    ("tests.routing_hooks:nothing", "tests.routing_hooks has no function nothing"),
])
def test_hook_errors_name_the_key(tmp_path, value, fragment):
    path = tmp_path / "node.toml"
    path.write_text('[routing]\nhook = "%s"\n' % value)
    with pytest.raises(ConfigError) as e:
        config.load(str(path))
    assert "routing.hook: " in str(e.value) and fragment in str(e.value)
