"""
Bad input never crashes or wedges a node: thousands of mutated requests and
responses, valid at the byte level but hostile in their header values,
through the whole in-process node (transport, transactions, stateful proxy,
registrar, dialog tracking and call admission on the memory store).  Nothing
may raise or log a failure, and once the timers have run no transaction or
call set-up is left behind.
"""

import random

import pytest
from twisted.logger import globalLogPublisher

from tests.harness import NodeHarness
from tests.sipdata import crlf

PHONE = ("127.0.0.1", 5090)
CALLER = ("127.0.0.1", 5080)

SEEDS = [crlf(text) for text in ("""\
REGISTER sip:example.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bKreg{n};rport
Max-Forwards: 70
From: <sip:alice@example.test>;tag=r{n}
To: <sip:alice@example.test>
Call-ID: reg-{n}
CSeq: {n} REGISTER
Contact: <sip:alice@127.0.0.1:5090>;expires=600;q=0.5, <sip:alice@10.0.0.7:5062>
Path: <sip:edge.example.test;lr>
Supported: path, outbound
Content-Length: 0

""", """\
INVITE sip:alice@example.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKinv{n};rport
Max-Forwards: 70
Route: <sip:127.0.0.1:5060;lr>
From: Bob <sip:bob@example.test>;tag=i{n}
To: <sip:alice@example.test>
Call-ID: call-{n}
CSeq: 1 INVITE
Contact: <sip:bob@127.0.0.1:5080>
Content-Type: application/sdp
Content-Length: 4

v=0
""", """\
INVITE sip:carol@far.example.net:5070;transport=udp SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKfar{n}
Max-Forwards: 3
From: <sip:bob@example.test>;tag=f{n}
To: <sip:carol@far.example.net>
Call-ID: far-{n}
CSeq: 7 INVITE
Proxy-Require: foo
Content-Length: 0

""", """\
BYE sip:alice@127.0.0.1:5090 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKbye{n}
Max-Forwards: 70
Route: <sip:127.0.0.1:5060;lr>
From: Bob <sip:bob@example.test>;tag=i{n}
To: <sip:alice@example.test>;tag=a{n}
Call-ID: call-{n}
CSeq: 2 BYE
Content-Length: 0

""", """\
CANCEL sip:alice@example.test SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKinv{n};rport
Max-Forwards: 70
From: Bob <sip:bob@example.test>;tag=i{n}
To: <sip:alice@example.test>
Call-ID: call-{n}
CSeq: 1 CANCEL
Content-Length: 0

""", """\
ACK sip:alice@127.0.0.1:5090 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKack{n}
Max-Forwards: 70
Route: <sip:127.0.0.1:5060;lr>
From: Bob <sip:bob@example.test>;tag=i{n}
To: <sip:alice@example.test>;tag=a{n}
Call-ID: call-{n}
CSeq: 1 ACK
Content-Length: 0

""", """\
OPTIONS sip:127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKopt{n}
Max-Forwards: 0
From: <sip:ping@example.test>;tag=o{n}
To: <sip:127.0.0.1>
Call-ID: opt-{n}
CSeq: 1 OPTIONS
Accept: application/sdp
Content-Length: 0

""", """\
SIP/2.0 200 OK
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-{n}
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKinv{n};rport=5080;received=127.0.0.1
Record-Route: <sip:127.0.0.1:5060;lr>
From: Bob <sip:bob@example.test>;tag=i{n}
To: <sip:alice@example.test>;tag=a{n}
Call-ID: call-{n}
CSeq: 1 INVITE
Contact: <sip:alice@127.0.0.1:5090>
Content-Length: 0

""")]

HEADERS = [b"Via", b"From", b"To", b"Call-ID", b"CSeq", b"Max-Forwards", b"Contact", b"Expires",
           b"Route", b"Record-Route", b"Path", b"Require", b"Proxy-Require", b"Supported",
           b"Content-Length", b"Min-Expires"]

NASTY = [b"", b" ", b"abc", b"-1", b"0", b"99999999999999999999999", b"4294967296", b"1.5",
         b"*", b"<>", b"<sip:@>", b"<sip:>", b"sip:", b"<sip:a@b", b"sip:a@b>", b"<tel:+1-555>",
         b"<sips:x@y:0>", b"<sip:x@[::1>", b"<sip:x@[::1]:99999>", b"<sip:%zz@host>",
         b"<sip:a@b>;expires=abc", b"<sip:a@b>;expires=-5", b"<sip:a@b>;q=7", b"<sip:a@b>;q=abc",
         b"<sip:a@b>;+sip.instance=\"<urn:uuid:1>\";reg-id=x", b",,,", b"\"unterminated <sip:a@b>",
         b"Bob <sip:bob@example.test>;tag=", b"<sip:a@b>;tag=1;tag=2", b"SIP/2.0/UDP",
         b"SIP/2.0/UDP 127.0.0.1:5080;branch=", b"SIP/2.0/UDP 127.0.0.1:5080;rport=abc;branch=z9hG4bKx",
         b"SIP/2.0/SCTP [::1]:5060;branch=z9hG4bKy;maddr=;ttl=999", b"SIP/3.0/UDP h;branch=z9hG4bKz",
         b"1 INVITE", b"1 REGISTER", b"abc INVITE", b"-3 BYE", b"2147483648 INVITE", b"1",
         b"<sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5060;lr>",
         b"<sip:127.0.0.1:5060>", b"<sip:127.0.0.1:5060;lr;maddr=10.0.0.1>", b"x" * 3000]


