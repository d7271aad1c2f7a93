"""
In-process proxy-path benchmark (not a test): the messages of one call
(INVITE, 180, 200, ACK, BYE, 200) through a node built as twistd builds it,
on fake sockets, so the cost of our code is measured without the kernel or
SIPp.  Every call is checked to complete: the INVITE, ACK and BYE are
forwarded and the 180, 200 and 200 relayed (7 messages out with the 100).

    .venv/bin/python bench/proxy_path.py [--mode stateless|stateful] [--calls N] [--profile]
        [--root DIR]

--root runs the sipcluster source tree at DIR instead (an older commit
checked out with git worktree), so two commits are compared in one run.
"""

import argparse
import cProfile
import heapq
import os
import pstats
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if "--root" in sys.argv:
    ROOT = os.path.abspath(sys.argv[sys.argv.index("--root") + 1])
sys.path.insert(0, ROOT)

from twisted.internet.base import DelayedCall  # noqa: E402

from sipcluster import node as node_module  # noqa: E402
from sipcluster.node import tune_gc  # noqa: E402
from sipcluster.sip.message import make_response, parse_message  # noqa: E402
from tests.harness import FakeDatagramTransport, Harness  # noqa: E402

# Calls per second of simulated time: sets how many transactions are alive
# at once (64*T1 = 32 s of each), as at that load on a real node.
RATE = 200
UAC = ("127.0.0.1", 5080)
UAS = ("127.0.0.1", 5070)

INVITE = """\
INVITE sip:service@127.0.0.1:5070 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-{n}-1-0
From: sipp <sip:sipp@127.0.0.1:5080>;tag={n}SIPpTag001
To: service <sip:service@127.0.0.1:5070>
Call-ID: {n}-1@127.0.0.1
CSeq: 1 INVITE
Contact: sip:sipp@127.0.0.1:5080
Max-Forwards: 70
Subject: Performance Test
Content-Type: application/sdp
Content-Length: 129

v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6004 RTP/AVP 0
a=rtpmap:0 PCMU/8000
""".replace("\n", "\r\n")


def build(mode):
    """
    A node on 127.0.0.1:5060 serving example.test, as makeService builds
    it (build_node), or, on a commit from before build_node, its proxy
    wired by hand as that commit's node did.
    """
    h = Harness()
    h.clock = h.layer.reactor = HeapClock()
    if hasattr(node_module, "build_node"):
        from sipcluster import config
        cfg = config.load(None, {"node.mode": mode, "sip.domains": ["example.test"],
                                 "sip.listen": ["udp:127.0.0.1:5060"], "node.id": "bench"})
        reactor = BenchReactor(h.clock)
        node = node_module.build_node(cfg, reactor)
        node.startService()
        h.udp, h.socket = reactor.udp
        return h
    from sipcluster.location.memory import MemoryLocationService
    from sipcluster.proxy.forwarding import Forwarder
    from sipcluster.proxy.stateful import StatefulProxy
    from sipcluster.proxy.stateless import StatelessProxy
    from sipcluster.registrar.registrar import Registrar
    from sipcluster.transaction.layer import TransactionLayer
    from sipcluster.transaction.timers import TimerValues
    location = MemoryLocationService(h.clock)
    forwarder = Forwarder(h.layer, location, ["example.test"])
    if mode == "stateless":
        proxy = StatelessProxy(h.layer, forwarder)
    else:
        timers = TimerValues()
        proxy = StatefulProxy(TransactionLayer(h.layer, h.clock, timers), forwarder, h.clock, timers)
    proxy.local_methods["REGISTER"] = Registrar(location, forwarder, h.clock).handle
    return h


class BenchReactor:
    """What build_node needs of a reactor: the heap clock, and UDP ports on fake sockets."""

    def __init__(self, clock):
        self.clock = clock
        self.udp = None

    def seconds(self):
        return self.clock.seconds()

    def callLater(self, *args, **kw):
        return self.clock.callLater(*args, **kw)

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        sock = FakeDatagramTransport(interface, port)
        protocol.makeConnection(sock)
        self.udp = (protocol, sock)
        return sock


