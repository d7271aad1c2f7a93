"""
Property-based tests of the message layer: what is built and serialized
parses back the same, and no input makes the parser raise anything but
SIPError.
"""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipcluster.sip.address import Address
from sipcluster.sip.errors import SIPError
from sipcluster.sip.framing import StreamFramer
from sipcluster.sip.message import Request, Response, parse_message
from sipcluster.sip.uri import SipURI
from sipcluster.sip.via import Via
from tests.sipdata import INVITE, OK, REGISTER
from tests.test_sip_corpus import CORPUS

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
tokens = st.text(ALNUM + "-.!%*_+`'~", min_size=1, max_size=12)
labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
hosts = st.one_of(
    st.lists(labels, min_size=1, max_size=4).map(".".join),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: "%d.%d.%d.%d" % t),
    st.sampled_from(["[::1]", "[2001:db8::10]", "[fe80::1:2]"]),
)
ports = st.one_of(st.none(), st.integers(1, 65535))
users = st.one_of(st.none(), st.text(ALNUM + "-_.!~*'()&=+$,", min_size=1, max_size=12))
param_values = st.one_of(st.none(), tokens)
uri_params = st.dictionaries(tokens.map(str.lower), param_values, max_size=3)
sip_uris = st.builds(lambda h, u, p, pr, s: SipURI(h, u, p, pr, s),
                     hosts, users, ports, uri_params, st.sampled_from(["sip", "sips"]))
safe_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters='"\\'),
    max_size=20)


@st.composite
def requests(draw):
    method = draw(tokens)
    uri = draw(sip_uris)
    req = Request(method, uri)
    for _ in range(draw(st.integers(1, 3))):
        req.add("Via", str(Via(draw(st.sampled_from(["UDP", "TCP", "TLS"])), draw(hosts), draw(ports),
                               {"branch": "z9hG4bK" + draw(tokens)})))
    req.add("Max-Forwards", draw(st.integers(0, 255)))
    display = draw(st.one_of(st.none(), safe_text.map(lambda t: '"%s"' % t)))
    req.add("From", str(Address(draw(sip_uris), display, {"tag": draw(tokens)})))
    req.add("To", str(Address(draw(sip_uris))))
    req.add("Call-ID", draw(tokens) + "@" + draw(hosts))
    req.add("CSeq", "%d %s" % (draw(st.integers(0, 2 ** 31 - 1)), method))
    for _ in range(draw(st.integers(0, 3))):
        req.add("X-" + draw(tokens), draw(safe_text).strip() or "v")
    req.set_body(draw(st.binary(max_size=64)))
    return req


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_build_serialize_parse_roundtrip(req):
    raw = req.to_bytes()
    parsed = parse_message(raw)
    parsed.validate()
    assert parsed.method == req.method
    assert str(parsed.uri) == str(req.uri)
    assert parsed.uri == req.uri
    assert parsed.items() == req.items()
    assert parsed.body == req.body
    assert parsed.cseq == req.cseq
    assert [v.branch for v in parsed.vias] == [v.branch for v in req.vias]
    assert parsed.from_tag == req.from_tag
    assert parsed.from_.display_name == req.from_.display_name
    assert parsed.to_bytes() == raw
    # Over a stream too.
    assert StreamFramer(max_size=1 << 20).feed(raw) == [raw]


@settings(max_examples=200)
@given(st.integers(100, 699), safe_text, requests())
def test_response_roundtrip(status, reason, req):
    resp = Response(status, reason.strip() or None)
    for name, value in req.items():
        resp.add(name, value)
    resp.set_body(req.body)
    parsed = parse_message(resp.to_bytes())
    assert (parsed.status, parsed.reason) == (resp.status, resp.reason)
    assert parsed.items() == resp.items()
    assert parsed.body == req.body


def _exercise(raw):
    """Parse and read everything; only SIPError may come out."""
    try:
        msg = parse_message(raw, max_size=65535)
        msg.validate()
        msg.top_via, msg.call_id, msg.cseq, msg.max_forwards, msg.to_tag, msg.from_tag
        for c in msg.contacts:
            c.q, c.expires, c.uri
        for r in msg.routes + msg.record_routes:
            r.uri
        for v in msg.vias:
            v.rport, v.ttl, v.branch
        msg.expires, msg.is_star_contact
        if isinstance(msg, Request):
            msg.uri
        msg.to_bytes()
    except SIPError:
        pass


SEEDS = [INVITE, REGISTER, OK] + [c[1] for c in CORPUS if c[2] == "ok"]
SPECIALS = [b",", b";", b"<", b">", b'"', b":", b"\r\n", b"\r\n ", b"\\", b"@", b"[", b"]",
            b"=", b"%", b"\x00", b"\xff", b" ", b"/", b"?", b"SIP/2.0", b"\r\n\r\n"]


def _mutate(rng, raw):
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        if not data:
            data += rng.choice(SPECIALS)
            continue
        pos = rng.randrange(len(data))
        op = rng.randrange(6)
        if op == 0:
            data[pos] = rng.randrange(256)
        elif op == 1:
            data[pos:pos] = rng.choice(SPECIALS)
        elif op == 2:
            del data[pos:pos + rng.randint(1, 8)]
        elif op == 3:
            data = data[:pos]
        elif op == 4:
            other = rng.randrange(len(data))
            data[pos:pos] = data[other:other + rng.randint(1, 20)]
        else:
            data[pos:pos + 1] = rng.choice(SPECIALS)
    return bytes(data)


def test_fuzz_mutations_raise_only_sip_errors():
    rng = random.Random(4475)
    for _ in range(20000):
        _exercise(_mutate(rng, rng.choice(SEEDS)))


@settings(max_examples=1000)
@given(st.sampled_from(SEEDS), st.integers(0, 2 ** 32))
def test_fuzz_hypothesis_mutations(seed, n):
    _exercise(_mutate(random.Random(n), seed))


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data):
    _exercise(data)
    try:
        StreamFramer(max_size=200).feed(data)
    except SIPError:
        pass
