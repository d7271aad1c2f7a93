"""
The request pipeline (sipcluster.proxy.pipeline, sipcluster.proxy.core):
stages continue, answer or wait; both proxy modes walk the same points; the
contracts between the layers are zope interfaces the pieces provide.
"""

import pytest
from twisted.internet import defer
from zope.interface.verify import verifyObject

from sipcluster.proxy import pipeline as p
from sipcluster.proxy.pipeline import Pipeline, RequestContext, Respond, Stage, StageNotAllowed
from sipcluster.sip.errors import ParseError
from sipcluster.sip.message import parse_message
from tests.sipdata import crlf
from tests.test_proxy import FOREIGN, UAC, Node, finals, invite, reply, requests


class Recorder(Stage):
    """A stage that notes its calls and does what it is told."""

    def __init__(self, name, points, log, result=None, error=None):
        self.name = name
        self.points = points
        self.log = log
        self.result = result
        self.error = error

    def _run(self, *args):
        self.log.append(self.name)
        if self.error is not None:
            raise self.error
        return self.result

    on_request = targets = failure = _run

    def branch(self, context, request, target):
        return self._run()

    def response(self, context, response):
        self._run()


def context(answers=None):
    request = parse_message(invite())
    return RequestContext(request, None, lambda c, r: answers.append(r.status))


def test_request_stages_run_in_order_then_done():
    log, done, failed = [], [], []
    pl = Pipeline()
    pl.add(Recorder("a", (p.REQUEST,), log))
    pl.add(Recorder("b", (p.REQUEST,), log))
    pl.add(Recorder("first", (p.REQUEST,), log), before="a")
    pl.run_request(context(), done.append, lambda c, e: failed.append(e))
    assert log == ["first", "a", "b"] and len(done) == 1 and failed == []


def test_a_stage_answering_stops_the_walk():
    log, done, failed = [], [], []
    pl = Pipeline()
    pl.add(Recorder("a", (p.REQUEST,), log, error=Respond(403, "Forbidden", [("X", "1")])))
    pl.add(Recorder("b", (p.REQUEST,), log))
    pl.run_request(context(), done.append, lambda c, e: failed.append(e))
    assert log == ["a"] and done == []
    assert p.error_status(failed[0]) == (403, "Forbidden", [("X", "1")])


def test_a_waiting_stage_resumes_the_walk_and_sends_trying_once():
    log, done, trying = [], [], []
    waiting = defer.Deferred()
    pl = Pipeline()
    pl.add(Recorder("slow", (p.REQUEST,), log, result=waiting))
    pl.add(Recorder("after", (p.REQUEST,), log))
    ctx = RequestContext(parse_message(invite()), None, None, trying=trying.append)
    pl.run_request(ctx, done.append, None)
    assert log == ["slow"] and done == [] and trying == [ctx]
    waiting.callback(None)
    assert log == ["slow", "after"] and done == [ctx] and trying == [ctx]


def test_a_waiting_stage_that_fails_answers():
    failed = []
    waiting = defer.Deferred()
    pl = Pipeline()
    pl.add(Recorder("slow", (p.REQUEST,), [], result=waiting))
    pl.run_request(context(), None, lambda c, e: failed.append(e))
    waiting.errback(Respond(503))
    assert [e.status for e in failed] == [503]


def test_first_target_stage_with_an_answer_wins():
    log, chosen = [], []
    pl = Pipeline()
    pl.add(Recorder("not-mine", (p.TARGETS,), log, result=None))
    pl.add(Recorder("mine", (p.TARGETS,), log, result=["t1"]))
    pl.add(Recorder("never", (p.TARGETS,), log, result=["t2"]))
    pl.select_targets(context(), lambda c, t: chosen.append(t), None)
    assert log == ["not-mine", "mine"] and chosen == [["t1"]]


def test_a_waiting_target_stage_that_passes_hands_on_to_the_next():
    log, chosen = [], []
    waiting = defer.Deferred()
    pl = Pipeline()
    pl.add(Recorder("slow", (p.TARGETS,), log, result=waiting))
    pl.add(Recorder("next", (p.TARGETS,), log, result=["t"]))
    pl.select_targets(context(), lambda c, t: chosen.append(t), None)
    waiting.callback(None)
    assert log == ["slow", "next"] and chosen == [["t"]]


