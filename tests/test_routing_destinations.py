"""
Destination sets (sipcluster.routing.destinations) and their health probes
(sipcluster.routing.probes): the algorithms, serial failover on statuses,
transport errors and the per-set branch timeout, CANCEL, ACK and in-dialog
requests through a set, call counts, and OPTIONS probes with their
thresholds, on a whole node in memory with a clock.
"""

import collections

import pytest

from sipcluster import config
from sipcluster.config import ConfigError
from sipcluster.routing.destinations import parse_sets
from sipcluster.sip.message import parse_message
from tests.test_proxy import UAC, Node, invite, reply

D1, D2, D3 = ("127.0.0.1", 5071), ("127.0.0.1", 5072), ("127.0.0.1", 5073)
URIS = ["sip:127.0.0.1:5071", "sip:127.0.0.1:5072", "sip:127.0.0.1:5073"]


def lb(**set_keys):
    dset = {"destinations": URIS}
    dset.update(set_keys)
    return Node(settings={"routing": {
        "rules": [{"domain": "lb.test", "set": "lb"}], "sets": {"lb": dset}}})


def call(node, n, method="INVITE"):
    data = invite("sip:bob@lb.test", method=method, branch="z9hG4bKc%d" % n)
    node.send(data.replace(b"call-1@example.test", b"call-%d@example.test" % n))


def where(node, out, method="INVITE"):
    """[(destination address, request)] of the C{method}s in C{out}."""
    return [(a, m) for m, a in out if getattr(m, "method", None) == method]


def addrs(node, out, method="INVITE"):
    """The destinations C{method}s went to, each once, in order (retransmissions aside)."""
    seen = []
    for a, _ in where(node, out, method):
        if a not in seen:
            seen.append(a)
    return seen


def finals(node, out):
    return [m.status for m in node.to(UAC, out) if m.status >= 200]


# -- choosing ---------------------------------------------------------------------

def request_for(user="bob", call_id="c1"):
    return parse_message(invite("sip:%s@lb.test" % user).replace(
        b"call-1@example.test", call_id.encode()))


def test_round_robin_spreads_and_skips_a_down_destination():
    node = lb()
    for n in range(6):
        call(node, n)
    assert [a for a, _ in where(node, node.out())] == [D1, D2, D3, D1, D2, D3]
    node.h.node.destinations["lb"].destinations[1].up = False
    for n in range(6, 10):
        call(node, n)
    assert [a for a, _ in where(node, node.out())] == [D1, D3, D1, D3]


def test_the_request_uri_is_kept_and_the_branch_goes_to_the_destination():
    node = lb()
    call(node, 1)
    ((addr, fwd),) = where(node, node.out())
    assert addr == D1 and str(fwd.uri) == "sip:bob@lb.test"
    assert not fwd.has("route")


def test_smooth_weighted_has_no_bursts():
    (dset,) = parse_sets({"w": {"algorithm": "weighted", "destinations": [
        {"uri": URIS[0], "weight": 5}, {"uri": URIS[1]}, {"uri": URIS[2]}]}}).values()
    picks = [dset.select(request_for()).uri.port for _ in range(7)]
    assert picks == [5071, 5071, 5072, 5071, 5073, 5071, 5071]


def test_hash_is_consistent_and_a_dead_destination_moves_only_its_share():
    (dset,) = parse_sets({"h": {"algorithm": "hash", "hash": "call-id",
                                "destinations": URIS}}).values()
    requests = [request_for(call_id="call-%d" % i) for i in range(600)]
    before = [dset.select(r) for r in requests]
    assert [dset.select(r) for r in requests] == before
    shares = collections.Counter(d.uri.port for d in before)
    assert all(150 < n < 250 for n in shares.values()), shares
    dset.destinations[0].up = False
    after = [dset.select(r) for r in requests]
    moved = [(b, a) for b, a in zip(before, after) if a is not b]
    assert moved and all(b is dset.destinations[0] for b, _ in moved)


@pytest.mark.parametrize("key,same,different", [
    ("from-user", dict(call_id="x1"), dict(call_id="x2")),
    ("ruri-user", dict(user="bob", call_id="a"), dict(user="bob", call_id="b")),
])
def test_hash_keys(key, same, different):
    (dset,) = parse_sets({"h": {"algorithm": "hash", "hash": key,
                                "destinations": URIS}}).values()
    assert dset.select(request_for(**same)) is dset.select(request_for(**different))


def test_priority_uses_standbys_only_when_the_active_ones_are_down():
    (dset,) = parse_sets({"p": {"algorithm": "priority", "destinations": [
        {"uri": URIS[0], "priority": 1}, URIS[1], {"uri": URIS[2], "priority": 1}]}}).values()
    assert dset.select(request_for()).uri.port == 5072
    dset.destinations[1].up = False
    assert dset.select(request_for()).uri.port == 5071


