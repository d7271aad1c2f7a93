"""
A corpus of unusual-but-valid and malformed messages in the spirit of
RFC 4475, each with the outcome a server must reach: "ok", or the status it
answers with, or "drop" when nothing can be answered (no request could be
read).
"""

import pytest

from sipcluster.sip.errors import SIPError
from sipcluster.sip.message import Request, parse_message
from tests.sipdata import crlf

BASE = """\
{start}
Via: SIP/2.0/UDP pc.example.com:5060;branch=z9hG4bK74bf9
Max-Forwards: 70
From: Alice <sip:alice@example.com>;tag=9fxced76sl
To: Bob <sip:bob@example.com>
Call-ID: 3848276298220188511@example.com
CSeq: 1 {method}
Contact: <sip:alice@pc.example.com>
{extra}Content-Length: 0

"""


def req(start="INVITE sip:bob@example.com SIP/2.0", method="INVITE", extra="", **replace):
    text = BASE.format(start=start, method=method, extra=extra)
    for old, new in replace.items():
        old = old.replace("_", "-")
        lines = text.split("\n")
        lines = [(("%s: %s" % (old, new)) if new is not None else None)
                 if l.split(":", 1)[0] == old else l for l in lines]
        text = "\n".join(l for l in lines if l is not None)
    return crlf(text)