def test_a_target_stage_that_answered_ends_the_walk_silently():
    from sipcluster.sip.message import make_response
    log, chosen, answers = [], [], []

    class Answers(Recorder):
        def targets(self, context):
            self.log.append(self.name)
            context.respond(make_response(context.request, 486, "Busy Here", "t1"))
            return None
    pl = Pipeline()
    pl.add(Answers("answers", (p.TARGETS,), log))
    pl.add(Recorder("never", (p.TARGETS,), log, result=["t"]))
    pl.select_targets(context(answers), lambda c, t: chosen.append(t), None)
    assert log == ["answers"] and chosen == [] and answers == [486]


def test_no_target_stage_answers_with_an_empty_set():
    chosen = []
    Pipeline().select_targets(context(), lambda c, t: chosen.append(t), None)
    assert chosen == [[]]


def test_stages_needing_transactions_are_refused_without_them():
    stage = Recorder("dialogs", (p.DIALOG,), [])
    stage.needs_transactions = True
    Pipeline(stateful=True).add(stage)
    with pytest.raises(StageNotAllowed):
        Pipeline(stateful=False).add(stage)
    with pytest.raises(ValueError):
        Pipeline().add(Recorder("odd", ("somewhere",), []))


def test_error_status_is_the_one_place_errors_become_answers():
    assert p.error_status(Respond(480)) == (480, None, [])
    assert p.error_status(ParseError("Bad To")) == (400, "Bad To", [])
    assert p.error_status(KeyError("bug")) == (500, "Server Internal Error", [])


def test_context_answers_once():
    answers = []
    ctx = context(answers)
    ctx.respond(ctx.request and make(ctx, 100))
    ctx.respond(make(ctx, 404))
    ctx.respond(make(ctx, 500))
    assert answers == [100, 404] and ctx.answered


def make(ctx, status):
    from sipcluster.sip.message import make_response
    return make_response(ctx.request, status)


# -- both modes on the same points ------------------------------------------------

class Policy(Stage):
    """A request stage refusing what comes from one user, as an ACL would."""

    name = "policy"
    points = (p.REQUEST,)

    def on_request(self, context):
        if context.request.from_.uri.user == "mallory":
            raise Respond(403, "Forbidden (policy)")


class Marker(Stage):
    """A branch and a response stage marking what passes."""

    name = "marker"
    points = (p.BRANCH, p.RESPONSE)

    def branch(self, context, request, target):
        request.add("X-Branch", "seen")

    def response(self, context, response):
        response.add("X-Response", "seen")


@pytest.mark.parametrize("stateless", [False, True])
def test_a_request_stage_plugs_into_either_mode(stateless):
    node = Node(stateless=stateless)
    node.pipeline.add(Policy(), before="registrar")
    node.send(invite().replace(b"sip:alice@", b"sip:mallory@"))
    (answer,) = [m for m, a in node.out() if a == UAC and m.status >= 200]
    assert (answer.status, answer.reason) == (403, "Forbidden (policy)")
    node.send(invite(branch="z9hG4bKother"))
    assert node.to(FOREIGN, node.out())  # others pass


@pytest.mark.parametrize("stateless", [False, True])
def test_branch_and_response_stages_see_what_crosses(stateless):
    node = Node(stateless=stateless)
    node.pipeline.add(Marker())
    node.send(invite())
    (fwd,) = node.to(FOREIGN, node.out())
    assert fwd.header("x-branch") == "seen"
    node.send(reply(fwd, 486), FOREIGN)
    back = [m for m in node.to(UAC, node.out()) if m.status == 486]
    assert back and back[0].header("x-response") == "seen"


class Failover(Stage):
    """A failure stage sending a failed call to a backup once."""

    name = "failover"
    points = (p.FAILURE,)
    needs_transactions = True

    def __init__(self, target):
        self.target = target
        self.seen = []

    def failure(self, context, responses):
        self.seen.append([r.status for r in responses])
        if len(self.seen) == 1:
            return [self.target]
        return None


def test_failure_stage_forks_again_before_the_caller_hears_anything():
    from sipcluster.proxy.forwarding import Target
    from sipcluster.sip.uri import parse_uri
    node = Node()
    backup = ("127.0.0.1", 5071)
    stage = node.pipeline.add(Failover(Target(parse_uri("sip:bob@127.0.0.1:5071"))))
    node.send(invite())
    (fwd,) = node.to(FOREIGN, node.out())
    node.send(reply(fwd, 503), FOREIGN)
    out = node.out()
    assert [m.status for m in node.to(UAC, out) if m.status >= 200] == []  # nothing final yet
    (second,) = [m for m in node.to(backup, out) if hasattr(m, "method") and m.method == "INVITE"]
    node.send(reply(second, 486), backup)
    assert [m.status for m in node.to(UAC, node.out()) if m.status >= 200] == [486]
    assert stage.seen == [[503], [503, 486]]