def test_least_loaded_and_max_load_follow_the_calls_of_this_node():
    node = lb(algorithm="least_loaded", destinations=[URIS[0], {"uri": URIS[1], "max_load": 1}])
    dset = node.h.node.destinations["lb"]
    call(node, 1)
    call(node, 2)
    call(node, 3)
    sent = where(node, node.out())
    # 1 -> D1, 2 -> D2 (D1 has one), 3 -> D1 (D2 is full at max_load 1).
    assert [a for a, _ in sent] == [D1, D2, D1]
    assert [d.active for d in dset.destinations] == [2, 1]
    # The call on D2 fails: its count ends; D1's first is answered, then hung up.
    node.send(reply(sent[1][1], 486), D2)
    node.send(reply(sent[0][1], 200), D1)
    node.out()
    assert [d.active for d in dset.destinations] == [2, 0]
    bye = invite("sip:bob@127.0.0.1:5071", method="BYE", branch="z9hG4bKbye1").replace(
        b"To: Bob <sip:bob@example.test>", b"To: Bob <sip:bob@example.test>;tag=b1").replace(
        b"call-1@example.test", b"call-1@example.test").replace(b"CSeq: 1 BYE", b"CSeq: 2 BYE")
    node.send(bye)
    (fwd_bye,) = [m for a, m in where(node, node.out(), "BYE")]
    node.send(reply(fwd_bye, 200), D1)
    node.out()
    assert [d.active for d in dset.destinations] == [1, 0]


def test_no_available_destination_is_503_or_the_fallback_set():
    node = Node(settings={"routing": {"rules": [{"domain": "lb.test", "set": "a"}], "sets": {
        "a": {"destinations": [URIS[0]], "fallback": "b"}, "b": {"destinations": [URIS[2]]}}}})
    sets = node.h.node.destinations
    sets["a"].destinations[0].up = False
    call(node, 1)
    assert [a for a, _ in where(node, node.out())] == [D3]
    sets["b"].destinations[0].up = False
    call(node, 2)
    assert finals(node, node.out()) == [503]


# -- failover -----------------------------------------------------------------------

def test_a_failover_status_tries_the_next_destination_and_the_caller_hears_one_answer():
    node = lb()
    call(node, 1)
    ((_, first),) = where(node, node.out())
    node.send(reply(first, 503), D1)
    out = node.out()
    assert finals(node, out) == []
    ((addr, second),) = where(node, out)
    assert addr == D2 and str(second.uri) == "sip:bob@lb.test"
    node.send(reply(second, 180), D2)
    node.send(reply(second, 200), D2)
    assert [m.status for m in node.to(UAC, node.out())] == [180, 200]


def test_a_callee_answer_is_not_failed_over():
    node = lb()
    call(node, 1)
    ((_, first),) = where(node, node.out())
    node.send(reply(first, 486), D1)
    out = node.out()
    assert where(node, out) == [] and finals(node, out) == [486]


def test_failover_stops_at_max_attempts_with_the_best_answer():
    node = lb(max_attempts=2, failover_statuses=[503, 502])
    call(node, 1)
    ((_, first),) = where(node, node.out())
    node.send(reply(first, 502), D1)
    ((_, second),) = where(node, node.out())
    node.send(reply(second, 503), D2)
    out = node.out()
    assert where(node, out) == []
    # RFC 3261 16.7 step 6: 502 is the best; 503 never goes upstream.
    assert finals(node, out) == [502]


def test_the_branch_timeout_fails_over_long_before_timer_b():
    node = lb(branch_timeout_s=2)
    call(node, 1)
    assert [a for a, _ in where(node, node.out())] == [D1]
    node.h.advance(1.9)
    assert addrs(node, node.out()) == [D1]  # retransmissions, no failover yet
    node.h.advance(0.2)
    out = node.out()
    assert addrs(node, out) == [D2] and finals(node, out) == []
    node.h.advance(2.1)
    assert addrs(node, node.out()) == [D2, D3]
    node.h.advance(2.1)
    out = node.out()
    # Every destination timed out: one final answer, 408.
    assert finals(node, out) == [408]
    node.h.advance(40)
    # (The 408 retransmitted until the caller's ACK, RFC 3261 17.2.1; nothing else.)
    assert set(finals(node, node.out())) == {408}


def test_a_provisional_stops_the_branch_timeout():
    node = lb(branch_timeout_s=2)
    call(node, 1)
    ((_, first),) = where(node, node.out())
    node.send(reply(first, 100), D1)
    node.h.advance(5)
    out = node.out()
    assert [a for a, _ in where(node, out)] == [] and finals(node, out) == []
    node.send(reply(first, 200), D1)
    assert finals(node, node.out()) == [200]


def test_a_final_stops_the_branch_timeout_and_timer_c_on_the_heap():
    """A branch's own timeout and Timer C are timers of the transactions'
    heap: armed when the branch starts, gone from it when its final
    response comes (not left to fire on a finished branch)."""
    node = lb(branch_timeout_s=2)
    start = node.h.clock.seconds()
    call(node, 1)
    ((_, first),) = where(node, node.out())
    deadlines = node.tl.timer_heap.scheduled()
    assert start + 2 in deadlines and start + 180 in deadlines
    node.send(reply(first, 200), D1)
    assert finals(node, node.out()) == [200]
    deadlines = node.tl.timer_heap.scheduled()
    assert start + 2 not in deadlines and start + 180 not in deadlines


def test_a_late_provisional_of_a_timed_out_invite_branch_is_cancelled():
    node = lb(branch_timeout_s=1)
    call(node, 1)
    ((_, first),) = where(node, node.out())
    node.h.advance(1.1)
    node.out()
    node.send(reply(first, 180), D1)
    out = node.out()
    # RFC 3261 9.1: the CANCEL goes once a provisional came; the caller
    # never sees the dead branch's 180.
    assert [a for a, _ in where(node, out, "CANCEL")] == [D1]
    assert [m.status for m in node.to(UAC, out)] == []


