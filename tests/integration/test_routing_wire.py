"""
Routing on the wire: the shipped examples (ops/examples/loadbalancer.toml,
ops/examples/prefix-gateways.toml) started with twistd, their destinations
moved to loopback addresses of the test's own, and bare UDP agents in
threads as the destinations: calls spread round robin, fail over on 503
and on the 2 s branch timeout with one final answer to the caller, a
destination that stops answering is probed down and back up, and ACK,
BYE and CANCEL follow the destination that has the call.
"""

import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

from sipcluster.sip.message import make_response, parse_message
from tests.integration.nodes import ROOT, UDPAgent, next_host

EXAMPLES = os.path.join(ROOT, "ops", "examples")


class Destination(threading.Thread):
    """
    A UDP user agent on host:5060 answering from a thread, by C{mode}:
    "ok" (200), "503", "ring" (180, then 487 when cancelled) or "silent"
    (nothing at all, OPTIONS included).  It records every request.
    """

    def __init__(self, host, lifetime=120):
        threading.Thread.__init__(self, daemon=True)
        self.agent = UDPAgent(host, 5060)
        self.host = host
        self.mode = "ok"
        self.requests = []
        self.stopped = threading.Event()
        self.deadline = time.monotonic() + lifetime
        self.ringing = {}
        self.start()

    def run(self):
        sock = self.agent.sock
        sock.settimeout(0.05)
        while not self.stopped.is_set() and time.monotonic() < self.deadline:
            try:
                data, addr = sock.recvfrom(65535)
            except OSError:
                continue
            try:
                request = parse_message(data)
            except Exception:
                continue
            if not hasattr(request, "method"):
                continue
            self.requests.append((time.monotonic(), request))
            answer = self.answer(request)
            if answer is not None:
                sock.sendto(answer.to_bytes(), addr)
            if request.method == "CANCEL" and request.call_id in self.ringing:
                sock.sendto(make_response(self.ringing.pop(request.call_id), 487,
                                          to_tag="d1").to_bytes(), addr)

    def answer(self, request):
        method, mode = request.method, self.mode
        if mode == "silent" or method == "ACK":
            return None
        if method in ("OPTIONS", "BYE", "CANCEL"):
            return make_response(request, 200, to_tag="d1")
        if mode == "503":
            return make_response(request, 503, to_tag="d1")
        if mode == "ring" and method == "INVITE":
            self.ringing[request.call_id] = request
            return make_response(request, 180, to_tag="d1")
        # RFC 3261 12.1.1: the 2xx copies the Record-Route of the request.
        return make_response(request, 200, to_tag="d1", extra=[
            ("Contact", "<sip:bob@%s:5060>" % self.host)] + [
            ("Record-Route", v) for v in request.values("record-route")])

    def got(self, method):
        """Call-IDs of the C{method}s received, each once."""
        seen = []
        for _, request in self.requests:
            if request.method == method and request.call_id not in seen:
                seen.append(request.call_id)
        return seen

    def close(self):
        self.stopped.set()
        self.join(2)
        self.agent.close()


@pytest.fixture
def destinations():
    started = []

    def make(n):
        for _ in range(n):
            started.append(Destination(next_host()))
        return started
    yield make
    for d in started:
        d.close()


def example(tmp_path, name, hosts):
    """The shipped example C{name} with its destination addresses replaced."""
    with open(os.path.join(EXAMPLES, name)) as f:
        text = f.read()
    for old, new in hosts.items():
        assert old in text
        text = text.replace('"sip:%s:5060"' % old, '"sip:%s:5060"' % new)
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def request(caller, node, method, uri, call_id=None, cseq=1, to_tag=None, extra=""):
    call_id = call_id or uuid.uuid4().hex
    return call_id, ("{m} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {h}:{p};branch=z9hG4bK{b};rport\r\n"
                     "Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=a1\r\n"
                     "To: <{to}>{tt}\r\nCall-ID: {c}\r\nCSeq: {n} {m}\r\n{extra}"
                     "Content-Length: 0\r\n\r\n").format(
        m=method, uri=uri, h=caller.host, p=caller.port, b=uuid.uuid4().hex[:12],
        to="sip:bob@lb.test", tt=";tag=%s" % to_tag if to_tag else "", c=call_id, n=cseq,
        extra=extra).encode()


