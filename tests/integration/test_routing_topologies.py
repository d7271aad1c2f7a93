"""
Proxy hierarchies and meshes of separate twistd nodes on loopback, each a
proxy of its own routing by rules: an edge proxy forwarding by domain to a
core proxy that delivers to registered users; a mesh of three where the
death of one reroutes calls through another by destination-set failover;
Max-Forwards and loop detection across proxies (RFC 3261 16.3 steps 3-4).
"""

import time
import uuid

import pytest

from tests.integration.nodes import NodeProcess, UDPAgent, next_host
from tests.integration.test_routing_wire import destinations, finals_of  # noqa: F401 (fixture)


@pytest.fixture
def proxies(tmp_path):
    """start(name, toml): a node on a loopback address of its own, stopped at the end."""
    started = []

    def start(name, toml, host=None):
        host = host or next_host()
        path = tmp_path / ("%s.toml" % name)
        path.write_text(toml.replace("SELF", host))
        node = NodeProcess(host, 5060, ["--config", str(path), "--node-id", name], tmp_path)
        started.append(node)
        return node
    yield start
    for node in reversed(started):
        node.stop()


def request(caller, method, uri, call_id=None, mf=70, extra="", to_tag=None, cseq=1):
    call_id = call_id or uuid.uuid4().hex
    return call_id, ("{m} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {h}:{p};branch=z9hG4bK{b};rport\r\n"
                     "Max-Forwards: {mf}\r\nFrom: <sip:carol@edge.test>;tag=c1\r\n"
                     "To: <{uri}>{tt}\r\nCall-ID: {c}\r\nCSeq: {n} {m}\r\n{extra}"
                     "Content-Length: 0\r\n\r\n").format(
        m=method, uri=uri, h=caller.host, p=caller.port, b=uuid.uuid4().hex[:12], mf=mf,
        tt=";tag=%s" % to_tag if to_tag else "", c=call_id, n=cseq, extra=extra).encode()


def test_edge_forwards_by_domain_to_a_core_that_delivers_to_registered_users(proxies,
                                                                             destinations):
    (phone,) = destinations(1)
    core = proxies("core", '[sip]\ndomains = ["core.test"]\n')
    edge = proxies("edge", '[[routing.rules]]\ndomain = "core.test"\nnext_hop = "sip:%s:5060"\n'
                   % core.host)
    register = UDPAgent(phone.host)  # the phone's registration, from its host
    _, data = request(register, "REGISTER", "sip:core.test", extra=(
        "Contact: <sip:alice@%s:5060>\r\n" % phone.host))
    data = data.replace(b"To: <sip:core.test>", b"To: <sip:alice@core.test>")
    register.send(data, (core.host, 5060))
    assert [m.status for m in finals_of(register)] == [200]
    register.close()
    caller = UDPAgent(next_host())
    try:
        call_id, data = request(caller, "INVITE", "sip:alice@core.test")
        caller.send(data, (edge.host, 5060))
        (ok,) = finals_of(caller)
        assert ok.status == 200
        ((_, delivered),) = [(t, r) for t, r in phone.requests if r.method == "INVITE"][:1]
        assert str(delivered.uri) == "sip:alice@%s:5060" % phone.host
        # Both proxies are in the path: two Record-Route, two Via of theirs.
        assert [r.uri.host for r in ok.record_routes] == [core.host, edge.host]
        assert delivered.max_forwards == 68
        route = "".join("Route: %s\r\n" % v for v in ok.values("record-route"))
        _, bye = request(caller, "BYE", "sip:bob@%s:5060" % phone.host, call_id=call_id,
                         extra=route, to_tag="d1", cseq=2)
        caller.send(bye, (edge.host, 5060))
        assert [m.status for m in finals_of(caller)] == [200]
        assert call_id in phone.got("BYE")
    finally:
        caller.close()


def test_a_mesh_reroutes_through_another_proxy_when_one_dies(proxies, destinations):
    (callee,) = destinations(1)
    core = '[[routing.rules]]\ndomain = "mesh.test"\nnext_hop = "sip:%s:5060"\n' % callee.host
    b = proxies("b", core)
    c = proxies("c", core)
    a = proxies("a", '''
[[routing.rules]]
domain = "mesh.test"
set = "cores"
[routing.sets.cores]
destinations = ["sip:%s:5060", "sip:%s:5060"]
branch_timeout_s = 1
probe_interval_s = 1
''' % (b.host, c.host))
    caller = UDPAgent(next_host())

    def call():
        call_id, data = request(caller, "MESSAGE", "sip:bob@mesh.test")
        start = time.monotonic()
        caller.send(data, (a.host, 5060))
        return [m.status for m in finals_of(caller, call_id=call_id)], time.monotonic() - start

    try:
        assert [call()[0] for _ in range(4)] == [[200]] * 4
        b.stop()  # B dies
        results = [call() for _ in range(6)]
        assert [r[0] for r in results] == [[200]] * 6, results
        # At most the calls sent to B before it was marked down waited for
        # the branch timeout; none was lost.
        assert sum(1 for r in results if r[1] > 0.9) <= 2, results
        a.wait_log("destination sip:%s:5060 of set cores is down" % b.host, timeout=5)
        assert all(call()[1] < 0.9 for _ in range(3))
    finally:
        caller.close()


def test_max_forwards_and_loops_across_proxies(proxies):
    # Two proxies each sending loop.test to the other: a loop.
    hx, hy = next_host(), next_host()
    rule = '[[routing.rules]]\ndomain = "loop.test"\nnext_hop = "sip:%s:5060"\n'
    x = proxies("x", rule % hy, host=hx)
    proxies("y", rule % hx, host=hy)
    caller = UDPAgent(next_host())
    try:
        # RFC 3261 16.3 step 4: x sees its own Via on the request, unchanged: 482.
        call_id, data = request(caller, "INVITE", "sip:bob@loop.test")
        caller.send(data, (x.host, 5060))
        assert [m.status for m in finals_of(caller, call_id=call_id)] == [482]
        # Step 3: the hop that would forward with Max-Forwards 0 answers 483.
        call_id, data = request(caller, "INVITE", "sip:bob@loop.test", mf=1)
        caller.send(data, (x.host, 5060))
        assert [m.status for m in finals_of(caller, call_id=call_id)] == [483]
    finally:
        caller.close()
