"""The drain gate and the cluster's shared Record-Route name, in-process."""

import pytest

from sipcluster.cluster.drain import DrainGate, drain_key
from sipcluster.proxy.pipeline import RequestContext, Respond
from sipcluster.routing.cluster import ClusterRouting
from sipcluster.sip.message import parse_message
from tests.harness import Harness
from tests.sipdata import INVITE


class FakeMembership:
    node_id = "a"

    def __init__(self, nodes, region="eu"):
        self.nodes = nodes
        self.record = {"region": region}
        self.updates = []

    def update(self, **changes):
        from twisted.internet import defer
        self.updates.append(changes)
        return defer.succeed(None)


def gate(action="reject", nodes=None):
    membership = FakeMembership(nodes or {})
    g = DrainGate(None, membership, "/sc", "a", action, retry_after=20,
                  redirect_to=ClusterRouting(membership).active_node_uri)
    return StageCaller(g), membership


class StageCaller:
    """Calls a request stage as the pipeline does, with a context for a message."""

    def __init__(self, stage):
        self.stage = stage

    def __call__(self, message):
        return self.stage.on_request(RequestContext(message, None, None))

    def __getattr__(self, name):
        return getattr(self.stage, name)


@pytest.mark.parametrize("action", ["reject", "redirect"])
def test_active_node_lets_everything_through(action):
    nodes = {"b": {"state": "active", "addresses": ["udp:127.0.0.3:5060"]}}
    g, membership = gate(action, nodes)
    # The watch's first listing holds no drain key (another node's is not ours).
    g._resync([("/sc/drain/b", b"", 3)], 3)
    g._events([("put", "/sc/drain/b", b"", 4), ("delete", "/sc/drain/a", b"", 5)])
    requests = [
        INVITE,
        INVITE.replace(b"To: Bob <sip:bob@biloxi.example.com>", b"To: Bob <sip:bob@biloxi.example.com>;tag=x"),
        INVITE.replace(b"INVITE sip:", b"BYE sip:").replace(b"314159 INVITE", b"314160 BYE"),
        INVITE.replace(b"INVITE sip:", b"OPTIONS sip:").replace(b"314159 INVITE", b"314160 OPTIONS"),
    ]
    assert [g(parse_message(data)) for data in requests] == [None] * len(requests)
    assert not g.draining and g.refused == 0
    # Staying active is not news: nothing published.
    assert membership.updates == []


def test_draining_refuses_new_invites_only():
    # An active node to redirect to, but the action is reject.
    g, membership = gate(nodes={"b": {"state": "active", "addresses": ["udp:127.0.0.3:5060"]}})
    g._set(True)
    assert membership.updates == [{"state": "draining"}]
    with pytest.raises(Respond) as e:
        g(parse_message(INVITE))
    assert (e.value.status, e.value.reason, e.value.headers) == (
        503, "Service Unavailable (node draining)", [("Retry-After", "20")])
    with pytest.raises(Respond):
        g(parse_message(INVITE))
    assert g.refused == 2
    in_dialog = parse_message(INVITE.replace(b"To: Bob <sip:bob@biloxi.example.com>",
                                             b"To: Bob <sip:bob@biloxi.example.com>;tag=x"))
    g(in_dialog)  # re-INVITE in a running dialog passes
    bye = parse_message(INVITE.replace(b"INVITE sip:", b"BYE sip:").replace(b"314159 INVITE", b"314160 BYE"))
    g(bye)
    g._set(False)
    g(parse_message(INVITE))
    assert membership.updates[-1] == {"state": "active"}


def test_redirect_to_an_active_node():
    nodes = {"a": {"state": "draining", "addresses": ["udp:127.0.0.2:5060"]},
             "b": {"state": "draining", "addresses": ["udp:127.0.0.3:5060"]},
             "c": {"state": "active", "addresses": ["tcp:127.0.0.4:5060", "udp:127.0.0.4:5060"]}}
    g, _ = gate("redirect", nodes)
    g._set(True)
    with pytest.raises(Respond) as e:
        g(parse_message(INVITE))
    assert (e.value.status, e.value.reason) == (302, "Moved Temporarily (node draining)")
    assert e.value.headers == [("Contact", "<sip:bob@127.0.0.4:5060>")]
    # A Request-URI without user part: the node's own URI.
    with pytest.raises(Respond) as e:
        g(parse_message(INVITE.replace(b"INVITE sip:bob@biloxi.example.com", b"INVITE urn:service:sos")))
    assert e.value.headers == [("Contact", "<sip:127.0.0.4:5060>")]
    del nodes["c"]
    with pytest.raises(Respond) as e:
        g(parse_message(INVITE))
    assert e.value.status == 503  # nowhere to send it