class HeapClock:
    """
    An IReactorTime on a heap, advanced by hand.  task.Clock re-sorts its
    whole list on every callLater, which would dominate a run with
    thousands of live transactions; the reactor uses a heap too.
    """

    def __init__(self):
        self.now = 0.0
        self.heap = []
        self.seq = 0

    def seconds(self):
        return self.now

    def callLater(self, delay, f, *args, **kw):
        call = DelayedCall(self.now + delay, f, args, kw, lambda c: None, self._push,
                           seconds=self.seconds)
        self._push(call)
        return call

    def _push(self, call):
        self.seq += 1
        heapq.heappush(self.heap, (call.time, self.seq, call))

    def advance(self, delta):
        self.now += delta
        heap = self.heap
        while heap and heap[0][0] <= self.now:
            when, _, call = heapq.heappop(heap)
            if call.cancelled or call.called or call.time != when:
                continue  # cancelled, or reset to a later time
            call.called = 1
            call.func(*call.args, **call.kw)


def answer(invite, status, n):
    """The UAS's response: its Record-Route copied from the request (RFC 3261 12.1.1)."""
    response = make_response(invite, status, to_tag="t%d" % n)
    for value in invite.values("record-route"):
        response.add("Record-Route", value)
    return response.to_bytes()


def one_call(h, n):
    udp = h.udp
    written = h.socket.written
    udp.datagramReceived(INVITE.format(n=n).encode(), UAC)
    invite = parse_message(written[-1][0])
    out = len(written)
    del written[:]
    for status in (180, 200):
        udp.datagramReceived(answer(invite, status, n), UAS)
    ok = parse_message(written[-1][0])
    out += len(written)
    del written[:]
    to = ok.header("to")
    route = ok.header("record-route")
    for method, cseq in (("ACK", 1), ("BYE", 2)):
        req = ("{m} sip:service@127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-{n}-{c}\r\n"
               "Route: {r}\r\nFrom: sipp <sip:sipp@127.0.0.1:5080>;tag={n}SIPpTag001\r\nTo: {to}\r\n"
               "Call-ID: {n}-1@127.0.0.1\r\nCSeq: {c} {m}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").format(
                   m=method, n=n, c=cseq + 1, r=route, to=to)
        udp.datagramReceived(req.encode(), UAC)
    bye = parse_message(written[-1][0])
    out += len(written)
    del written[:]
    udp.datagramReceived(make_response(bye, 200).to_bytes(), UAS)
    out += len(written)
    del written[:]
    h.clock.advance(1 / RATE)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="stateless", choices=["stateless", "stateful"])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--root", help="the sipcluster tree to measure (default: this one)")
    args = parser.parse_args()
    h = build(args.mode)
    tune_gc()
    # Stateful: INVITE and its 100, 180, 200, ACK, BYE, 200 = 7 out;
    # stateless sends no 100.
    expected = 7 if args.mode == "stateful" else 6
    for n in range(200):
        out = one_call(h, n)
        if out != expected:
            sys.exit("a call did not complete: %d messages out of %d expected" % (out, expected))
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
    start = time.process_time()
    for n in range(args.calls):
        one_call(h, 1000 + n)
    spent = time.process_time() - start
    if args.profile:
        profiler.disable()
        pstats.Stats(profiler).sort_stats(os.environ.get("SORT", "tottime")).print_stats(int(os.environ.get("TOP", "25")))
    # The harness builds the UAS/UAC side messages too: measure that alone.
    baseline = time.process_time()
    for n in range(args.calls):
        build_only(1000 + n)
    base = time.process_time() - baseline
    print("%s: %.1f us per call through the proxy (6 messages in, %d out; %.1f us of building the "
          "UA side messages already subtracted)" % (
              args.mode, (spent - base) / args.calls * 1e6, expected, base / args.calls * 1e6))


def build_only(n):
    """What one_call spends on the UA side (building and parsing its messages)."""
    invite = parse_message(INVITE.format(n=n).encode())
    for status in (180, 200):
        make_response(invite, status, to_tag="t%d" % n).to_bytes()
    ok = parse_message(make_response(invite, 200, to_tag="t").to_bytes())
    ok.header("to")
    ok.header("record-route")
    for method, cseq in (("ACK", 1), ("BYE", 2)):
        ("%s %d %d" % (method, cseq, n)).encode()
    bye = parse_message(invite.to_bytes())
    make_response(bye, 200).to_bytes()


if __name__ == "__main__":
    main()