def mutate(rng, raw):
    lines = raw.split(b"\r\n")
    head = lines.index(b"") if b"" in lines else len(lines)
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(HEADERS)
        value = rng.choice(NASTY)
        matching = [i for i in range(1, head) if lines[i].lower().startswith(name.lower() + b":")]
        if matching and rng.random() < 0.7:
            lines[rng.choice(matching)] = name + b": " + value
        elif rng.random() < 0.5 and matching:
            del lines[rng.choice(matching)]
            head -= 1
        else:
            lines.insert(rng.randint(1, head), name + b": " + value)
            head += 1
    return b"\r\n".join(lines)


def answer(rng, request):
    """A response to C{request} as a downstream element would write it."""
    status = rng.choice((100, 180, 183, 200, 200, 302, 404, 408, 486, 487, 503, 603))
    lines = ["SIP/2.0 %d Whatever" % status]
    lines += ["Via: %s" % v for v in request.values("via")]
    lines += ["From: %s" % request.header("from"), "To: %s;tag=dn%d" % (request.header("to"), status),
              "Call-ID: %s" % request.call_id, "CSeq: %s" % request.header("cseq"),
              "Contact: <sip:alice@127.0.0.1:5090>", "Record-Route: <sip:downstream.example.test;lr>",
              "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


class Node:
    """A node from build_node, in memory, with dialogs, a call limit and failed-call CDRs."""

    def __init__(self, mode):
        settings = {"node": {"mode": mode}, "sip": {"domains": ["example.test", "127.0.0.1"]},
                    "registrar": {"max_expires": 7200}}
        if mode == "stateful":
            settings["cluster"] = {"max_dialogs": 50}
            settings["accounting"] = {"failed_calls": True}
        self.h = NodeHarness(settings)
        self.tl = self.h.node.transactions
        self.proxy = self.h.node.proxy


@pytest.fixture
def failures():
    seen = []

    def observer(event):
        if "log_failure" in event or event.get("log_level") is not None and \
                event["log_level"].name == "critical":
            seen.append(event)
    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


@pytest.mark.parametrize("mode,seed", [("stateful", 3261), ("stateful", 3581), ("stateful", 4475),
                                       ("stateless", 3261), ("stateless", 6026)])
def test_hostile_header_values_never_raise_log_failures_or_wedge_the_node(failures, mode, seed):
    rng = random.Random(seed)
    node = Node(mode)
    # Someone registered, so INVITEs have somewhere to go.
    node.h.receive(SEEDS[0].replace(b"{n}", b"0"), PHONE)
    answered = 0
    forwarded = []
    for n in range(1, 4001):
        if forwarded and rng.random() < 0.4:
            # Downstream answers what we forwarded: a response matching our
            # branch, hostile in its values too.
            request, addr = forwarded.pop(rng.randrange(len(forwarded)))
            data, source = mutate(rng, answer(rng, request)), addr
        else:
            seed = rng.choice(SEEDS).replace(b"{n}", str(n % 97).encode())
            data, source = mutate(rng, seed), PHONE if rng.random() < 0.3 else CALLER
        node.h.receive(data, source)  # must not raise
        for message, addr in node.h.sent():
            answered += 1
            if getattr(message, "method", None) not in (None, "ACK") and addr != source:
                forwarded.append((message, addr))
        del forwarded[:-50]
        node.h.clock.advance(rng.choice((0, 0.01, 0.5)))
    assert answered > 2000  # most got an answer or were forwarded
    assert failures == [], [str(e.get("log_failure", e.get("log_format"))) for e in failures[:5]]
    # Every timer runs out: nothing stays behind.
    # (Timer C, 3 min, then the CANCEL's own transaction.)
    for _ in range(400):
        node.h.clock.advance(1)
    if node.tl is not None:
        left = {key: tx.state for key, tx in node.tl.servers.items()}
        left.update({key: tx.state for key, tx in node.tl.clients.items()})
        assert left == {}
        assert len(node.proxy.setups) == 0
    stats = node.h.layer.stats
    assert stats["received"] == 4001
