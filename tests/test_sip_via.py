"""Tests for sipcluster.sip.via."""

import pytest

from sipcluster.sip.errors import ParseError
from sipcluster.sip.via import CSeq, Via


def test_via_fields():
    via = Via.parse("SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776;received=192.0.2.1;rport=5070;maddr=224.2.0.1;ttl=16")
    assert via.protocol == "SIP/2.0"
    assert via.transport == "UDP"
    assert via.sent_by == ("pc33.atlanta.com", 5066)
    assert via.branch == "z9hG4bK776"
    assert via.received == "192.0.2.1"
    assert via.rport == 5070 and via.has_rport
    assert via.maddr == "224.2.0.1"
    assert via.ttl == 16


def test_via_empty_rport_and_lws():
    via = Via.parse("SIP / 2.0 / tcp  host.example : 5061 ;rport;branch=z9hG4bKx")
    assert via.transport == "TCP"
    assert via.sent_by == ("host.example", 5061)
    assert via.has_rport and via.rport is None


def test_via_ipv6_and_no_port():
    via = Via.parse("SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3")
    assert via.host == "[2001:db8::9:1]"
    assert via.port is None


def test_via_with_params_rebuilds():
    via = Via.parse("SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bK1")
    assert str(via) == "SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bK1"
    stamped = via.with_params(received="1.2.3.4", rport="4444")
    assert str(stamped) == "SIP/2.0/UDP 10.0.0.1:5060;rport=4444;branch=z9hG4bK1;received=1.2.3.4"


@pytest.mark.parametrize("bad", [
    "", "SIP/2.0/UDP", "SIP/2.0 host", "SIP/2.0/UDP host:port",
    "SIP/2.0/UDP host;branch", "SIP/2.0/U(P host", "SIP/2.0/UDP [::1",
])
def test_via_malformed(bad):
    with pytest.raises(ParseError):
        Via.parse(bad)


def test_bad_rport_value_raises_on_access():
    with pytest.raises(ParseError):
        Via.parse("SIP/2.0/UDP h;rport=x").rport


def test_cseq():
    cseq = CSeq.parse(" 4711   INVITE ")
    assert (cseq.number, cseq.method) == (4711, "INVITE")
    assert str(cseq) == "4711 INVITE"
    for bad in ["", "1", "x INVITE", "1 INVITE x", "2147483648 INVITE", "1 IN;VITE", "-1 BYE"]:
        with pytest.raises(ParseError):
            CSeq.parse(bad)


# -- edges found by mutation testing (bench/MUTATION.md) ------------------------


@pytest.mark.parametrize("bad, reason", [
    ("", "Bad Via sent-protocol"),
    ("SIP/2.0 host", "Bad Via sent-protocol"),
    ("S(P/2.0/UDP h", "Bad Via sent-protocol"),
    ("SIP/2(0/UDP h", "Bad Via sent-protocol"),
    ("SIP2.0/UDP h", "Bad Via sent-protocol"),
    ("SIP/2.0/UDP", "Bad Via sent-by"),
    ("SIP/2.0/UDP ;x", "Bad Via sent-by"),
    ("SIP/2.0/U(P host", "Bad Via transport"),
    ("SIP/2.0/UDP host:port", 'Bad port "port"'),
    ("SIP/2.0/UDP [::1", "Bad IPv6 reference"),
    ("SIP/2.0/UDP h;branch", "Via branch without value"),
    ("SIP / 2.0 / UDP h;branch", "Via branch without value"),
    ("SIP/2.0/UDP h;=x", 'Bad Via parameter name ""'),
    ("SIP/2.0/UDP h;rport=;", "Empty value for Via parameter rport"),
    ("SIP/2.0/UDP h;;", 'Bad Via parameter name ""'),
    ("SIP / 2.0 / UDP h;;", 'Bad Via parameter name ""'),
    ("SIP/2.0/UDP h;branch=z9hG4bK1;", 'Bad Via parameter name ""'),
])
def test_via_malformed_reasons(bad, reason):
    with pytest.raises(ParseError) as e:
        Via.parse(bad)
    assert e.value.reason == reason