# -- the contracts --------------------------------------------------------------

def test_the_pieces_provide_their_interfaces():
    from sipcluster.proxy.context import ResponseContext
    from sipcluster.transaction.layer import (
        IClientTransactionOwner, ITransactionUser)
    from sipcluster.transport.layer import ITransportReceiver
    stateful, stateless = Node(), Node(stateless=True)
    assert verifyObject(ITransactionUser, stateful.proxy)
    assert verifyObject(ITransportReceiver, stateful.tl)
    assert verifyObject(ITransportReceiver, stateless.proxy)
    rc = ResponseContext(stateful.proxy, context([]), [], stateful.tl.timer_heap, 180)
    assert verifyObject(IClientTransactionOwner, rc)
    for node in (stateful, stateless):
        for stage in node.pipeline.stages:
            for point in stage.points:
                assert verifyObject(p.POINT_INTERFACES[point], stage), (stage.name, point)


def test_every_stage_of_a_full_cluster_node_provides_its_points():
    from twisted.internet.testing import MemoryReactorClock
    from sipcluster import config
    from sipcluster.node import build_node
    cfg = config.load(None, {"store.backend": "etcd", "cluster.max_dialogs": 10,
                             "accounting.failed_calls": True})
    node = build_node(cfg, MemoryReactorClock())
    names = [s.name for s in node.pipeline.stages]
    assert names == ["dialogs", "dialog-limit", "drain", "registrar", "local", "location",
                     "request-uri"]
    for stage in node.pipeline.stages:
        for point in stage.points:
            assert verifyObject(p.POINT_INTERFACES[point], stage), (stage.name, point)


# -- the front door both modes share -------------------------------------------------

REGISTER_MF0 = crlf("""\
REGISTER sip:example.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKmf0;rport
Max-Forwards: 0
Proxy-Require: foo
From: <sip:alice@example.test>;tag=f1
To: <sip:alice@example.test>
Call-ID: mf0
CSeq: 1 REGISTER
Contact: <sip:alice@127.0.0.1:5090>
Content-Length: 0

""")


@pytest.mark.parametrize("stateless", [False, True])
def test_both_modes_validate_before_anything_else(stateless):
    # Stateful answered 483, stateless stored the binding and said 200.
    node = Node(stateless=stateless)
    node.send(REGISTER_MF0, ("127.0.0.1", 5090))
    assert [m.status for m, _ in node.out()] == [483]
    assert node.location.lookup("sip:alice@example.test") == []


def test_the_readme_example_stage_works_as_written():
    import os
    import textwrap
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.rst")) as f:
        readme = f.read()
    start = readme.index("    # sipcluster/policy/blocklist.py")
    code = textwrap.dedent(readme[start:readme.index("then add ``blocklist.CONFIG``")])
    namespace = {}
    exec(compile(code, "README.rst", "exec"), namespace)
    assert namespace["CONFIG"].keys["users"].default == []
    node = Node()
    node.pipeline.add(namespace["Blocklist"](["mallory"]), before="registrar")
    node.send(invite().replace(b"sip:alice@", b"sip:mallory@"))
    assert [m.status for m, a in node.out() if a == UAC] == [403]


def test_a_routing_rule_decides_whether_a_request_needs_credentials(tmp_path):
    # Issue 11: "which requests need authentication is part of the routing
    # rules (per rule: required, or not)".
    users = tmp_path / "users.json"
    from sipcluster.policy.users import write_users_file
    write_users_file(str(users), {})
    node = Node(settings={
        "auth": {"enabled": True, "realm": "example.test", "users_file": str(users)},
        "routing": {"rules": [
            {"name": "trunk", "from_domain": "trunk.test", "authenticate": False,
             "uri": "sip:bob@127.0.0.1:5070"},
            {"name": "strict", "user": "secret", "authenticate": True,
             "uri": "sip:secret@127.0.0.1:5070"}]}})
    # To a served domain: the default would challenge it; the rule says no.
    node.send(invite(uri="sip:bob@example.test").replace(
        b"sip:alice@example.test>;tag=a1", b"sip:gw@trunk.test>;tag=a1"))
    assert node.to(FOREIGN, node.out())  # forwarded, no challenge
    foreign = invite(uri="sip:secret@elsewhere.test", branch="z9hG4bKs2").replace(
        b"sip:alice@example.test>;tag=a1", b"sip:gw@other.test>;tag=a1")
    node.send(foreign)
    # From and To another domain: the default would let it pass; the rule says no.
    assert [m.status for m, a in node.out() if a == UAC] == [407]
    node.send(invite(branch="z9hG4bKs3"))
    assert [m.status for m, a in node.out() if a == UAC] == [407]  # no rule: the default


