"""
Parse-rate benchmark (not a test): parse a typical INVITE, REGISTER and
200 OK, read what a proxy reads (top Via branch, Call-ID, CSeq,
Max-Forwards, Route, To tag), add a Via and serialize.

    .venv/bin/python bench/parse.py [--seconds N] [--root DIR]
    valgrind --tool=callgrind .venv/bin/python bench/parse.py --count N --only INVITE

Prints messages per second for each message and for the mix.  --count
handles exactly N of each message (or of the one --only names) and prints
nothing, for instruction counts: per message = (Ir(N2) - Ir(N1)) / (N2 - N1).
--root measures the sipcluster tree at DIR (another commit, checked out with
git worktree) with this script.
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if "--root" in sys.argv:
    ROOT = os.path.abspath(sys.argv[sys.argv.index("--root") + 1])
sys.path.insert(0, ROOT)

from sipcluster.sip.message import parse_message  # noqa: E402
from sipcluster.sip.via import Via  # noqa: E402


def crlf(text):
    return text.replace("\n", "\r\n").encode()


SDP = ("v=0\no=alice 2890844526 2890844526 IN IP4 192.0.2.101\ns=-\nc=IN IP4 192.0.2.101\n"
       "t=0 0\nm=audio 49172 RTP/AVP 0 8 101\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n"
       "a=rtpmap:101 telephone-event/8000\n").replace("\n", "\r\n")

INVITE = crlf("""\
INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com>
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY
Supported: replaces, timer
User-Agent: ExamplePhone/1.0
Content-Type: application/sdp
Content-Length: %d

""" % len(SDP)) + SDP.encode()

REGISTER = crlf("""\
REGISTER sip:registrar.biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7;rport
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Bob <sip:bob@biloxi.example.com>;tag=456248
Call-ID: 843817637684230@998sdasdh09
CSeq: 1826 REGISTER
Contact: <sip:bob@192.0.2.4>;expires=3600
User-Agent: ExamplePhone/1.0
Content-Length: 0

""")

OK = crlf("""\
SIP/2.0 200 OK
Via: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bKnashds8;received=192.0.2.3
Via: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1;received=192.0.2.2
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1
Record-Route: <sip:server10.biloxi.example.com;lr>, <sip:bigbox3.site3.atlanta.example.com;lr>
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:bob@192.0.2.4>
Content-Length: 0

""")

VIA = Via("UDP", "10.0.0.1", 5060, {"branch": "z9hG4bKbench", "rport": None})


def proxy_work(raw):
    msg = parse_message(raw)
    msg.top_via.branch
    msg.call_id
    msg.cseq
    msg.to_tag
    if hasattr(msg, "method"):
        mf = msg.max_forwards
        msg.routes
        msg.max_forwards = mf - 1
        msg.push_via(VIA)
    else:
        msg.pop_via()
    return msg.to_bytes()


def rate(raw, seconds):
    n = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(1000):
            proxy_work(raw)
        n += 1000
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--count", type=int)
    parser.add_argument("--only", choices=["INVITE", "REGISTER", "OK"])
    parser.add_argument("--root", help="the sipcluster tree to measure (default: this one)")
    args = parser.parse_args()
    messages = (("INVITE", INVITE), ("REGISTER", REGISTER), ("200 OK", OK))
    if args.count is not None:
        for name, raw in messages:
            if args.only is None or args.only in name:
                for _ in range(args.count):
                    proxy_work(raw)
        return
    results = {}
    for name, raw in messages:
        results[name] = rate(raw, args.seconds)
        print("%-9s %8.0f msg/s  (%d bytes)" % (name, results[name], len(raw)))
    mix = [INVITE, REGISTER, OK]
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        for raw in mix * 300:
            proxy_work(raw)
        n += 900
    print("%-9s %8.0f msg/s" % ("mix", n / (time.perf_counter() - start)))


if __name__ == "__main__":
    main()