@pytest.mark.parametrize("text, reason", [
    ("SIP/2.0/UDP h;rport=x", "Bad rport"),
    ("SIP/2.0/UDP h;rport=65536", "Bad rport"),
    ("SIP/2.0/UDP h;rport=\u0663", "Bad rport"),
    ("SIP/2.0/UDP h;ttl=256", "Bad Via ttl"),
    ("SIP/2.0/UDP h;ttl=x", "Bad Via ttl"),
])
def test_via_bad_numeric_params(text, reason):
    via = Via.parse(text)
    with pytest.raises(ParseError) as e:
        via.rport if "rport" in text else via.ttl
    assert e.value.reason == reason


def test_via_numeric_params_at_their_limits():
    assert Via.parse("SIP/2.0/UDP h;rport=65535").rport == 65535
    assert Via.parse("SIP/2.0/UDP h;ttl=255").ttl == 255
    assert Via.parse("SIP/2.0/UDP h").ttl is None


def test_via_other_protocol_kept_when_rebuilt():
    via = Via.parse("XSIP/3.0/UDP h;branch=z9hG4bK1")
    assert via.protocol == "XSIP/3.0"
    assert str(via.with_params(rport="5")) == "XSIP/3.0/UDP h;branch=z9hG4bK1;rport=5"


@pytest.mark.parametrize("bad, reason", [
    ("", "Bad CSeq"),
    ("1", "Bad CSeq"),
    ("1 INVITE x", "Bad CSeq"),
    ("x INVITE", "Bad CSeq number"),
    ("-1 INVITE", "Bad CSeq number"),
    ("\u0663 INVITE", "Bad CSeq number"),
    ("00000000001 INVITE", "Bad CSeq number"),  # 11 digits, whatever their value
    ("2147483648 INVITE", "Bad CSeq number"),
    ("1 IN(VITE", "Bad CSeq method"),
])
def test_cseq_malformed_reasons(bad, reason):
    with pytest.raises(ParseError) as e:
        CSeq.parse(bad)
    assert e.value.reason == reason


def test_cseq_limits():
    assert CSeq.parse("0000000001 INVITE").number == 1
    assert CSeq.parse("2147483647 INVITE").number == 2 ** 31 - 1
    assert len({CSeq(1, "INVITE"), CSeq(1, "INVITE"), CSeq(2, "INVITE")}) == 2


@pytest.mark.parametrize("text", ["SIP/2.0/UDP h h2", "SIP/2.0/UDP 192.0.2.1 5060",
                                  "SIP/2.0/FOO h h2", "SIP / 2.0 / UDP h\th2:5060"])
def test_via_sent_by_with_inner_space_is_bad(text):
    # Was read as the host "hh2" (or "192.0.2.15060"): all LWS was removed.
    with pytest.raises(ParseError) as e:
        Via.parse(text)
    assert e.value.reason == "Bad Via sent-by"


def test_via_sent_by_lws_around_the_colon():
    assert Via.parse("SIP/2.0/UDP h : 5060").sent_by == ("h", 5060)
    assert Via.parse("SIP / 2.0 / UDP [::1]\t:\t5070").sent_by == ("[::1]", 5070)


def test_via_unchanged_serializes_as_received():
    for text in ("SIP/2.0/udp h;BRANCH=z9hG4bK1", "SIP / 2.0 / UDP h ;branch=z9hG4bK1"):
        assert str(Via.parse(text)) == text


def test_via_sent_protocol_with_lws_and_tabs():
    for text in ("SIP / 2.0 / UDP h", "SIP\t/\t2.0/UDP h", "SIP/2.0/UDP h\t:5060", "SIP/2.0/UDP h :\t5060"):
        via = Via.parse(text)
        assert (via.protocol, via.transport, via.host) == ("SIP/2.0", "UDP", "h"), text
    with pytest.raises(ParseError) as e:
        Via.parse("SIP / 2.0 / UDP h;=x")
    assert e.value.reason == 'Bad Via parameter name ""'


def test_via_built_without_params():
    via = Via("UDP", "h")
    assert via.params == {}
    assert str(via) == "SIP/2.0/UDP h"


@pytest.mark.parametrize("text", ["SIP/2.0/UDP h;", "SIP / 2.0 / UDP h;"])
def test_a_semicolon_with_nothing_after_it_is_no_parameter(text):
    # Tolerated, as before the parameters were read from the split parts.
    via = Via.parse(text)
    assert via.params == {} and via.host == "h" and str(via) == text