def test_a_rules_access_list_refuses_sources_it_does_not_allow():
    # Issue 11: "allow and deny lists (CIDR, IPv4 and IPv6) globally and per rule".
    node = Node(settings={"routing": {"rules": [
        {"name": "trunk-only", "user_prefix": "00", "allow": ["127.0.0.0/24", "::1/128"],
         "deny": ["127.0.0.9/32"], "uri": "sip:gw@127.0.0.1:5070"}]}})
    node.send(invite(uri="sip:0044123@example.test"), ("127.0.0.1", 5080))
    assert node.to(FOREIGN, node.out())  # allowed
    node.send(invite(uri="sip:0044123@example.test", branch="z9hG4bKd2"), ("127.0.1.5", 5080))
    assert [(m.status, m.reason) for m, a in node.out() if a == ("127.0.1.5", 5080)
            and m.status >= 200] == [(403, "Forbidden (trunk-only)")]
    node.send(invite(uri="sip:0044123@example.test", branch="z9hG4bKd3"), ("127.0.0.9", 5080))
    assert [m.status for m, a in node.out() if a == ("127.0.0.9", 5080) and m.status >= 200] == [403]
    # Requests the rule does not match are not its business.
    node.send(invite(branch="z9hG4bKd4"), ("127.0.1.5", 5080))
    assert node.to(FOREIGN, node.out())


# -- stages that wait, fail or pass, on a whole node ----------------------------------


class Tagger(Stage):
    """A branch stage adding one header to every copy, after a Deferred when told."""

    points = (p.BRANCH,)

    def __init__(self, name, wait=None, error=None):
        self.name = name
        self.wait = wait
        self.error = error
        self.seen = []

    def branch(self, context, request, target):
        if self.error is not None:
            raise self.error
        self.seen.append((context.request.method, str(target.uri)))
        request.add("X-Stage", self.name)
        return self.wait


@pytest.mark.parametrize("stateless", [False, True])
def test_branch_stages_after_a_waiting_one_run_when_it_fires(stateless):
    node = Node(stateless=stateless)
    waiting = defer.Deferred()
    first = node.pipeline.add(Tagger("first"))
    node.pipeline.add(Tagger("slow", waiting))
    last = node.pipeline.add(Tagger("last"))
    node.send(invite())
    assert node.to(FOREIGN, node.out()) == []
    waiting.callback(None)
    fwd, = node.to(FOREIGN, node.out())
    assert fwd.values("x-stage") == ["first", "slow", "last"]
    assert first.seen == last.seen == [("INVITE", "sip:bob@127.0.0.1:5070")]


@pytest.mark.parametrize("stateless", [False, True])
def test_a_branch_stage_refusing_answers_the_caller(stateless):
    node = Node(stateless=stateless)
    node.pipeline.add(Tagger("no", error=Respond(488, "Not Acceptable Here (media)")))
    node.send(invite())
    sent = node.out()
    assert node.to(FOREIGN, sent) == []
    final, = [m for m in node.to(UAC, sent) if m.status >= 200]
    assert (final.status, final.reason) == (488, "Not Acceptable Here (media)")


def test_a_branch_stage_failing_after_waiting_answers_the_caller():
    node = Node()
    waiting = defer.Deferred()
    node.pipeline.add(Tagger("slow", waiting))
    node.pipeline.add(Tagger("no", error=Respond(403)))
    node.send(invite())
    node.out()
    waiting.callback(None)
    assert [m.status for m in node.to(UAC, node.out()) if m.status >= 200] == [403]


class Breaking(Stage):
    """A response and dialog stage with a bug: it raises."""

    name = "breaking"
    points = (p.RESPONSE, p.DIALOG)

    def response(self, context, response):
        raise KeyError("bug")

    def dialog_confirmed(self, request, response):
        raise KeyError("bug")

    dialog_ended = call_failed = dialog_confirmed


