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


def test_the_hook_is_shown_the_request_as_strings():
    node = hooked("records")
    del routing_hooks.views[:]
    node.send(invite("sip:bob@lb.test", extra="X-Tier: gold\nX-Tier: silver\n"))
    assert [a for a, _ in sent(node, node.out())] == [D1]
    (view,) = routing_hooks.views
    assert view[:7] == ("INVITE", "sip:bob@lb.test", "sip:alice@example.test", "sip:bob@example.test",
                        "call-1@example.test", ("udp", "127.0.0.1", 5080), ["gold", "silver"])
    assert [(c.uri, c.next_hop, c.q) for c in view[7]] == [("sip:bob@lb.test", "sip:127.0.0.1:5071", 1.0)]


@pytest.mark.parametrize("user,what", [
    ("noset", "returned 'nope', which is no destination set"),
    ("mailto", "returned 'mailto:bob@example.test', not a SIP URI"),
    ("unparseable", "returned 'sip:bob@', not a SIP URI"),
    ("number", "returned a list holding 42"),
])
def test_a_hook_answering_nonsense_is_500_and_says_what_it_returned(errors, user, what):
    node = hooked("by_answer")
    node.send(invite("sip:%s@lb.test" % user))
    assert finals(node, node.out()) == [(500, "Server Internal Error (routing hook)")]
    (line,) = errors
    assert line["hook"] == "tests.routing_hooks:by_answer"
    assert line["what"] == "ValueError: " + what
    assert line["log_format"] == "routing hook {hook} failed: {what}"


def test_a_hook_answering_an_empty_list_is_404(errors):
    node = hooked("by_answer")
    node.send(invite("sip:empty@lb.test"))
    assert finals(node, node.out()) == [(404, "Not Found")]
    assert errors == []


def test_a_hooks_candidates_keep_their_q_and_next_hop():
    node = hooked("by_answer")
    node.send(invite("sip:hop@lb.test"))
    out = node.out()
    # q 1.0 first (RFC 3261 16.6), the q 0.5 one after it fails.
    ((addr, first),) = sent(node, out)
    assert addr == D2 and str(first.uri) == "sip:bob@127.0.0.1:5072"
    from tests.test_proxy import reply
    node.send(reply(first, 486), D2)
    ((addr, second),) = sent(node, node.out())
    assert addr == D3 and str(second.uri) == "sip:bob@lb.test"


def test_a_hook_of_another_kind_of_answer_says_what_it_returned(errors):
    node = hooked("by_answer")
    node.send(invite("sip:raises@lb.test"))
    assert [m.status for m in node.to(UAC, node.out()) if m.status >= 200] == []  # None: the rules
    node = hooked("wrong")
    node.send(invite("sip:bob@lb.test"))
    node.out()
    assert errors[-1]["what"] == (
        "ValueError: returned 42 (expected targets, a set name, a Reject or None)")


def test_a_hook_raising_reject_answers_without_counting_a_failure(errors):
    node = hooked("raises_reject")
    node.send(invite("sip:bob@lb.test"))
    assert finals(node, node.out()) == [(486, "Busy Here (hook)")]
    assert errors == [] and node.h.node.routing.hook.failures == 0


def test_a_later_reject_or_error_of_the_hook(errors):
    from sipcluster.routing.hook import Reject
    node = hooked("rejects_later", timeout=5)
    del routing_hooks.pending[:]
    node.send(invite("sip:bob@lb.test"))
    node.out()
    routing_hooks.pending.pop().callback(Reject(480, "Temporarily Unavailable (hook)"))
    assert finals(node, node.out()) == [(480, "Temporarily Unavailable (hook)")]
    node.send(invite("sip:bob@lb.test", branch="z9hG4bKl2").replace(b"call-1", b"call-2"))
    node.out()
    routing_hooks.pending.pop().errback(KeyError("gone"))
    assert finals(node, node.out()) == [(500, "Server Internal Error (routing hook)")]
    assert errors[-1]["what"] == "KeyError: 'gone'"
    node.send(invite("sip:bob@lb.test", branch="z9hG4bKl3").replace(b"call-1", b"call-3"))
    node.out()
    node.h.advance(5.1)
    assert {(m.status, m.reason) for m in node.to(UAC, node.out())
            if m.status >= 200 and m.call_id == "call-3@example.test"} == {
        (500, "Server Internal Error (routing hook)")}
    assert errors[-1]["what"] == "no answer within 5.0s"
    assert node.h.node.routing.hook.failures == 2


def test_a_candidate_without_a_next_hop_says_none():
    node = Node(settings={"routing": {"hook": "tests.routing_hooks:records", "rules": [
        {"domain": "lb.test", "uri": "sip:bob@127.0.0.1:5072"}], "sets": {}}})
    del routing_hooks.views[:]
    node.send(invite("sip:bob@lb.test"))
    assert [a for a, _ in sent(node, node.out())] == [D2]
    (view,) = routing_hooks.views
    assert [(c.uri, c.next_hop, c.q) for c in view[7]] == [("sip:bob@127.0.0.1:5072", None, 1.0)]


def test_a_later_none_keeps_the_rules_choice():
    node = hooked("later", timeout=5)
    del routing_hooks.pending[:]
    node.send(invite("sip:bob@lb.test"))
    node.out()
    routing_hooks.pending.pop().callback(None)
    assert [a for a, _ in sent(node, node.out())] == [D1]
    node.send(invite("sip:bob@lb.test", branch="z9hG4bKl2").replace(b"call-1", b"call-2"))
    node.out()
    routing_hooks.pending.pop().callback("lb")
    assert [a for a, _ in sent(node, node.out())] == [D1]


@pytest.mark.parametrize("value,message", [
    ("tests.routing_hooks", 'expected "package.module:function", got "tests.routing_hooks"'),
    ("tests.routing_hooks:", 'expected "package.module:function", got "tests.routing_hooks:"'),
    (":by_user", 'expected "package.module:function", got ":by_user"'),
    ("tests.routing_hooks:nothing", "tests.routing_hooks has no function nothing"),
    ("tests.routing_hooks:by_user:x", "tests.routing_hooks has no function by_user:x"),
])
def test_hook_errors_in_full(value, message):
    from sipcluster.routing.hook import load_hook
    with pytest.raises(ValueError) as e:
        load_hook(value)
    assert str(e.value) == message


def test_a_hook_that_cannot_be_imported_says_why():
    from sipcluster.routing.hook import load_hook
    with pytest.raises(ValueError) as e:
        load_hook("tests.nonexistent_module:f")
    assert str(e.value) == "cannot import tests.nonexistent_module: No module named 'tests.nonexistent_module'"