CORPUS = [
    # -- valid, if unusual ------------------------------------------------
    ("plain INVITE", req(), "ok"),
    ("tortuous whitespace and folding", crlf("""\
INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : 0
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;rport;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
m:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

"""), "ok"),
    ("compact forms everywhere", crlf("""\
OPTIONS sip:bob@example.com SIP/2.0
v: SIP/2.0/TCP pc.example.com;branch=z9hG4bKc
f: <sip:a@example.com>;tag=1
t: <sip:bob@example.com>
i: compact@example.com
CSeq: 2 OPTIONS
m: <sip:a@pc.example.com;transport=tcp>
k: path
l: 0

"""), "ok"),
    ("unknown method", req("NEWMETHOD sip:bob@example.com SIP/2.0", "NEWMETHOD"), "ok"),
    ("lower-case method is an extension", req("invite sip:bob@example.com SIP/2.0", "invite"), "ok"),
    ("escaped Request-URI user", req("INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0"), "ok"),
    ("Request-URI with params and headers", req("INVITE sip:bob@example.com;transport=udp;maddr=239.255.255.1;ttl=15?Subject=x SIP/2.0"), "ok"),
    ("IPv6 Request-URI and Via", req("INVITE sip:[2001:db8::10]:5070 SIP/2.0", Via="SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111"), "ok"),
    ("IPv6 received", req(Via="SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255];branch=z9hG4bKas3"), "ok"),
    ("sips Request-URI", req("INVITE sips:bob@example.com SIP/2.0"), "ok"),
    ("tel Request-URI", req("INVITE tel:+1-201-555-0123 SIP/2.0"), "ok"),
    ("Contact with another scheme", req(Contact="<http://example.com/me>"), "ok"),
    ("several Via on one line", req(Via="SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com:5061;branch=z9hG4bK2"), "ok"),
    ("Contact star", req("REGISTER sip:example.com SIP/2.0", "REGISTER", extra="Expires: 0\n", Contact="*"), "ok"),
    ("empty Subject", req(extra="Subject:\n"), "ok"),
    ("Max-Forwards zero", req(Max_Forwards="0"), "ok"),
    ("display name with UTF-8", req(From='"Zoë Ümlaut" <sip:zoe@example.com>;tag=x'), "ok"),
    ("quoted display name with comma", req(From='"Doe, John" <sip:j@example.com>;tag=x'), "ok"),
    ("token display name", req(From="Bob the Builder <sip:b@example.com>;tag=x"), "ok"),
    ("addr-spec From with tag", req(From="sip:alice@example.com;tag=abc"), "ok"),
    ("Via with hex branch and odd token chars", req(Via="SIP/2.0/UDP h.example.com;branch=z9hG4bK-.!%*_+`'~"), "ok"),
    ("leading CRLFs", b"\r\n\r\n" + req(), "ok"),
    ("bare LF line ends", req().replace(b"\r\n", b"\n"), "ok"),
    ("unknown header with raw 8-bit bytes", req(extra="X-Bin: \udcff\udcfe\n"), "ok"),
    ("body with NULs", req(Content_Length="4").replace(b"Content-Length: 4\r\n\r\n", b"Content-Length: 4\r\nContent-Type: application/octet-stream\r\n\r\n") + b"\x00\x01\x02\x03", "ok"),
    ("datagram with extra bytes after body", req() + b"junk after", "ok"),
    ("no Content-Length on datagram", req(Content_Length=None), "ok"),
    ("response with empty reason", crlf("SIP/2.0 200 \nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 1 INVITE\nContent-Length: 0\n\n"), "ok"),
    ("response with extension code", crlf("SIP/2.0 499 Something New\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 1 INVITE\nContent-Length: 0\n\n"), "ok"),
    ("RFC 2543 branch-less Via", req(Via="SIP/2.0/UDP old.example.com"), "ok"),
    ("Route and Record-Route lists", req(extra="Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\nRecord-Route: <sip:p3.example.com;lr>\n"), "ok"),

    # -- malformed: 400 -----------------------------------------------------
    ("missing Call-ID", req(Call_ID=None), 400),
    ("missing CSeq", req(CSeq=None), 400),
    ("missing Via", req(Via=None), 400),
    ("missing From", req(From=None), 400),
    ("missing To", req(To=None), 400),
    ("CSeq method mismatch", req(CSeq="1 BYE"), 400),
    ("CSeq not a number", req(CSeq="one INVITE"), 400),
    ("CSeq over 2**31", req(CSeq="4294967296 INVITE"), 400),
    ("Max-Forwards not a number", req(Max_Forwards="many"), 400),
    ("Max-Forwards over 255", req(Max_Forwards="300"), 400),
    ("Content-Length larger than body", req(Content_Length="9999"), 400),
    ("negative Content-Length", req(Content_Length="-5"), 400),
    ("Via without transport", req(Via="SIP/2.0 pc.example.com;branch=z9hG4bK1"), 400),
    ("Via with bad port", req(Via="SIP/2.0/UDP pc.example.com:99999;branch=z9hG4bK1"), 400),
    ("Via branch without value", req(Via="SIP/2.0/UDP pc.example.com;branch"), 400),
    ("duplicate Call-ID", req(extra="Call-ID: other@example.com\n"), 400),
    # A proxy leaves a malformed From/To URI alone (RFC 3261 16.3) ...
    ("odd URI in To, forwarded as is", req(To="<sip:bob@exa mple.com>"), "ok"),
    # ... but a registrar reads the To of a REGISTER: 400.
    ("bad URI in REGISTER To", req("REGISTER sip:example.com SIP/2.0", "REGISTER", To="<sip:bob@exa mple.com>"), 400),
    ("unterminated quote in From", req(From='"Alice <sip:alice@example.com>;tag=1'), 400),
    ("unterminated <> in To", req(To="<sip:bob@example.com"), 400),
    ("header line without colon", req(extra="This is not a header\n"), 400),
    ("space in header name", req(extra="Bad Name: x\n"), 400),
    ("continuation before any header", crlf("INVITE sip:b@example.com SIP/2.0\n folded: x\n\n"), 400),
    ("request line with extra spaces", req("INVITE  sip:bob@example.com SIP/2.0"), 400),
    ("request line without version", req("INVITE sip:bob@example.com"), 400),
    ("unescaped space in Request-URI", req("INVITE sip:bob@exa mple.com SIP/2.0"), 400),
    ("bad Request-URI host", req("INVITE sip:bob@exa<mple.com SIP/2.0"), 400),
    ("bad %-escape in Request-URI", req("INVITE sip:b%zzob@example.com SIP/2.0"), 400),
    ("Request-URI without scheme", req("INVITE bob@example.com SIP/2.0"), 400),
    ("bad method characters", req("IN(VITE sip:bob@example.com SIP/2.0", "IN(VITE"), 400),
    ("Contact star with other contacts", req("REGISTER sip:example.com SIP/2.0", "REGISTER", Contact="*, <sip:a@b>"), 400),
    ("q-value out of range", req(Contact="<sip:a@b>;q=1.5"), 400),
    ("empty Call-ID", req(Call_ID=""), 400),

    # -- other statuses -----------------------------------------------------
    ("SIP version 7.0", req("INVITE sip:bob@example.com SIP/7.0"), 505),
    ("mailto Request-URI", req("INVITE mailto:bob@example.com SIP/2.0"), 416),
    ("http Request-URI", req("OPTIONS http://example.com/ SIP/2.0", "OPTIONS"), 416),
    ("oversized message", req(extra="X-Big: %s\n" % ("x" * 70000)), 513),

    # -- nothing to answer ------------------------------------------------
    ("empty datagram", b"", "drop"),
    ("binary junk", bytes(range(256)), "drop"),
    ("no empty line", b"INVITE sip:a@b SIP/2.0\r\nVia: x", "drop"),
    ("response with 2-digit code", crlf("SIP/2.0 99 Odd\nVia: SIP/2.0/UDP h\n\n"), "drop"),
    ("response with code 700", crlf("SIP/2.0 700 Odd\nVia: SIP/2.0/UDP h\n\n"), "drop"),
]