class Confirmations(Stage):
    name = "confirmations"
    points = (p.RESPONSE, p.DIALOG)

    def __init__(self):
        self.events = []

    def response(self, context, response):
        self.events.append(("response", response.status, context is not None))

    def dialog_confirmed(self, request, response):
        self.events.append(("confirmed", response.status))

    def dialog_ended(self, request, response):
        self.events.append(("ended", response.status))

    def call_failed(self, request, response, started):
        self.events.append(("failed", response.status))


def test_a_stage_that_raises_does_not_stop_the_response_or_the_others():
    node = Node()
    node.pipeline.add(Breaking())
    seen = node.pipeline.add(Confirmations())
    node.send(invite())
    fwd, = node.to(FOREIGN, node.out())
    node.send(reply(fwd, 180), FOREIGN)
    node.send(reply(fwd, 200), FOREIGN)
    assert [m.status for m in node.to(UAC, node.out())] == [180, 200]
    assert seen.events == [("response", 180, True), ("response", 200, True), ("confirmed", 200)]


def test_stateless_response_stages_get_no_context():
    node = Node(stateless=True)
    node.pipeline.add(Breaking())
    seen = node.pipeline.add(Confirmations())
    node.send(invite())
    fwd, = node.to(FOREIGN, node.out())
    node.send(reply(fwd, 486), FOREIGN)
    assert [m.status for m in node.to(UAC, node.out())] == [486]
    assert seen.events == [("response", 486, False)]


class Backup(Stage):
    """A failure stage: its targets, at once or by a Deferred."""

    points = (p.FAILURE,)
    needs_transactions = True

    def __init__(self, name, result):
        self.name = name
        self.result = result
        self.asked = 0

    def failure(self, context, responses):
        self.asked += 1
        result, self.result = self.result, None
        return result


@pytest.mark.parametrize("passing", [None, [], "deferred-none", "deferred-empty"])
def test_a_failure_stage_that_passes_hands_on_to_the_next(passing):
    from sipcluster.proxy.forwarding import Target
    from sipcluster.sip.uri import parse_uri
    node = Node()
    backup = ("127.0.0.1", 5071)
    if passing == "deferred-none":
        passing = defer.succeed(None)
    elif passing == "deferred-empty":
        passing = defer.succeed([])
    first = node.pipeline.add(Backup("first", passing))
    second = node.pipeline.add(Backup("second", [Target(parse_uri("sip:bob@127.0.0.1:5071"))]))
    third = node.pipeline.add(Backup("third", None))
    node.send(invite())
    fwd, = node.to(FOREIGN, node.out())
    node.send(reply(fwd, 486), FOREIGN)
    sent = node.out()
    assert [m.method for m in node.to(backup, sent)] == ["INVITE"]
    assert finals(node, sent) == []
    assert (first.asked, second.asked, third.asked) == (1, 1, 0)


def test_a_failure_stage_waiting_then_naming_targets_forks_to_them():
    from sipcluster.proxy.forwarding import Target
    from sipcluster.sip.uri import parse_uri
    node = Node()
    waiting = defer.Deferred()
    node.pipeline.add(Backup("slow", waiting))
    node.send(invite())
    fwd, = node.to(FOREIGN, node.out())
    node.send(reply(fwd, 486), FOREIGN)
    assert finals(node, node.out()) == []
    waiting.callback([Target(parse_uri("sip:bob@127.0.0.1:5071"))])
    second, = requests(node.to(("127.0.0.1", 5071), node.out()))
    node.send(reply(second, 480), ("127.0.0.1", 5071))
    assert finals(node, node.out()) == [480]


def test_a_failure_stage_that_fails_lets_the_best_response_go_upstream():
    node = Node()
    waiting = defer.Deferred()
    node.pipeline.add(Backup("slow", waiting))
    node.send(invite())
    fwd, = node.to(FOREIGN, node.out())
    node.send(reply(fwd, 486), FOREIGN)
    waiting.errback(KeyError("bug"))
    assert finals(node, node.out()) == [486]
    node = Node()
    node.pipeline.add(Backup("raising", None)).failure = lambda c, r: {}["bug"]
    node.send(invite())
    fwd, = node.to(FOREIGN, node.out())
    node.send(reply(fwd, 486), FOREIGN)
    assert finals(node, node.out()) == [486]