def test_non_invite_requests_fail_over_on_the_branch_timeout():
    node = lb(branch_timeout_s=1)
    call(node, 1, method="MESSAGE")
    assert [a for a, _ in where(node, node.out(), "MESSAGE")] == [D1]
    node.h.advance(1.1)
    out = node.out()
    assert addrs(node, out, "MESSAGE") == [D1, D2]  # D1's retransmission, then D2
    ((addr, second),) = [(a, m) for a, m in where(node, out, "MESSAGE") if a == D2]
    node.send(reply(second, 200), D2)
    assert finals(node, node.out()) == [200]


def test_cancel_reaches_the_branch_of_the_current_destination():
    node = lb(branch_timeout_s=2)
    call(node, 1)
    ((_, first),) = where(node, node.out())
    node.send(reply(first, 503), D1)
    ((_, second),) = where(node, node.out())
    node.send(reply(second, 180), D2)
    node.out()
    cancel = invite("sip:bob@lb.test", method="CANCEL", branch="z9hG4bKc1")
    node.send(cancel)
    out = node.out()
    assert [a for a, _ in where(node, out, "CANCEL")] == [D2]
    node.send(reply(second, 487), D2)
    assert finals(node, node.out()) == [487]


def test_ack_and_in_dialog_requests_follow_the_destination_that_answered():
    node = lb()
    call(node, 1)
    ((_, first),) = where(node, node.out())
    node.send(reply(first, 503), D1)
    ((_, second),) = where(node, node.out())
    ok = reply(second, 200, extra=[("Contact", "<sip:bob@127.0.0.1:5072>")])
    node.send(ok, D2)
    assert [m.status for m in node.to(UAC, node.out())] == [200]
    route = second.record_routes[0]
    for method, cseq in (("ACK", 1), ("BYE", 2)):
        data = invite("sip:bob@127.0.0.1:5072", method=method, branch="z9hG4bKd%d" % cseq,
                      extra="Route: <%s>\n" % route.uri).replace(
            b"To: Bob <sip:bob@example.test>", b"To: Bob <sip:bob@example.test>;tag=b1").replace(
            b"CSeq: 1 %s" % method.encode(), b"CSeq: %d %s" % (cseq, method.encode()))
        node.send(data)
        assert [a for a, _ in where(node, node.out(), method)] == [D2], method


def test_a_transport_error_fails_over_and_marks_the_destination():
    node = lb(probe_interval_s=10)
    dset = node.h.node.destinations["lb"]
    node.h.node.transport.udp[0].transport.write = _refuse_to(D1, node.h.node.transport.udp[0].transport.write)
    call(node, 1)
    out = node.out()
    assert [a for a, _ in where(node, out)] == [D2]
    assert dset.destinations[0].failures == 1 and dset.destinations[0].up


def _refuse_to(addr, write):
    def refusing(data, to):
        if to == addr:
            raise OSError("refused")
        return write(data, to)
    return refusing


def test_live_timeouts_mark_a_destination_down_only_with_probes():
    node = lb(branch_timeout_s=1, probe_interval_s=30, probe_timeout_s=1)
    dset = node.h.node.destinations["lb"]
    _answer_probes(node)
    for n in range(2):
        call(node, 10 + n)
        node.h.advance(1.1)
        for addr, m in where(node, node.out()):
            if addr != D1:
                node.send(reply(m, 200), addr)
        call(node, 12 + n)  # round robin moves on: give D1 its turn again
        for addr, m in where(node, node.out()):
            node.send(reply(m, 200), addr)
        call(node, 14 + n)
        for addr, m in where(node, node.out()):
            node.send(reply(m, 200), addr)
        node.out()
    assert not dset.destinations[0].up
    plain = lb(branch_timeout_s=1)
    for n in range(3):
        call(plain, n)
        plain.h.advance(3.5)
        plain.out()
    assert all(d.up for d in plain.h.node.destinations["lb"].destinations)


def _answer_probes(node):
    for m, addr in node.out():
        if getattr(m, "method", None) == "OPTIONS":
            node.send(reply(m, 200), addr)


# -- probes ---------------------------------------------------------------------------

def probes_of(out):
    return [(a, m) for m, a in out if getattr(m, "method", None) == "OPTIONS"]


def test_probes_mark_down_after_failures_and_up_after_successes():
    node = lb(probe_interval_s=1, probe_timeout_s=0.5, probe_failures=2, probe_successes=1)
    dset = node.h.node.destinations["lb"]
    d1 = dset.destinations[0]

    node.h.clock.advance(0)

    def round_(answer_d1, status=200):
        sent = probes_of(node.out())
        assert sorted(a for a, _ in sent) == [D1, D2, D3]
        for addr, m in sent:
            assert str(m.uri) == "sip:%s:%d" % addr and m.max_forwards == 70
            if addr != D1 or answer_d1:
                node.send(reply(m, status if addr == D1 else 200), addr)
        node.h.advance(1.0001)

    round_(False)  # at start: the first round goes at once
    assert d1.up and d1.failures == 1 and d1.last_probe[1] is None
    round_(False)
    assert not d1.up
    call(node, 1)
    call(node, 2)
    assert [a for a, _ in where(node, node.h.sent(clear=False))] == [D2, D3]
    round_(True)
    assert d1.up and d1.last_probe[1] == 200
    round_(True, status=503)
    round_(True, status=500)
    assert not d1.up  # 5xx is not alive by default


def test_a_probe_counts_only_the_configured_alive_statuses():
    (dset,) = parse_sets({"s": {"destinations": URIS, "probe_interval_s": 1,
                                "probe_alive": ["200", "404"]}}).values()
    assert dset.alive_status(200) and dset.alive_status(404)
    assert not dset.alive_status(202) and not dset.alive_status(403)


