"""The drain gate and the cluster's shared Record-Route name, in-process."""

import pytest

from sipcluster.cluster.drain import DrainGate
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
    g, membership = gate()
    g._set(True)
    assert membership.updates == [{"state": "draining"}]
    with pytest.raises(Respond) as e:
        g(parse_message(INVITE))
    assert e.value.status == 503 and ("Retry-After", "20") in e.value.headers
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
    assert e.value.status == 302
    assert e.value.headers == [("Contact", "<sip:bob@127.0.0.4:5060>")]
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
    assert e.value.status == 503 and limit.refused == 1
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
