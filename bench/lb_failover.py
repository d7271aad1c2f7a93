"""
Destination death under load (not a test): a twistd node running
ops/examples/loadbalancer.toml (its destinations moved to loopback
addresses of this run) in front of three UDP agents, a caller sending
MESSAGEs at a steady rate; at --kill-at seconds one destination stops
answering anything (a dead host: no response, no ICMP).  Reports the time
from its death to the last request sent to it, how many requests went to
it meanwhile, how many the caller lost (no 200), and the slowest answers.

    .venv/bin/python bench/lb_failover.py [--rate 50] [--seconds 10] [--kill-at 3]

Goal (issue #9): probe interval x failures + 1 s = 3 s, zero lost.
"""

import argparse
import os
import socket
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sipcluster.sip.message import parse_message  # noqa: E402
from tests.integration.nodes import NodeProcess  # noqa: E402
from tests.integration.test_routing_wire import Destination  # noqa: E402

BASE = "127.0.9.%d"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--kill-at", type=float, default=3)
    parser.add_argument("--no-passive", action="store_true",
                        help="passive = false: only probes mark it down")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="lb_failover")
    dests = [Destination(BASE % (111 + i), lifetime=args.seconds + 60) for i in range(3)]
    with open(os.path.join(ROOT, "ops", "examples", "loadbalancer.toml")) as f:
        text = f.read()
    for i, d in enumerate(dests):
        text = text.replace("127.0.0.5%d" % (i + 1), d.host)
    if args.no_passive:
        text += "passive = false\n"
    path = os.path.join(tmp, "lb.toml")
    with open(path, "w") as f:
        f.write(text)
    host = BASE % 110
    node = NodeProcess(host, 5060, ["--config", path], tmp)
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind((host, 0))
    caller.setblocking(False)
    chost, cport = caller.getsockname()
    sent, answers = {}, {}
    try:
        time.sleep(1.5)  # a probe round answered
        start = time.monotonic()
        killed = None
        n = 0
        interval = 1.0 / args.rate
        end = start + args.seconds
        while True:
            now = time.monotonic()
            if killed is None and now - start >= args.kill_at:
                dests[2].mode = "silent"
                killed = now
            if now >= end:
                break
            if now >= start + n * interval:
                call_id = uuid.uuid4().hex
                data = ("MESSAGE sip:bob@lb.test SIP/2.0\r\n"
                        "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK%s;rport\r\nMax-Forwards: 70\r\n"
                        "From: <sip:alice@example.test>;tag=a%d\r\nTo: <sip:bob@lb.test>\r\n"
                        "Call-ID: %s\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n" % (
                            chost, cport, call_id[:12], n, call_id)).encode()
                caller.sendto(data, (host, 5060))
                sent[call_id] = time.monotonic()
                n += 1
            _drain(caller, answers)
            time.sleep(min(interval / 4, 0.002))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(answers) < len(sent):
            _drain(caller, answers)
            time.sleep(0.01)
    finally:
        caller.close()
        node.stop()
        for d in dests:
            d.close()
    dead = dests[2]
    # Each request once (the node retransmits over UDP, RFC 3261 17.1.2.2).
    after = {r.call_id for t, r in dead.requests
             if r.method == "MESSAGE" and t >= killed and r.call_id in sent}
    last = max((sent[c] for c in after), default=killed)
    lost = [c for c in sent if answers.get(c, (None,))[0] != 200]
    latencies = sorted(answers[c][1] - sent[c] for c in sent if c in answers)
    down = [line for line in node.log(tail=None).splitlines()
            if "of set lb is down" in line]
    print("requests sent: %d at %.0f/s over %.0f s; destination 3 silent from %.1f s%s"
          % (len(sent), args.rate, args.seconds, args.kill_at,
             " (passive marking off)" if args.no_passive else ""))
    print("requests sent to it after its death: %d; the last %.2f s after it"
          % (len(after), last - killed))
    print("node log: %s" % (down[0].split("] ", 1)[-1] if down else "never marked down"))
    print("lost (no 200 for the caller): %d" % len(lost))
    if latencies:
        print("answer time: median %.1f ms, 99th %.0f ms, max %.0f ms" % (
            latencies[len(latencies) // 2] * 1e3, latencies[int(len(latencies) * 0.99)] * 1e3,
            latencies[-1] * 1e3))


def _drain(sock, answers):
    while True:
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            return
        try:
            message = parse_message(data)
        except Exception:
            continue
        status = getattr(message, "status", 0)
        if status >= 200 and message.call_id not in answers:
            answers[message.call_id] = (status, time.monotonic())


if __name__ == "__main__":
    main()