def outcome(raw):
    """What a server does with C{raw}: "ok", a status to answer, or "drop"."""
    msg = None
    try:
        msg = parse_message(raw, max_size=65535)
        msg.validate()
        # Everything a proxy or registrar reads must be readable in a valid
        # message; a fault found while reading it is answered like one
        # found by validate().
        msg.top_via, msg.call_id, msg.cseq, msg.max_forwards, msg.to_tag
        [(c.q, c.expires) for c in msg.contacts]
        msg.routes, msg.record_routes
        if isinstance(msg, Request):
            msg.uri
            if msg.method == "REGISTER":
                msg.to.uri
        return "ok"
    except SIPError as e:
        # A request that could be read is answered; anything else (a
        # response, or bytes with no readable request) is dropped.
        if isinstance(e.message or msg, Request) or e.status == 513:
            return e.status
        return "drop"


def test_corpus_size():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("name,raw,expected", CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus(name, raw, expected):
    assert outcome(raw) == expected


@pytest.mark.parametrize("name,raw,expected", [c for c in CORPUS if c[2] == "ok"],
                         ids=[c[0] for c in CORPUS if c[2] == "ok"])
def test_valid_corpus_roundtrips(name, raw, expected):
    msg = parse_message(raw)
    again = parse_message(msg.to_bytes())
    assert again.to_bytes() == msg.to_bytes()
    assert again.body == msg.body


# The reason phrase each fault is answered (or logged) with: the sender reads
# it in the 400, so it is part of what the server does (RFC 3261 21.4.1).
REASONS = {
    "missing Call-ID": "Missing Call-ID header",
    "missing CSeq": "Missing CSeq header",
    "missing Via": "Missing Via header",
    "missing From": "Missing From header",
    "missing To": "Missing To header",
    "CSeq method mismatch": "CSeq method does not match request method",
    "CSeq not a number": "Bad CSeq number",
    "CSeq over 2**31": "Bad CSeq number",
    "Max-Forwards not a number": "Bad Max-Forwards",
    "Max-Forwards over 255": "Bad Max-Forwards",
    "Content-Length larger than body": "Content-Length larger than body",
    "negative Content-Length": "Bad Content-Length",
    "Via without transport": "Bad Via sent-protocol",
    "Via with bad port": 'Bad port "99999"',
    "Via branch without value": "Via branch without value",
    "duplicate Call-ID": "Duplicate Call-ID header",
    "bad URI in REGISTER To": 'Bad host "exa mple.com"',
    "unterminated quote in From": "Unterminated display name",
    "unterminated <> in To": "Unterminated <URI>",
    "header line without colon": 'Malformed header line "This is not a header"',
    "space in header name": 'Malformed header line "Bad Name: x"',
    "continuation before any header": "Continuation line before any header",
    "request line with extra spaces": "Malformed request line",
    "request line without version": "Malformed request line",
    "unescaped space in Request-URI": "Malformed request line",
    "bad Request-URI host": 'Bad host "exa<mple.com"',
    "bad %-escape in Request-URI": "Bad %-escape in URI user part",
    "Request-URI without scheme": "Bad Request-URI",
    "bad method characters": "Malformed request line",
    "Contact star with other contacts": "Contact * with other contacts",
    "q-value out of range": "q-value out of range",
    "empty Call-ID": "Empty Call-ID",
    "SIP version 7.0": "Version SIP/7.0 not supported",
    "mailto Request-URI": "Unsupported URI scheme mailto",
    "http Request-URI": "Unsupported URI scheme http",
    "oversized message": "Message larger than 65535 bytes",
    "empty datagram": "No empty line after the headers",
    "binary junk": "No empty line after the headers",
    "no empty line": "No empty line after the headers",
    "response with 2-digit code": "Bad status code",
    "response with code 700": "Bad status code",
}


def fault(raw):
    """The SIPError a server meets reading C{raw} as L{outcome} does."""
    try:
        outcome_raising(raw)
    except SIPError as e:
        return e
    raise AssertionError("no fault")


def outcome_raising(raw):
    msg = parse_message(raw, max_size=65535)
    msg.validate()
    msg.top_via, msg.call_id, msg.cseq, msg.max_forwards, msg.to_tag
    [(c.q, c.expires) for c in msg.contacts]
    msg.routes, msg.record_routes
    if isinstance(msg, Request):
        msg.uri
        if msg.method == "REGISTER":
            msg.to.uri


def test_every_fault_has_its_reason():
    assert sorted(REASONS) == sorted(name for name, _, expected in CORPUS if expected != "ok")


@pytest.mark.parametrize("name,raw", [(c[0], c[1]) for c in CORPUS if c[2] != "ok"],
                         ids=[c[0] for c in CORPUS if c[2] != "ok"])
def test_corpus_reasons(name, raw):
    assert fault(raw).reason == REASONS[name]
