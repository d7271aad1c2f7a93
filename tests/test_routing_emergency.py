"""
Emergency routing (sipcluster.routing.emergency): RFC 5031 service URNs
and configured numbers go through the emergency set, before any rule,
past call admission and draining, and their CDRs say so.
"""

import pytest

from sipcluster import config
from sipcluster.config import ConfigError
from sipcluster.proxy.pipeline import RequestContext, Respond
from sipcluster.sip.message import parse_message
from tests.test_proxy import UAC, Node, invite, reply

SOS = ("127.0.0.1", 5079)
LB = ("127.0.0.1", 5071)


def emergency_node(**settings):
    data = {"routing": {
        "emergency_set": "sos", "emergency_numbers": ["112", "911"],
        "rules": [{"reject": 403, "reason": "Nothing here"}],
        "sets": {"sos": {"destinations": ["sip:127.0.0.1:5079"]}}}}
    data.update(settings)
    return Node(settings=data)


def invites_to(node, addr, out):
    return [m for m, a in out if a == addr and getattr(m, "method", None) == "INVITE"]


def finals(node, out):
    return [m.status for m in node.to(UAC, out) if m.status >= 200]


def sos_invite(uri="urn:service:sos", branch="z9hG4bKsos", call="call-1"):
    return invite(uri, branch=branch).replace(b"call-1", call.encode())


@pytest.mark.parametrize("uri", ["urn:service:sos", "urn:service:sos.fire",
                                 "sip:112@example.test", "tel:911;phone-context=example.test",
                                 "sip:9-1-1@example.test"])
def test_emergency_calls_go_to_the_emergency_set_before_any_rule(uri):
    node = emergency_node()
    node.send(sos_invite(uri))
    out = node.out()
    (fwd,) = invites_to(node, SOS, out)
    assert str(fwd.uri) == uri and finals(node, out) == []


@pytest.mark.parametrize("uri", ["urn:service:counseling", "sip:1120@example.test"])
def test_other_calls_are_not_emergencies(uri):
    node = emergency_node()
    node.send(sos_invite(uri))
    out = node.out()
    assert invites_to(node, SOS, out) == [] and finals(node, out) in ([403], [416])


def test_a_full_node_still_takes_emergency_calls_and_marks_their_cdr():
    node = emergency_node(cluster={"max_dialogs": 1}, accounting={"failed_calls": True})
    node.h.node.routing.rules = []
    records = []
    node.h.node.dialogs.on_end.append(records.append)
    # The one call this node may set up at once, still ringing...
    node.send(sos_invite("sip:carol@127.0.0.1:5072", branch="z9hG4bKb", call="call-b"))
    assert invites_to(node, ("127.0.0.1", 5072), node.out())
    # ... so the next is refused, an emergency call is not.
    node.send(sos_invite("sip:dave@127.0.0.1:5073", branch="z9hG4bKc", call="call-c"))
    assert finals(node, node.out()) == [503]
    node.send(sos_invite(branch="z9hG4bKd", call="call-d"))
    (fwd,) = invites_to(node, SOS, node.out())
    node.send(reply(fwd, 486), SOS)
    assert finals(node, node.out()) == [486]
    by_call = {r["call_id"]: r for r in records}
    assert by_call["call-d@example.test"]["emergency"] is True
    assert "emergency" not in by_call["call-c@example.test"]


def test_a_draining_node_still_takes_emergency_calls():
    from sipcluster.cluster.drain import DrainGate
    gate = DrainGate(None, None, "/sipcluster", "n1")
    gate.draining = True
    request = parse_message(invite())
    context = RequestContext(request, None, None)
    with pytest.raises(Respond):
        gate.on_request(context)
    context.vars["emergency"] = True
    assert gate.on_request(context) is None


def test_the_stages_sit_first():
    node = emergency_node(cluster={"max_dialogs": 5})
    assert node.pipeline.request[0].name == "emergency"
    assert node.pipeline.targets[0].name == "emergency-routing"


@pytest.mark.parametrize("text,fragment", [
    ('[routing]\nemergency_set = "sos"\n', 'routing.emergency_set: expected the name of a set'),
    ('[routing]\nemergency_numbers = ["112"]\n', "routing.emergency_numbers: needs routing.emergency_set"),
])
def test_emergency_errors_name_the_key(tmp_path, text, fragment):
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(str(path))
    assert fragment in str(e.value)


@pytest.mark.parametrize("stateless", [False, True])
def test_a_service_urn_no_stage_routes_is_still_416(stateless):
    node = Node(stateless=stateless)
    node.send(invite("urn:service:counseling"))
    assert finals(node, node.out()) == [416]


def test_emergency_calls_waiting_for_their_cdr_are_bounded_and_other_methods_not_kept(monkeypatch):
    from sipcluster.routing import emergency
    monkeypatch.setattr(emergency, "REMEMBERED", 2)
    stage = emergency.EmergencyMark(["112"])
    records = []
    for call in ("call-a", "call-b", "call-c"):
        context = RequestContext(parse_message(sos_invite(call=call)), None, None)
        stage.on_request(context)
        assert context.vars[emergency.EMERGENCY]
        records.append({"call_id": context.request.call_id})
    message = parse_message(sos_invite(call="call-m").replace(b"INVITE", b"MESSAGE"))
    context = RequestContext(message, None, None)
    stage.on_request(context)
    assert context.vars[emergency.EMERGENCY] and stage.marked == 4
    records.append({"call_id": message.call_id})
    for record in records:
        stage.mark_cdr(record)
    # The oldest was forgotten (its CDR never came in time), a MESSAGE has none.
    assert [r.get("emergency", False) for r in records] == [False, True, True, False]