def test_redirect_prefers_our_region_then_the_least_busy_node():
    nodes = {"a": {"state": "draining", "region": "eu", "addresses": ["udp:127.0.0.2:5060"]},
             "b": {"state": "active", "region": "us", "dialogs": 0, "addresses": ["udp:127.0.0.3:5060"]},
             "c": {"state": "active", "region": "eu", "dialogs": 40, "addresses": ["udp:127.0.0.4:5060"]},
             "d": {"state": "active", "region": "eu", "dialogs": 7, "addresses": ["udp:127.0.0.5:5060"]}}
    g, _ = gate("redirect", nodes)
    g._set(True)

    def target():
        with pytest.raises(Respond) as e:
            g(parse_message(INVITE))
        return e.value.headers[0][1]
    assert target() == "<sip:bob@127.0.0.5:5060>"  # eu, 7 dialogs
    nodes["d"]["dialogs"] = 90
    assert target() == "<sip:bob@127.0.0.4:5060>"  # eu, 40
    nodes["c"]["state"] = nodes["d"]["state"] = "draining"
    assert target() == "<sip:bob@127.0.0.3:5060>"  # only another region is left


def test_the_drain_key_of_a_node():
    assert drain_key("/sc", "a") == "/sc/drain/a"
    assert drain_key("/sc/", "a") == "/sc/drain/a"


def test_the_gate_follows_its_drain_key_in_the_store_and_says_so():
    from twisted.internet.task import Clock
    from twisted.logger import capturedLogs, formatEvent
    from sipcluster.cluster.store import MemoryStore
    clock = Clock()
    store = MemoryStore(clock)
    store.put("/scX/drain/a", b"1")  # draining before it starts (sipcluster drain a)
    membership = FakeMembership({})
    g = StageCaller(DrainGate(store, membership, "/scX/", "a", "reject", retry_after=20))
    with capturedLogs() as events:
        g.start()
        assert g.draining
        with pytest.raises(Respond):
            g(parse_message(INVITE))
        store.delete("/scX/drain/a")
        store.put("/scX/drain/b", b"1")  # another node's key
        clock.advance(0)
        assert not g.draining
        g(parse_message(INVITE))
        store.put("/scX/drain/a", b"1")
        clock.advance(0)
        assert g.draining
    assert [formatEvent(e) for e in events if e.get("log_namespace", "").endswith("DrainGate")] == [
        "node a draining: no new dialogs", "node a active again", "node a draining: no new dialogs"]
    assert membership.updates == [{"state": "draining"}, {"state": "active"}, {"state": "draining"}]
    # Stopped, it follows no more (twice is harmless).
    g.stop()
    g.stop()
    store.delete("/scX/drain/a")
    clock.advance(0)
    assert g.draining


def test_a_draining_node_takes_emergency_calls():
    g, _ = gate()
    g._set(True)
    context = RequestContext(parse_message(INVITE), None, None)
    context.vars["emergency"] = True  # marked by sipcluster.routing.emergency
    assert g.stage.on_request(context) is None
    assert g.refused == 0


def test_a_failed_state_update_is_not_an_unhandled_error():
    import gc
    from twisted.internet import defer
    from twisted.logger import capturedLogs

    class Unreachable(FakeMembership):
        def update(self, **changes):
            return defer.fail(RuntimeError("etcd away"))
    g = DrainGate(None, Unreachable({}), "/sc", "a")
    with capturedLogs() as events:
        g._set(True)
        gc.collect()
    assert [e for e in events if e.get("isError") or "log_failure" in e] == []