def finals_of(caller, wait=5.0, linger=0.3, call_id=None):
    """
    The final responses the caller gets (of C{call_id}, when given: an
    earlier call's unacknowledged failure is retransmitted): waits for the
    first, then C{linger} for more.
    """
    out = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        message = caller.recv(deadline - time.monotonic())
        if message is None:
            break
        if message.status >= 200 and call_id in (None, message.call_id):
            out.append(message)
            deadline = min(deadline, time.monotonic() + linger)
    return out


def message(caller, node):
    """Send one MESSAGE for bob@lb.test; (Call-ID, statuses of the finals, seconds)."""
    call_id, data = request(caller, node, "MESSAGE", "sip:bob@lb.test")
    start = time.monotonic()
    caller.send(data, (node.host, 5060))
    finals = finals_of(caller, call_id=call_id)
    return call_id, [m.status for m in finals], time.monotonic() - start


def owner(dests, call_id):
    return [i for i, d in enumerate(dests) if call_id in d.got("MESSAGE")]


def test_check_config_accepts_the_examples_as_shipped():
    env = dict(os.environ, PYTHONPATH=ROOT)
    for name in ("loadbalancer.toml", "prefix-gateways.toml"):
        result = subprocess.run(
            [sys.executable, "-c", "import sys; from sipcluster.cli import main; sys.exit(main())",
             "check-config", os.path.join(EXAMPLES, name)],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().endswith(": OK")


def test_load_balancer_spreads_fails_over_and_probes(net, destinations):
    dests = destinations(3)
    path = example(net.tmp, "loadbalancer.toml", {
        "127.0.0.51": dests[0].host, "127.0.0.52": dests[1].host, "127.0.0.53": dests[2].host})
    node = net.node("--config", path)
    caller = UDPAgent(net.host)
    try:
        # Round robin, every MESSAGE answered once.
        results = [message(caller, node) for _ in range(6)]
        assert [r[1] for r in results] == [[200]] * 6
        assert [owner(dests, r[0]) for r in results] == [[0], [1], [2], [0], [1], [2]]
        assert all(len(d.got("OPTIONS")) >= 1 for d in dests)  # probed

        # The second answers 503: its calls go on to the third; the
        # caller sees only the 200.
        dests[1].mode = "503"
        results = [message(caller, node) for _ in range(3)]
        assert [r[1] for r in results] == [[200]] * 3
        assert [owner(dests, r[0]) for r in results] == [[0], [1, 2], [0]]
        dests[1].mode = "ok"

        # The third stops answering at all: its call fails over on the
        # 2 s branch timeout (not Timer F's 32 s) ...
        dests[2].mode = "silent"
        died = time.monotonic()
        results = [message(caller, node) for _ in range(3)]
        assert [r[1] for r in results] == [[200]] * 3, results
        timed_out = [r for r in results if 2 in owner(dests, r[0])]
        assert len(timed_out) == 1 and 1.8 < timed_out[0][2] < 3.5, results
        # ... and 2 unanswered probes take it out.
        node.wait_log("destination sip:%s:5060 of set lb is down" % dests[2].host, timeout=6)
        down_after = time.monotonic() - died
        assert down_after < 1 * 2 + 1 + 1.5, down_after
        before = len(dests[2].got("MESSAGE"))
        results = [message(caller, node) for _ in range(6)]
        assert [r[1] for r in results] == [[200]] * 6
        assert all(r[2] < 1.0 for r in results)  # no more waiting on the dead one
        assert len(dests[2].got("MESSAGE")) == before

        # Back: one answered probe and it takes its turn again.
        dests[2].mode = "ok"
        node.wait_log("destination sip:%s:5060 of set lb is up" % dests[2].host, timeout=4)
        results = [message(caller, node) for _ in range(3)]
        assert [r[1] for r in results] == [[200]] * 3
        assert any(owner(dests, r[0]) == [2] for r in results)
    finally:
        caller.close()


def test_ack_bye_and_cancel_follow_the_destination_with_the_call(net, destinations):
    dests = destinations(3)
    path = example(net.tmp, "loadbalancer.toml", {
        "127.0.0.51": dests[0].host, "127.0.0.52": dests[1].host, "127.0.0.53": dests[2].host})
    node = net.node("--config", path)
    caller = UDPAgent(net.host)
    try:
        dests[0].mode = "503"  # the INVITE fails over to the second
        call_id, data = request(caller, node, "INVITE", "sip:bob@lb.test")
        caller.send(data, (node.host, 5060))
        (ok,) = [m for m in finals_of(caller)]
        assert ok.status == 200
        assert call_id in dests[0].got("INVITE") and call_id in dests[1].got("INVITE")
        route = "".join("Route: %s\r\n" % v for v in ok.values("record-route"))
        for method, cseq in (("ACK", 1), ("BYE", 2)):
            _, data = request(caller, node, method, "sip:bob@%s:5060" % dests[1].host,
                              call_id=call_id, cseq=cseq, to_tag="d1", extra=route)
            caller.send(data, (node.host, 5060))
        assert [m.status for m in finals_of(caller)] == [200]  # the BYE's
        assert call_id in dests[1].got("ACK") and call_id in dests[1].got("BYE")
        assert call_id not in dests[0].got("BYE") + dests[2].got("BYE")

        # CANCEL reaches the destination that is ringing.
        dests[0].mode = "ok"
        for d in dests:
            d.mode = "ring"
        call_id, data = request(caller, node, "INVITE", "sip:bob@lb.test")
        caller.send(data, (node.host, 5060))
        deadline = time.monotonic() + 3
        ringing = []
        while not ringing and time.monotonic() < deadline:
            ringing = [d for d in dests if call_id in d.got("INVITE")]
            time.sleep(0.05)
        assert len(ringing) == 1
        time.sleep(0.3)
        cancel = data.replace(b"INVITE sip:", b"CANCEL sip:").replace(b"1 INVITE", b"1 CANCEL")
        caller.send(cancel, (node.host, 5060))
        statuses = []
        deadline = time.monotonic() + 3
        while 487 not in statuses and time.monotonic() < deadline:
            m = caller.recv(deadline - time.monotonic())
            if m is None:
                break
            statuses.append(m.status)
        assert 487 in statuses, statuses
        assert call_id in ringing[0].got("CANCEL")
    finally:
        caller.close()


def test_prefix_gateways_example_routes_by_the_longest_prefix(net, destinations):
    dests = destinations(6)
    hosts = ["127.0.0.61", "127.0.0.62", "127.0.0.63", "127.0.0.64", "127.0.0.65", "127.0.0.69"]
    path = example(net.tmp, "prefix-gateways.toml", dict(zip(hosts, [d.host for d in dests])))
    node = net.node("--config", path)
    caller = UDPAgent(net.host)
    try:
        def invite_to(number):
            call_id, data = request(caller, node, "INVITE", "sip:%s@gw.test" % number)
            caller.send(data, (node.host, 5060))
            return call_id, [m.status for m in finals_of(caller, call_id=call_id)]
        london = invite_to("+442071234567")
        uk = invite_to("+441612345678")
        nanp = invite_to("12125550100")
        nowhere = invite_to("331234")
        assert london[1] == uk[1] == nanp[1] == [200]
        assert nowhere[1] == [404]
        assert london[0] in dests[2].got("INVITE")
        assert uk[0] in dests[0].got("INVITE") + dests[1].got("INVITE")
        assert nanp[0] in dests[3].got("INVITE") + dests[4].got("INVITE")
        # Both UK gateways refuse: the standby set takes the call.
        dests[0].mode = dests[1].mode = "503"
        standby = invite_to("+441612345678")
        assert standby[1] == [200] and standby[0] in dests[5].got("INVITE")
    finally:
        caller.close()


def test_sighup_reloads_rules_and_a_faulty_file_keeps_the_old_ones(net, destinations):
    import signal
    (dest,) = destinations(1)
    path = net.tmp / "reload.toml"
    sets = '[routing.sets.lb]\ndestinations = ["sip:%s:5060"]\n' % dest.host
    path.write_text('[[routing.rules]]\ndomain = "lb.test"\nset = "lb"\n' + sets)
    node = net.node("--config", str(path))
    caller = UDPAgent(net.host)
    try:
        call_id, statuses, _ = message(caller, node)
        assert statuses == [200] and call_id in dest.got("MESSAGE")
        path.write_text('[[routing.rules]]\ndomain = "lb.test"\nreject = 403\nreason = "Reloaded"\n'
                        + sets)
        node.process.send_signal(signal.SIGHUP)
        node.wait_log("routing reloaded from %s" % path, timeout=5)
        assert message(caller, node)[1] == [403]
        path.write_text('[[routing.rules]]\ndomain = "lb.test"\nreject = 200\n' + sets)
        node.process.send_signal(signal.SIGHUP)
        node.wait_log("routing reload failed", timeout=5)
        failed = [line for line in node.log(tail=None).splitlines() if "routing reload" in line
                  and "failed" in line]
        assert len(failed) == 1 and str(path) in failed[0] and "routing.rules[0].reject" in failed[0]
        assert message(caller, node)[1] == [403]  # the old (reloaded) rules
        assert node.process.poll() is None
    finally:
        caller.close()


def test_emergency_calls_reach_their_set_on_a_full_node(net, destinations):
    sos, other = destinations(2)
    other.mode = "ring"  # a call that stays in set-up: the node is full
    path = net.tmp / "sos.toml"
    path.write_text('''
[cluster]
max_dialogs = 1
[routing]
emergency_set = "sos"
emergency_numbers = ["112"]
[[routing.rules]]
domain = "lb.test"
next_hop = "sip:%s:5060"
[routing.sets.sos]
destinations = ["sip:%s:5060"]
''' % (other.host, sos.host))
    node = net.node("--config", str(path))
    caller = UDPAgent(net.host)
    try:
        ringing, data = request(caller, node, "INVITE", "sip:bob@lb.test")
        caller.send(data, (node.host, 5060))
        time.sleep(0.5)
        refused, data = request(caller, node, "INVITE", "sip:carol@lb.test")
        caller.send(data, (node.host, 5060))
        assert [m.status for m in finals_of(caller, call_id=refused)] == [503]
        for uri in ("urn:service:sos", "sip:112@lb.test"):
            call_id, data = request(caller, node, "INVITE", uri)
            caller.send(data, (node.host, 5060))
            assert [m.status for m in finals_of(caller, call_id=call_id)] == [200], uri
            assert call_id in sos.got("INVITE")
    finally:
        caller.close()


def test_a_refused_tcp_connection_fails_over_at_once(net, destinations):
    import socket
    (alive,) = destinations(1)
    closed = socket.socket()
    closed.bind((next_host(), 0))  # bound, never listening: connections are refused
    host, port = closed.getsockname()
    path = net.tmp / "tcp.toml"
    path.write_text('''
[[routing.rules]]
domain = "lb.test"
set = "lb"
[routing.sets.lb]
algorithm = "priority"
destinations = ["sip:%s:%d;transport=tcp", "sip:%s:5060"]
''' % (host, port, alive.host))
    node = net.node("--config", str(path))
    caller = UDPAgent(net.host)
    try:
        call_id, statuses, took = message(caller, node)
        assert statuses == [200] and call_id in alive.got("MESSAGE")
        assert took < 1.5  # the transport error, not a timeout
    finally:
        caller.close()
        closed.close()


def test_sighup_reloads_every_worker(net, destinations):
    import signal
    (dest,) = destinations(1)
    path = net.tmp / "workers.toml"
    sets = '[routing.sets.lb]\ndestinations = ["sip:%s:5060"]\n' % dest.host
    path.write_text('[[routing.rules]]\ndomain = "lb.test"\nset = "lb"\n' + sets)
    node = net.node("--config", str(path), "--workers", "2")
    node.wait_log("(stateful) listening on", count=2)
    path.write_text('[[routing.rules]]\ndomain = "lb.test"\nreject = 403\n' + sets)
    node.process.send_signal(signal.SIGHUP)
    node.wait_log("routing reloaded from %s" % path, count=2, timeout=10)
    # One socket per request: SO_REUSEPORT spreads them over both workers.
    statuses = []
    for _ in range(12):
        caller = UDPAgent(net.host)
        statuses += message(caller, node)[1]
        caller.close()
    assert statuses == [403] * 12
    assert node.process.poll() is None