def test_probing_stops_with_the_node():
    node = lb(probe_interval_s=1)
    node.out()
    node.h.stop()
    node.h.advance(5)
    assert probes_of(node.out()) == []


# -- configuration of sets ----------------------------------------------------------------

@pytest.mark.parametrize("text,fragment", [
    ('[routing.sets.gw]\ndestinations = []\n', "routing.sets.gw.destinations: expected at least one"),
    ('[routing.sets.gw]\ndestinations = ["tel:+1"]\n', "routing.sets.gw.destinations[0].uri: expected a sip:"),
    ('[routing.sets.gw]\ndestinations = [{uri = "sip:a", weight = 0}]\n',
     "routing.sets.gw.destinations[0].weight: expected an integer of at least 1"),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nalgorithm = "random"\n', "routing.sets.gw.algorithm: expected one of"),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nhash = "via"\n', "routing.sets.gw.hash"),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nfailover_statuses = [200]\n', "routing.sets.gw.failover_statuses"),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nprobe_alive = ["2x"]\n', "routing.sets.gw.probe_alive"),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nprobe_interval_s = 1\nprobe_timeout_s = 2\n',
     "routing.sets.gw.probe_timeout_s: expected at most probe_interval_s"),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nfallback = "gw"\n', "routing.sets.gw.fallback: fallback sets loop"),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nfallback = "x"\n', "routing.sets.gw.fallback: expected the name"),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nbranch_timeout = 2\n', "routing.sets.gw.branch_timeout: unknown key"),
    ('[node]\nmode = "stateless"\n[routing.sets.gw]\ndestinations = ["sip:a"]\nprobe_interval_s = 1\n',
     'routing.sets.gw.probe_interval_s: needs node.mode = "stateful"'),
])
def test_set_errors_name_file_and_key(tmp_path, text, fragment):
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(str(path))
    assert str(e.value).startswith(str(path) + ": ") and fragment in str(e.value), str(e.value)


def test_a_probe_timeout_equal_to_the_interval_still_counts_every_round():
    # The loadbalancer example: interval 1 s, timeout 1 s (the default).
    node = lb(probe_interval_s=1, probe_failures=2)
    d1 = node.h.node.destinations["lb"].destinations[0]
    node.h.clock.advance(0)
    for _ in range(2):
        node.h.clock.advance(1.0)
    assert not d1.up and d1.failures == 2