def test_cluster_name_in_record_route_and_taken_as_ours():
    h = Harness()
    h.layer.set_cluster_name("sip.example.test")
    assert str(h.layer.record_route_uri("udp")) == "sip:sip.example.test;lr"
    assert str(h.layer.record_route_uri("tcp")) == "sip:sip.example.test;transport=tcp;lr"
    assert h.layer.is_local("SIP.example.test", 5060)
    assert not h.layer.is_local("other.example.test", 5060)
    h.layer.set_cluster_name("sip.example.test:5070")
    assert str(h.layer.record_route_uri("udp")) == "sip:sip.example.test:5070;lr"


# -- call admission: DialogLimit ---------------------------------------------------


class FakeStore:
    def __init__(self):
        from twisted.internet import defer
        self.defer = defer
        self.created = []

    def create(self, key, value, lease=None):
        self.created.append(key)
        return self.defer.succeed(True)

    def delete(self, key):
        return self.defer.succeed(True)

    def grant(self, ttl):
        return self.defer.succeed(1)


def _record(owner):
    import json
    return json.dumps({"owner": owner, "call_id": "c", "from_tag": "f", "to_tag": "t"}).encode()


def test_registry_counts_the_dialogs_this_node_owns_as_records_come_and_go():
    from twisted.internet.task import Clock
    from sipcluster.cluster.dialogs import DialogRegistry
    registry = DialogRegistry(FakeStore(), Clock(), "/sc", "b")
    p = "/sc/dialogs/"
    registry._resync([(p + "1", _record("a"), 5), (p + "2", _record("b"), 6)], 6)
    assert registry.owned == 1
    # Node a died and b adopted its dialog: the put with the new owner counts.
    registry._events([("put", p + "1", _record("b"), 7)])
    assert registry.owned == 2
    registry._events([("put", p + "1", _record("b"), 8)])  # a rewrite is not a new dialog
    assert registry.owned == 2
    registry._events([("delete", p + "2", b"", 9), ("delete", p + "3", b"", 9)])
    assert registry.owned == 1
    registry._events([("put", p + "4", _record("c"), 10)])
    assert registry.owned == 1 and registry.count() == 2
    registry._resync([], 11)
    assert registry.owned == 0


def test_registry_counts_its_own_new_dialog_at_once_and_ends_it_on_bye():
    from twisted.internet.task import Clock
    from sipcluster.cluster.dialogs import DialogRegistry
    from sipcluster.sip.message import make_response
    registry = DialogRegistry(FakeStore(), Clock(), "/sc", "b")
    registry.on_end = []
    request = parse_message(INVITE)
    ok = make_response(request, 200, to_tag="callee")
    registry.dialog_confirmed(request, ok)
    assert registry.owned == 1
    # The watch then delivers our own write: still one.
    name = registry.key_of(request.call_id, request.from_tag, "callee")
    registry._events([("put", "/sc/dialogs/" + name, _record("b"), 3)])
    assert registry.owned == 1
    bye = parse_message(INVITE.replace(b"INVITE sip:", b"BYE sip:").replace(b"314159 INVITE", b"314160 BYE")
                        .replace(b"To: Bob <sip:bob@biloxi.example.com>",
                                 b"To: Bob <sip:bob@biloxi.example.com>;tag=callee"))
    registry.dialog_ended(bye, make_response(bye, 200))
    assert registry.owned == 0


class FakeRegistry:
    owned = 0


class FakeProxy:
    def __init__(self):
        self.setups = set()