def test_a_stage_provides_the_interfaces_of_its_points_only():
    class Both(Stage):
        name = "both"
        points = (p.REQUEST, p.DIALOG)

    stage = Both()
    assert p.IRequestStage.providedBy(stage) and p.IDialogStage.providedBy(stage)
    assert not p.ITargetStage.providedBy(stage) and not p.IBranchStage.providedBy(stage)


def test_a_pipeline_is_stateful_unless_told():
    stage = Recorder("dialogs", (p.DIALOG,), [])
    stage.needs_transactions = True
    assert Pipeline().add(stage) is stage


def test_an_unknown_point_is_named_in_the_error():
    with pytest.raises(ValueError, match=r"^stage odd: unknown pipeline point 'somewhere'$"):
        Pipeline().add(Recorder("odd", ("somewhere",), []))


def test_a_stateless_node_refuses_a_stage_that_follows_transactions_by_its_key():
    from sipcluster.config import ConfigError
    from tests.harness import NodeHarness
    with pytest.raises(ConfigError, match="cluster.max_dialogs"):
        NodeHarness({"node": {"mode": "stateless"}, "cluster": {"max_dialogs": 10}})


class Noting(Stage):
    """A failure stage noting what it is shown, passing."""

    points = (p.FAILURE,)
    needs_transactions = True

    def __init__(self, name, result=None):
        self.name = name
        self.result = result
        self.seen = []

    def failure(self, context, responses):
        self.seen.append((context.request.method, [r.status for r in responses]))
        return self.result


def test_failure_stages_after_waiting_ones_see_the_request_and_responses():
    from sipcluster.proxy.forwarding import Target
    from sipcluster.sip.uri import parse_uri
    node = Node()
    first = node.pipeline.add(Noting("first", defer.succeed(None)))
    second = node.pipeline.add(Noting("second"))
    third = node.pipeline.add(Noting("third", [Target(parse_uri("sip:bob@127.0.0.1:5071"))]))
    node.send(invite())
    fwd, = node.to(FOREIGN, node.out())
    node.send(reply(fwd, 486), FOREIGN)
    assert [m.method for m in node.to(("127.0.0.1", 5071), node.out())] == ["INVITE"]
    assert first.seen == second.seen == third.seen == [("INVITE", [486])]


class Refusing(Stage):
    points = (p.REQUEST, p.TARGETS)

    def __init__(self, name, error):
        self.name = name
        self.error = error

    def on_request(self, context):
        raise self.error

    targets = on_request


class Slow(Stage):
    points = (p.REQUEST, p.TARGETS)

    def __init__(self, name):
        self.name = name
        self.waiting = defer.Deferred()

    def on_request(self, context):
        return self.waiting

    targets = on_request


@pytest.mark.parametrize("point", [p.REQUEST, p.TARGETS])
def test_a_stage_refusing_after_a_waiting_one_answers_the_caller(point):
    node = Node()
    slow, no = Slow("slow"), Refusing("no", Respond(403, "Forbidden (later stage)"))
    slow.points = no.points = (point,)
    node.pipeline.add(slow, before="registrar")
    node.pipeline.add(no, before="registrar")
    node.send(invite())
    node.out()
    slow.waiting.callback(None)
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert (final.status, final.reason) == (403, "Forbidden (later stage)")


@pytest.mark.parametrize("point", [p.REQUEST, p.TARGETS])
def test_a_waiting_stage_failing_answers_the_caller(point):
    node = Node()
    slow = Slow("slow")
    slow.points = (point,)
    node.pipeline.add(slow, before="registrar")
    node.send(invite())
    node.out()
    slow.waiting.errback(Respond(480, "Temporarily Unavailable (store)"))
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert (final.status, final.reason) == (480, "Temporarily Unavailable (store)")


def test_a_method_the_node_does_not_know_is_501_with_what_it_allows():
    # RFC 3261 21.5.2 / 20.5: 501, Allow listing what the node knows.
    from sipcluster.proxy.forwarding import ALLOW
    node = Node()
    node.send(invite("sip:127.0.0.1:5060", "PUBLISH"))
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert (final.status, final.reason) == (501, "Not Implemented")
    assert final.header("allow") == ALLOW
    # A known method for the node itself, which is no user agent: 404.
    node.send(invite("sip:127.0.0.1:5060", "MESSAGE", branch="z9hG4bKuac2"))
    final, = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert final.status == 404 and not final.has("allow")