def test_check_config_json_shows_rules_and_sets(tmp_path, capsys):
    from sipcluster import cli
    path = tmp_path / "lb.toml"
    path.write_text('[[routing.rules]]\ndomain = "lb.test"\nset = "lb"\n'
                    '[routing.sets.lb]\ndestinations = ["sip:127.0.0.51:5060"]\n')
    assert cli.main(["check-config", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"set": "lb"' in out and '"uri": "sip:127.0.0.51:5060"' in out


def test_least_loaded_and_max_load_count_the_calls_other_nodes_published():
    import json

    from twisted.internet.task import Clock

    from sipcluster.cluster.store import MemoryStore
    from sipcluster.routing.destinations import ClusterLoads, PublishedView
    clock = Clock()
    store = MemoryStore(clock)
    loads = ClusterLoads(store, "/sc", "node-a")
    loads.start()
    sets = parse_sets({"lb": {"algorithm": "least_loaded", "destinations": [
        URIS[0], {"uri": URIS[1], "max_load": 3}]}})
    dset = sets["lb"]
    dset.loads = loads

    def published(node, active):
        record = {"node": node, "sets": [{"name": "lb", "destinations": [
            {"uri": uri, "active": n} for uri, n in zip(URIS, active)]}]}
        store.put("/sc/destinations/" + node, json.dumps(record).encode())
        clock.advance(0)

    published("node-b", [5, 1])
    published("node-a", [0, 50])  # our own record: we count our calls live
    assert dset.select(request_for()).uri.port == 5072
    dset.destinations[1].active = 2  # 2 here + 1 on node-b = max_load 3
    assert dset.select(request_for()).uri.port == 5071
    store.delete("/sc/destinations/node-b")  # node-b left (its lease ended)
    clock.advance(0)
    dset.destinations[1].active = 0
    # 0 and 0: round the set.
    assert {dset.select(request_for()).uri.port for _ in range(2)} == {5071, 5072}

    class Member:
        lease = None
    member = Member()
    view = PublishedView(store, member, "/sc", "node-c", sets, clock)
    assert view.publish() is None  # not a member yet
    store.grant(10).addCallback(lambda lease: setattr(member, "lease", lease))
    view.publish()
    clock.advance(0)
    assert loads.remote("lb", URIS[1]) == 0 and "node-c" in loads.others


def test_calls_whose_bye_never_came_are_forgotten_after_the_longest_call():
    node = lb(algorithm="least_loaded")
    dset = node.h.node.destinations["lb"]
    call(node, 1)
    ((_, fwd),) = where(node, node.out())
    node.send(reply(fwd, 200), D1)
    node.out()
    assert dset.destinations[0].active == 1
    node.h.clock.advance(14400 + 61)  # cluster.dialog_max_s, then a sweep
    assert dset.destinations[0].active == 0


def weighted_hash_set(key="call-id"):
    (dset,) = parse_sets({"h": {"algorithm": "hash", "hash": key, "destinations": [
        URIS[0], {"uri": URIS[1], "weight": 2}, {"uri": URIS[2], "weight": 3}]}}).values()
    return dset


def test_hash_choices_are_the_same_on_every_node_and_version():
    # Every node of a cluster (and the next release) must send a call to
    # the same destination: these choices are the contract, not a detail.
    dset = weighted_hash_set()
    chosen = [dset.select(request_for(call_id="call-%d" % i)).uri.port - 5070 for i in range(24)]
    assert chosen == [3, 3, 3, 3, 3, 2, 1, 2, 2, 3, 1, 3, 3, 3, 1, 3, 3, 2, 1, 3, 3, 1, 2, 3]


def test_hash_shares_follow_the_weights():
    dset = weighted_hash_set()
    shares = collections.Counter(dset.select(request_for(call_id="k%d" % i)).uri.port
                                 for i in range(3000))
    # 1:2:3 of 3000, within a few percent.
    assert 420 < shares[5071] < 580 and 900 < shares[5072] < 1100 and 1380 < shares[5073] < 1620


@pytest.mark.parametrize("key,header", [("from-user", b"From"), ("to-user", b"To")])
def test_hash_by_a_header_user_ignores_the_rest(key, header):
    dset = weighted_hash_set(key)
    name = header + b": "

    def request(user, ruri_user, call_id):
        data = invite("sip:%s@lb.test" % ruri_user).replace(
            b"call-1@example.test", call_id.encode())
        lines = [line for line in data.split(b"\r\n")]
        for i, line in enumerate(lines):
            if line.startswith(name):
                lines[i] = name + b"<sip:%s@example.test>;tag=t" % user.encode()
        return parse_message(b"\r\n".join(lines))

    for n in range(12):
        user = "user%d" % n
        assert len({dset.select(request(user, "r%d" % i, "c%d-%d" % (n, i))).uri.port
                    for i in range(6)}) == 1
    assert len({dset.select(request("user%d" % n, "r", "c")).uri.port for n in range(12)}) > 1


def test_hash_by_call_id_ignores_the_users():
    dset = weighted_hash_set("call-id")
    for n in range(12):
        assert len({dset.select(request_for(user="u%d" % i, call_id="call-%d" % n)).uri.port
                    for i in range(6)}) == 1


def test_a_callees_bye_ends_the_count_too():
    node = lb(algorithm="least_loaded")
    dset = node.h.node.destinations["lb"]
    call(node, 1)
    ((_, fwd),) = where(node, node.out())
    node.send(reply(fwd, 200), D1)
    node.out()
    assert [d.active for d in dset.destinations] == [1, 0, 0]
    # The callee hangs up: From and To the other way round.
    bye = invite("sip:alice@127.0.0.1:5080", method="BYE", branch="z9hG4bKbye2").replace(
        b"From: Alice <sip:alice@example.test>;tag=a1", b"From: Bob <sip:bob@lb.test>;tag=b1").replace(
        b"To: Bob <sip:bob@example.test>", b"To: Alice <sip:alice@example.test>;tag=a1").replace(
        b"call-1@example.test", b"call-1@example.test").replace(b"CSeq: 1 BYE", b"CSeq: 9 BYE")
    node.send(bye, D1)
    (fwd_bye,) = [m for a, m in where(node, node.out(), "BYE")]
    node.send(reply(fwd_bye, 200), UAC)
    node.out()
    assert [d.active for d in dset.destinations] == [0, 0, 0]


def test_a_failed_over_call_counts_at_its_new_destination_only():
    node = lb(algorithm="least_loaded")
    dset = node.h.node.destinations["lb"]
    call(node, 1)
    ((_, first),) = where(node, node.out())
    node.send(reply(first, 503), D1)
    ((addr, second),) = where(node, node.out())
    assert addr == D2
    assert [d.active for d in dset.destinations] == [0, 1, 0]


def test_calls_are_kept_until_the_longest_call_has_passed():
    node = lb(algorithm="least_loaded")
    dset = node.h.node.destinations["lb"]
    call(node, 1)
    ((_, fwd),) = where(node, node.out())
    node.send(reply(fwd, 200), D1)
    node.out()
    node.h.clock.advance(14400 - 61)
    assert dset.destinations[0].active == 1


def test_a_probe_is_an_options_request_of_its_own():
    # RFC 3261 11: an OPTIONS out of any dialog, a fresh transaction per
    # probe, from the node (node.id) to the destination.
    node = Node(settings={"node": {"id": "edge-7"}, "routing": {
        "rules": [{"domain": "lb.test", "set": "lb"}],
        "sets": {"lb": {"destinations": URIS[:2], "probe_interval_s": 1}}}})
    node.h.clock.advance(0)
    first = probes_of(node.out())
    node.h.advance(1.0001)
    second = probes_of(node.out())
    assert sorted(a for a, _ in first) == [D1, D2]
    probes = [m for _, m in first + second]
    for m in probes:
        assert m.method == "OPTIONS" and m.max_forwards == 70 and m.cseq.number == 1
        assert m.cseq.method == "OPTIONS" and m.to_tag is None
        assert str(m.from_.uri) == "sip:probe@edge-7" and len(m.from_tag) == 10
        assert str(m.to.uri) == str(m.uri)
        assert m.top_via.branch.startswith("z9hG4bK") and len(m.top_via.branch) == 27
        assert m.top_via.host == "127.0.0.1" and m.top_via.port == 5060
        assert m.body == b"" and m.header("content-length") == "0"
        assert sorted({name.lower() for name, _ in m.items()}) == [
            "call-id", "content-length", "cseq", "from", "max-forwards", "to", "via"]
    # Two rounds to two destinations: four probes (and retransmissions of
    # the unanswered ones, RFC 3261 17.1.2.2), each with its own Call-ID,
    # tag and branch.
    for key in (lambda m: m.call_id, lambda m: m.from_tag, lambda m: m.top_via.branch):
        assert len({key(m) for m in probes}) == 4


# Each set error, whole: the line the operator reads (after the file name).
SET_ERRORS = [
    ('[routing.sets.gw]\ndestinations = []\n',
     'routing.sets.gw.destinations: expected at least one destination'),
    ('[routing.sets.gw]\ndestinations = "sip:a"\n',
     'routing.sets.gw.destinations: expected at least one destination'),
    ('[routing.sets.gw]\ndestinations = ["mailto:a"]\n',
     'routing.sets.gw.destinations[0].uri: expected a sip: or sips: URI, got "mailto:a"'),
    ('[routing.sets.gw]\ndestinations = ["sip:a b"]\n',
     'routing.sets.gw.destinations[0].uri: expected a sip: or sips: URI, got "sip:a b"'),
    ('[routing.sets.gw]\ndestinations = [5]\n',
     'routing.sets.gw.destinations[0]: expected a URI or a table with uri (and weight, priority, max_load), got 5'),
    ('[routing.sets.gw]\ndestinations = [{uri = "sip:a", weight = 0}]\n',
     'routing.sets.gw.destinations[0].weight: expected an integer of at least 1, got 0'),
    ('[routing.sets.gw]\ndestinations = [{uri = "sip:a", weight = "x"}]\n',
     'routing.sets.gw.destinations[0].weight: expected an integer of at least 1, got "x"'),
    ('[routing.sets.gw]\ndestinations = [{uri = "sip:a", priority = -1}]\n',
     'routing.sets.gw.destinations[0].priority: expected an integer of at least 0, got -1'),
    ('[routing.sets.gw]\ndestinations = [{uri = "sip:a", max_load = -1}]\n',
     'routing.sets.gw.destinations[0].max_load: expected an integer of at least 0, got -1'),
    ('[routing.sets.gw]\ndestinations = [{uri = "sip:a", bogus = 1}]\n',
     'routing.sets.gw.destinations[0].bogus: unknown key (known: uri, weight, priority, max_load)'),
    ('[routing.sets.gw]\ndestinations = [{weight = 1}]\n',
     "routing.sets.gw.destinations[0]: expected a URI or a table with uri (and weight, priority, max_load), got {'weight': 1}"),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nalgorithm = "random"\n',
     'routing.sets.gw.algorithm: expected one of round_robin, weighted, hash, least_loaded, priority, got "random"'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nalgorithm = "hash"\nhash = "via"\n',
     'routing.sets.gw.hash: expected one of call-id, from-user, to-user, ruri-user, got "via"'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nfailover_statuses = [200]\n',
     'routing.sets.gw.failover_statuses: expected a list of statuses from 300 to 699, got [200]'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nfailover_statuses = "503"\n',
     'routing.sets.gw.failover_statuses: expected a list of statuses from 300 to 699, got "503"'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nmax_attempts = 0\n',
     'routing.sets.gw.max_attempts: expected an integer of at least 1, got 0'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nbranch_timeout_s = "x"\n',
     'routing.sets.gw.branch_timeout_s: expected a number of at least 0, got "x"'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nprobe_interval_s = -1\n',
     'routing.sets.gw.probe_interval_s: expected a number of at least 0, got -1'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nprobe_interval_s = 1\nprobe_timeout_s = 2\n',
     'routing.sets.gw.probe_timeout_s: expected at most probe_interval_s (1), got 2'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nprobe_interval_s = 1\nprobe_failures = 0\n',
     'routing.sets.gw.probe_failures: expected an integer of at least 1, got 0'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nprobe_interval_s = 1\nprobe_successes = 0\n',
     'routing.sets.gw.probe_successes: expected an integer of at least 1, got 0'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nprobe_alive = [99]\n',
     'routing.sets.gw.probe_alive: expected a list of statuses or classes like "2xx", "404", got [99]'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nfallback = "nope"\n',
     'routing.sets.gw.fallback: expected the name of a set of routing.sets, got "nope"'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nfallback = "gw"\n',
     'routing.sets.gw.fallback: fallback sets loop back to "gw"'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nbogus = 1\n',
     'routing.sets.gw.bogus: unknown key (known: destinations, algorithm, hash, failover_statuses, max_attempts, branch_timeout_s, probe_interval_s, probe_timeout_s, probe_failures, probe_successes, probe_alive, passive, fallback)'),
    ('[routing]\nsets = 5\n',
     'routing.sets: expected a table, got 5'),
    ('[routing.sets]\ngw = 5\n',
     'routing.sets.gw: expected a table [routing.sets.gw]'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nmax_attempts = "x"\n',
     'routing.sets.gw.max_attempts: expected an integer of at least 1, got "x"'),
]


@pytest.mark.parametrize("text,message", SET_ERRORS)
def test_each_set_error_in_full(tmp_path, text, message):
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(str(path))
    assert str(e.value) == "%s: %s" % (path, message)


def test_set_values_are_read_as_written(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text('''
[routing.sets.gw]
destinations = ["sip:127.0.0.1:5071", {uri = "sip:127.0.0.1:5072", weight = 3, priority = 2, max_load = 7}]
algorithm = "hash"
hash = "to-user"
failover_statuses = [408, 503]
max_attempts = 2
branch_timeout_s = 1.5
probe_interval_s = 4
probe_timeout_s = 3
probe_failures = 5
probe_successes = 6
probe_alive = ["2xx", "404"]
passive = false
fallback = "other"
[routing.sets.other]
destinations = ["sip:127.0.0.1:5073"]
''')
    sets = config.load(str(path)).routing.sets
    gw = sets["gw"]
    assert [(str(d.uri), d.weight, d.priority, d.max_load) for d in gw.destinations] == [
        ("sip:127.0.0.1:5071", 1, 0, 0), ("sip:127.0.0.1:5072", 3, 2, 7)]
    assert (gw.name, gw.algorithm, gw.hash_key, sorted(gw.failover_statuses), gw.max_attempts,
            gw.branch_timeout, gw.probe_interval, gw.probe_timeout, gw.probe_failures,
            gw.probe_successes, gw.fallback) == (
        "gw", "hash", "to-user", [408, 503], 2, 1.5, 4, 3, 5, 6, "other")
    assert gw.alive_status(204) and gw.alive_status(404) and not gw.alive_status(403)
    other = sets["other"]
    assert (other.algorithm, other.hash_key, other.max_attempts, other.branch_timeout,
            other.probe_interval, other.fallback) == ("round_robin", "call-id", 1, None, 0, None)


def test_the_published_view_is_what_other_nodes_and_the_cli_read():
    import json

    from twisted.internet.task import Clock

    from sipcluster.cluster.store import MemoryStore
    from sipcluster.routing.destinations import ClusterLoads, PublishedView
    clock = Clock()
    clock.advance(12.5)
    store = MemoryStore(clock)
    sets = parse_sets({"lb": {"algorithm": "least_loaded", "destinations": [
        URIS[0], {"uri": URIS[1], "weight": 2, "priority": 1}]}})
    d1, d2 = sets["lb"].destinations
    d1.active, d2.up, d2.last_probe = 4, False, (11.0, 503)

    class Member:
        lease = None
    member = Member()
    store.grant(10).addCallback(lambda lease: setattr(member, "lease", lease))
    view = PublishedView(store, member, "/sc", "node-c", sets, clock)
    view.publish()
    view.publish()
    clock.advance(0)
    assert view.published == 2
    got = []
    store.get("/sc/destinations/node-c").addCallback(got.append)
    clock.advance(0)
    value = got[0][0] if isinstance(got[0], tuple) else got[0]
    assert json.loads(value) == {"node": "node-c", "time": 12.5, "sets": [
        {"name": "lb", "algorithm": "least_loaded", "destinations": [
            {"uri": URIS[0], "state": "up", "active": 4, "weight": 1, "priority": 0,
             "last_probe": None},
            {"uri": URIS[1], "state": "down", "active": 0, "weight": 2, "priority": 1,
             "last_probe": [11.0, 503]}]}]}
    # Another node reads its calls from it (a destination without "active"
    # counts none; a record it cannot read counts nothing of that node).
    loads = ClusterLoads(store, "/sc", "node-a")
    store.put("/sc/destinations/node-d", json.dumps({"sets": [{"name": "lb", "destinations": [
        {"uri": URIS[0]}, {"uri": URIS[1], "active": 2}]}]}).encode())
    store.put("/sc/destinations/node-e", b"not json")
    clock.advance(0)
    loads.start()
    clock.advance(0)
    assert loads.remote("lb", URIS[0]) == 4 and loads.remote("lb", URIS[1]) == 2
    assert sorted(loads.others) == ["node-c", "node-d"]
    store.put("/sc/destinations/node-d", b"{}")
    clock.advance(0)
    assert loads.remote("lb", URIS[1]) == 0 and sorted(loads.others) == ["node-c"]
    # The view lives under the node's lease: it goes when the lease does.
    store.revoke(member.lease)
    clock.advance(0)
    gone = []
    store.get("/sc/destinations/node-c").addCallback(gone.append)
    clock.advance(0)
    assert gone == [None]


def test_health_needs_consecutive_failures_and_successes():
    (dset,) = parse_sets({"s": {"destinations": URIS[:1], "probe_interval_s": 1,
                                "probe_failures": 2, "probe_successes": 2}}).values()
    (d,) = dset.destinations
    d.failed()
    d.answered(True)
    d.failed()
    assert d.up  # never two failures in a row
    d.failed()
    assert not d.up
    d.answered(True)
    d.failed()
    d.answered(True)
    assert not d.up  # never two successes in a row
    d.answered(True)
    assert d.up
    d.answered(False)  # a dead status counts as a failure
    d.answered(False)
    assert not d.up


def test_no_destination_left_names_the_set():
    node = Node(settings={"routing": {"rules": [{"domain": "lb.test", "set": "a"}], "sets": {
        "a": {"destinations": [URIS[0]]}}}})
    node.h.node.destinations["a"].destinations[0].up = False
    call(node, 1)
    (final,) = [m for m in node.to(UAC, node.out()) if m.status >= 200]
    assert (final.status, final.reason) == (503, "Service Unavailable (no destination of set a)")


MORE_SET_ERRORS = [
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nfailover_statuses = [700]\n',
     'routing.sets.gw.failover_statuses: expected a list of statuses from 300 to 699, got [700]'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nfailover_statuses = [true]\n',
     'routing.sets.gw.failover_statuses: expected a list of statuses from 300 to 699, got [True]'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nprobe_alive = ["7xx"]\n',
     'routing.sets.gw.probe_alive: expected a list of statuses or classes like "2xx", "404", got [\'7xx\']'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nprobe_alive = []\n',
     'routing.sets.gw.probe_alive: expected a list of statuses or classes like "2xx", "404", got []'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nprobe_alive = "2xx"\n',
     'routing.sets.gw.probe_alive: expected a list of statuses or classes like "2xx", "404", got "2xx"'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\npassive = "x"\n',
     'routing.sets.gw.passive: expected true or false'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nfallback = 5\n',
     'routing.sets.gw.fallback: expected the name of a set'),
    ('[routing.sets.a]\ndestinations = ["sip:a"]\nfallback = "b"\n'
     '[routing.sets.b]\ndestinations = ["sip:b"]\nfallback = "a"\n',
     'routing.sets.a.fallback: fallback sets loop back to "a"'),
    ('[routing.sets.gw]\ndestinations = [{uri = 5}]\n',
     'routing.sets.gw.destinations[0].uri: expected a sip: or sips: URI, got 5'),
    ('[routing.sets.gw]\ndestinations = ["sip:a"]\nmax_attempts = 1.5\n',
     'routing.sets.gw.max_attempts: expected an integer of at least 1, got 1.5'),
]


@pytest.mark.parametrize("text,message", MORE_SET_ERRORS)
def test_more_set_errors_in_full(tmp_path, text, message):
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(str(path))
    assert str(e.value) == "%s: %s" % (path, message)


def test_set_bounds_and_defaults(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text('''
[routing.sets.gw]
destinations = ["sip:127.0.0.1:5071"]
failover_statuses = [300, 699]
branch_timeout_s = 1.5
probe_interval_s = 0.5
passive = false
''')
    gw = config.load(str(path)).routing.sets["gw"]
    assert sorted(gw.failover_statuses) == [300, 699] and gw.branch_timeout == 1.5
    assert (gw.probe_timeout, gw.probe_failures, gw.probe_successes, gw.passive) == (0.5, 2, 1, False)
    path.write_text('[routing.sets.gw]\ndestinations = ["sip:127.0.0.1:5071"]\nprobe_interval_s = 5\n')
    gw = config.load(str(path)).routing.sets["gw"]
    assert (gw.probe_timeout, gw.passive) == (1.0, True)


def test_smooth_weighted_gives_nginxs_sequence():
    (dset,) = parse_sets({"w": {"algorithm": "weighted", "destinations": [
        {"uri": URIS[0], "weight": 5}, URIS[1], URIS[2]]}}).values()
    chosen = [dset.select(request_for()).uri.port - 5070 for _ in range(14)]
    assert chosen == [1, 1, 2, 1, 3, 1, 1] * 2


def test_least_loaded_counts_calls_per_unit_of_weight():
    (dset,) = parse_sets({"l": {"algorithm": "least_loaded", "destinations": [
        URIS[0], {"uri": URIS[1], "weight": 3}]}}).values()
    d1, d2 = dset.destinations
    d1.active, d2.active = 1, 2  # 1 per unit against 2/3
    assert dset.select(request_for()) is d2


def test_hash_by_request_uri_user_spreads_users():
    dset = weighted_hash_set("ruri-user")
    ports = {dset.select(request_for(user="u%d" % n, call_id="c")).uri.port for n in range(12)}
    assert len(ports) > 1


def test_hash_keys_with_undecodable_bytes_still_choose():
    dset = weighted_hash_set("call-id")
    request = parse_message(invite("sip:bob@lb.test").replace(b"call-1@example.test", b"c\xff@x"))
    assert dset.select(request) in dset.destinations


def test_a_set_whose_destinations_all_failed_falls_back_to_its_fallback_set():
    node = Node(settings={"routing": {"rules": [{"domain": "lb.test", "set": "a"}], "sets": {
        "a": {"destinations": [URIS[0]], "fallback": "b"}, "b": {"destinations": [URIS[2]]}}}})
    call(node, 1)
    ((addr, first),) = where(node, node.out())
    assert addr == D1
    node.send(reply(first, 503), D1)
    assert [a for a, _ in where(node, node.out())] == [D3]


def test_a_spent_set_whose_fallback_set_is_down_too_answers_with_what_it_heard():
    node = Node(settings={"routing": {"rules": [{"domain": "lb.test", "set": "a"}], "sets": {
        "a": {"destinations": [URIS[0]], "fallback": "b"}, "b": {"destinations": [URIS[2]]}}}})
    node.h.node.destinations["b"].destinations[0].up = False
    call(node, 1)
    ((addr, first),) = where(node, node.out())
    assert addr == D1
    from twisted.logger import globalLogPublisher
    failures = []
    observer = lambda event: failures.append(event) if "log_failure" in event else None  # noqa: E731
    globalLogPublisher.addObserver(observer)
    try:
        node.send(reply(first, 503), D1)
    finally:
        globalLogPublisher.removeObserver(observer)
    out = node.out()
    # No new branch, no traceback in the log: the caller hears what D1 said.
    assert where(node, out) == [] and finals(node, out) == [500]
    assert failures == []


def test_failover_never_tries_the_same_destination_twice():
    node = lb(algorithm="hash")
    call(node, 1)
    ((addr1, first),) = where(node, node.out())
    node.send(reply(first, 503), addr1)
    ((addr2, second),) = where(node, node.out())
    node.send(reply(second, 503), addr2)
    ((addr3, third),) = where(node, node.out())
    assert len({addr1, addr2, addr3}) == 3