def test_dialog_limit_counts_owned_dialogs_and_calls_being_set_up():
    from sipcluster.cluster.dialogs import DialogLimit
    registry, proxy = FakeRegistry(), FakeProxy()
    limit = StageCaller(DialogLimit(registry, lambda: len(proxy.setups), 2))
    limit(parse_message(INVITE))
    registry.owned = 1
    proxy.setups.add("tx1")
    with pytest.raises(Respond) as e:
        limit(parse_message(INVITE))
    assert (e.value.status, e.value.reason) == (503, "Service Unavailable (call limit reached)")
    assert limit.refused == 1
    with pytest.raises(Respond):
        limit(parse_message(INVITE))
    assert limit.refused == 2
    # An emergency call is never refused (marked by sipcluster.routing.emergency).
    context = RequestContext(parse_message(INVITE), None, None)
    context.vars["emergency"] = True
    assert limit.stage.on_request(context) is None and limit.refused == 2
    # In-dialog requests and other methods always pass.
    limit(parse_message(INVITE.replace(b"To: Bob <sip:bob@biloxi.example.com>",
                                       b"To: Bob <sip:bob@biloxi.example.com>;tag=x")))
    limit(parse_message(INVITE.replace(b"INVITE sip:", b"BYE sip:").replace(b"314159 INVITE", b"314160 BYE")))
    proxy.setups.clear()
    limit(parse_message(INVITE))


def test_dialog_with_unparsable_from_and_record_route_is_still_recorded_and_accounted():
    # A proxy forwards such headers untouched (RFC 3261 16.3), so the
    # dialog exists and must be counted and end with a CDR (found by
    # tests/test_node_fuzz.py: the record was lost with a logged failure).
    from twisted.internet.task import Clock
    from sipcluster.cluster.dialogs import DialogRegistry
    from sipcluster.cluster.store import MemoryStore
    from sipcluster.sip.message import make_response
    clock = Clock()
    registry = DialogRegistry(MemoryStore(clock), clock, "/sc", "b")
    cdrs = []
    registry.on_end = [cdrs.append]
    request = parse_message(INVITE.replace(b"From: Alice <sip:alice@atlanta.example.com>",
                                           b"From: Alice <sip:@atlanta.example.com>"))
    ok = make_response(request, 200, to_tag="callee",
                       extra=[("Record-Route", "<sip:p1.example.com;lr")])
    registry.dialog_confirmed(request, ok)
    clock.advance(0)
    (record,) = registry.dialogs.values()
    assert record["from"] == "Alice <sip:@atlanta.example.com>;tag=1928301774"
    assert record["route_set"] == ["<sip:p1.example.com;lr"]
    assert registry.owned == 1
    # The callee hangs up: From and To tags swap in its BYE.
    bye = parse_message(INVITE.replace(b"INVITE sip:", b"BYE sip:").replace(b"314159 INVITE", b"1 BYE")
                        .replace(b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
                                 b"From: Bob <sip:bob@biloxi.example.com>;tag=callee")
                        .replace(b"To: Bob <sip:bob@biloxi.example.com>",
                                 b"To: Alice <sip:alice@atlanta.example.com>;tag=1928301774"))
    registry.dialog_ended(bye, make_response(bye, 200))
    assert registry.owned == 0
    assert [(c["ended_by"], c["end_status"], c["state"]) for c in cdrs] == [("callee", 200, "terminated")]


def test_dialogs_whose_bye_never_came_end_as_expired_with_a_cdr():
    from twisted.internet.task import Clock
    from sipcluster.cluster.dialogs import DialogRegistry
    from sipcluster.cluster.store import MemoryStore
    from sipcluster.sip.message import make_response
    clock = Clock()
    clock.advance(1000)
    store = MemoryStore(clock)
    registry = DialogRegistry(store, clock, "/sc", "b", max_duration=100)
    registry.start()
    cdrs = []
    registry.on_end = [cdrs.append]
    request = parse_message(INVITE)
    registry.dialog_confirmed(request, make_response(request, 200, to_tag="callee"))
    store.put("/sc/dialogs/other;x;y", _record("c"))  # another node's: not ours to end
    clock.advance(99)
    assert registry.expire() == 0
    clock.advance(1)
    assert registry.expire() == 1
    (cdr,) = cdrs
    assert (cdr["state"], cdr["duration"], cdr["end_status"], cdr["ended_by"]) == ("expired", 100, None, None)
    assert registry.owned == 0
    items, _ = store.get_prefix("/sc/dialogs/").result
    assert [key for key, _, _ in items] == ["/sc/dialogs/other;x;y"]


# -- the dialog registry on the memory store ---------------------------------------

CALL = "a84b4c76e66710@pc33.atlanta.example.com"


def _bye(from_tag_side="caller"):
    data = INVITE.replace(b"INVITE sip:", b"BYE sip:").replace(b"314159 INVITE", b"314160 BYE")
    if from_tag_side == "caller":
        return parse_message(data.replace(b"To: Bob <sip:bob@biloxi.example.com>",
                                          b"To: Bob <sip:bob@biloxi.example.com>;tag=callee"))
    return parse_message(data.replace(b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774",
                                      b"From: Bob <sip:bob@biloxi.example.com>;tag=callee")
                         .replace(b"To: Bob <sip:bob@biloxi.example.com>",
                                  b"To: Alice <sip:alice@atlanta.example.com>;tag=1928301774"))


class Dialogs:
    """Two nodes' registries, b and c, on one memory store, at t=1000 on a Clock."""

    def __init__(self, **kwargs):
        from twisted.internet.task import Clock
        from sipcluster.cluster.dialogs import DialogRegistry
        from sipcluster.cluster.store import MemoryStore
        self.clock = Clock()
        self.clock.advance(1000)
        self.store = MemoryStore(self.clock)
        kwargs.setdefault("max_duration", 100)
        self.b = DialogRegistry(self.store, self.clock, "/scX/", "b", **kwargs)
        self.c = DialogRegistry(self.store, self.clock, "/scX/", "c", **kwargs)
        self.cdrs = []
        for registry in (self.b, self.c):
            registry.start()
            registry.on_end.append(self.cdrs.append)

    def confirm(self, registry=None, data=INVITE, record_route=("<sip:p1.example.com;lr>",)):
        from sipcluster.sip.message import make_response
        request = parse_message(data)
        ok = make_response(request, 200, to_tag="callee",
                           extra=[("Record-Route", value) for value in record_route])
        return (registry or self.b).dialog_confirmed(request, ok)

    def stored(self):
        import json
        items, _ = self.store.get_prefix("/scX/dialogs/").result
        return {key[len("/scX/dialogs/"):]: json.loads(value) for key, value, _ in items}


def test_a_confirmed_dialog_is_recorded_for_the_cluster_under_a_lease():
    d = Dialogs(max_duration=400)
    d.confirm()
    name = CALL + ";1928301774;callee"
    assert d.stored() == {name: {
        "call_id": CALL, "from_tag": "1928301774", "to_tag": "callee",
        "from": "sip:alice@atlanta.example.com", "to": "sip:bob@biloxi.example.com",
        "owner": "b", "started": 1000, "state": "confirmed", "route_set": ["<sip:p1.example.com;lr>"]}}
    d.clock.advance(0)
    # Every node sees it; b owns it.
    assert (d.b.count(), d.b.count("b"), d.b.count("c"), d.c.count(), d.c.count("b"), d.c.owned) == (1, 1, 0, 1, 1, 0)
    # Its lease: the bucket (600 s) of its longest life (1000 + 400), and 60 s more.
    d.clock.advance(859.9)
    assert list(d.stored()) == [name]
    d.clock.advance(0.1)
    assert d.stored() == {} and d.b.count() == 0


def test_a_dialog_without_from_tag_is_keyed_with_an_empty_one():
    d = Dialogs()
    d.confirm(data=INVITE.replace(b";tag=1928301774", b""))
    assert list(d.stored()) == [CALL + ";;callee"]


def test_a_2xx_without_to_tag_is_keyed_with_an_empty_one():
    from sipcluster.sip.message import make_response
    d = Dialogs()
    request = parse_message(INVITE)
    d.b.dialog_confirmed(request, make_response(request, 200))  # a broken UAS: forwarded all the same
    assert list(d.stored()) == [CALL + ";1928301774;"]


def test_an_unparsable_to_is_recorded_as_it_came():
    d = Dialogs()
    d.confirm(data=INVITE.replace(b"To: Bob <sip:bob@biloxi.example.com>", b"To: Bob <sip:@biloxi.example.com>"))
    (record,) = d.stored().values()
    assert record["to"].startswith("Bob <sip:@biloxi.example.com>")


def test_a_node_started_later_ends_a_dialog_it_listed_with_a_clean_cdr():
    from sipcluster.cluster.dialogs import DialogRegistry
    from sipcluster.sip.message import make_response
    d = Dialogs()
    d.confirm()
    late = DialogRegistry(d.store, d.clock, "/scX/", "e", max_duration=100)
    late.start()  # lists it
    late.on_end = [d.cdrs.append]
    bye = _bye()
    late.dialog_ended(bye, make_response(bye, 200))
    (cdr,) = d.cdrs
    assert "_mod" not in cdr and "XX_modXX" not in cdr and "_MOD" not in cdr
    assert sorted(cdr) == sorted(["call_id", "from_tag", "to_tag", "from", "to", "owner", "started", "state",
                                  "route_set", "ended", "ended_by_node", "end_status", "duration", "ended_by"])


def test_bye_ends_the_dialog_with_a_cdr_on_any_node():
    import json
    from twisted.logger import capturedLogs, formatEvent
    from sipcluster.sip.message import make_response
    d = Dialogs()
    d.confirm()
    d.clock.advance(0)
    d.clock.advance(12.34567)
    bye = _bye("callee")
    with capturedLogs() as events:
        d.c.dialog_ended(bye, make_response(bye, 200))  # through the other node
    cdr = {
        "call_id": CALL, "from_tag": "1928301774", "to_tag": "callee",
        "from": "sip:alice@atlanta.example.com", "to": "sip:bob@biloxi.example.com",
        "owner": "b", "started": 1000, "state": "terminated", "route_set": ["<sip:p1.example.com;lr>"],
        "ended": 1012.34567, "ended_by_node": "c", "end_status": 200, "duration": 12.346, "ended_by": "callee"}
    assert d.cdrs == [cdr]
    # The CDR log: one JSON object a line.
    (line,) = [formatEvent(e) for e in events if e.get("log_namespace") == "sipcluster.cdr"]
    assert json.loads(line) == cdr and list(json.loads(line)) == sorted(cdr)
    assert d.stored() == {}
    d.clock.advance(0)
    assert d.b.count() == 0
    # A BYE for no known dialog ends nothing.
    d.b.dialog_ended(bye, make_response(bye, 200))
    assert len(d.cdrs) == 1


def test_the_caller_hanging_up_is_ended_by_caller():
    from sipcluster.sip.message import make_response
    d = Dialogs()
    d.confirm()
    bye = _bye("caller")
    d.b.dialog_ended(bye, make_response(bye, 200))
    assert [(c["ended_by"], c["state"]) for c in d.cdrs] == [("caller", "terminated")]


def test_store_failures_are_logged_not_raised():
    from twisted.internet import defer
    from twisted.logger import capturedLogs, formatEvent
    from sipcluster.cluster.store import StoreUnavailable
    from sipcluster.sip.message import make_response
    d = Dialogs()
    d.store.create = lambda key, value, lease=None: defer.fail(StoreUnavailable("etcd away"))
    d.store.delete = lambda key: defer.fail(StoreUnavailable("etcd away"))
    name = CALL + ";1928301774;callee"
    with capturedLogs() as events:
        d.confirm()
        bye = _bye()
        d.b.dialog_ended(bye, make_response(bye, 200))
    assert [formatEvent(e) for e in events if e.get("log_namespace", "").endswith("DialogRegistry")] == [
        "cannot record dialog %s in etcd: etcd away" % name, "cannot delete dialog %s in etcd: etcd away" % name]
    assert len(d.cdrs) == 1  # accounted all the same


def test_a_failing_end_hook_is_logged_and_the_others_still_run():
    from twisted.logger import capturedLogs, formatEvent
    from sipcluster.sip.message import make_response
    d = Dialogs()

    def broken(record):
        raise RuntimeError("disk full")
    d.b.on_end.insert(1, broken)
    d.confirm()
    bye = _bye()
    with capturedLogs() as events:
        d.b.dialog_ended(bye, make_response(bye, 200))
    (failure,) = [e for e in events if "log_failure" in e]
    assert formatEvent(failure) == "dialog end hook failed" and failure["log_failure"].check(RuntimeError)
    assert len(d.cdrs) == 1


def test_expired_dialogs_are_logged_and_a_record_without_start_is_old():
    import json
    from twisted.logger import capturedLogs, formatEvent
    d = Dialogs()
    d.confirm()
    d.store.put("/scX/dialogs/x;y;z", json.dumps({"owner": "b", "call_id": "x"}).encode())
    d.clock.advance(0)
    with capturedLogs() as events:
        assert d.b.expire() == 1  # the one without a start time
        d.clock.advance(100)
        assert d.b.expire() == 1
        assert d.b.expire() == 0
    assert [formatEvent(e) for e in events if e.get("log_namespace", "").endswith("DialogRegistry")] == [
        "1 dialogs ended without a BYE after 100s", "1 dialogs ended without a BYE after 100s"]
    assert [(c["call_id"], c["state"], c.get("duration")) for c in d.cdrs] == [("x", "expired", 0), (CALL, "expired", 100)]
    assert "_mod" not in d.cdrs[0] and "_mod" not in d.cdrs[1]


def test_failed_call_attempts_are_accounted_when_asked():
    from sipcluster.sip.message import make_response
    d = Dialogs(account_failed=True)
    request = parse_message(INVITE)
    d.clock.advance(2.34567)
    d.b.call_failed(request, make_response(request, 486, to_tag="busy"), 1000)
    assert d.cdrs == [{
        "call_id": CALL, "from_tag": "1928301774", "to_tag": "busy",
        "from": "sip:alice@atlanta.example.com", "to": "sip:bob@biloxi.example.com", "owner": "b",
        "started": 1000, "ended": 1002.34567, "duration": 0, "state": "failed", "end_status": 486,
        "ended_by_node": "b", "setup_s": 2.346}]
    assert d.stored() == {}  # nothing to record: there is no dialog
    quiet = Dialogs()
    quiet.b.call_failed(request, make_response(request, 486, to_tag="busy"), 1000)
    assert quiet.cdrs == []


class LeaderMembership:
    def __init__(self, node_id, leader, nodes):
        self.node_id, self.is_leader, self.nodes = node_id, leader, nodes


def test_the_leader_adopts_the_dialogs_of_a_node_that_leaves():
    d = Dialogs()
    d.confirm(registry=d.c)
    d.clock.advance(0)
    # b is not the leader: c leaving is not its business.
    d.b.membership_event(LeaderMembership("b", False, {"b": {}}))("leave", "c", {})
    assert d.stored()[CALL + ";1928301774;callee"]["owner"] == "c"
    # Another node becoming leader is not either.
    d.b.membership_event(LeaderMembership("b", False, {"b": {}}))("leader", "x", None)
    d.b.membership_event(LeaderMembership("b", True, {"b": {}}))("join", "x", {})
    assert d.stored()[CALL + ";1928301774;callee"]["owner"] == "c"
    # The leader adopts.
    d.b.membership_event(LeaderMembership("b", True, {"b": {}}))("leave", "c", {})
    record = d.stored()[CALL + ";1928301774;callee"]
    assert (record["owner"], record["adopted_from"], record["adopted_at"]) == ("b", "c", 1000)
    assert d.b.adopted == 1


def test_a_node_becoming_leader_adopts_the_orphans():
    d = Dialogs()
    d.confirm(registry=d.c)
    d.b.membership_event(LeaderMembership("b", True, {"b": {}, "c": {}}))("leader", "b", None)
    assert d.stored()[CALL + ";1928301774;callee"]["owner"] == "c"  # c is alive
    d.b.membership_event(LeaderMembership("b", True, {"b": {}}))("leader", "b", None)
    assert d.stored()[CALL + ";1928301774;callee"]["owner"] == "b"


def test_a_failed_adoption_is_logged():
    from twisted.internet import defer
    from twisted.logger import capturedLogs, formatEvent
    from sipcluster.cluster.store import StoreUnavailable
    d = Dialogs()
    d.store.get_prefix = lambda prefix: defer.fail(StoreUnavailable("etcd away"))
    with capturedLogs() as events:
        d.b.membership_event(LeaderMembership("b", True, {"b": {}}))("leave", "c", {})
    assert [formatEvent(e) for e in events if e.get("log_namespace", "").endswith("DialogRegistry")] == [
        "cannot adopt dialog orphans in etcd: etcd away"]
