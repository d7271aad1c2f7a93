"""Tests for sipcluster.sip.uri."""

import pytest

from sipcluster.sip.errors import ParseError
from sipcluster.sip.uri import AbsoluteURI, SipURI, TelURI, parse_uri, split_hostport


def test_full_sip_uri():
    uri = parse_uri("sip:alice:secret@atlanta.com:5070;transport=TCP;lr;maddr=1.2.3.4?subject=hi&priority=urgent")
    assert isinstance(uri, SipURI)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sip", "alice", "secret", "atlanta.com", 5070)
    assert uri.transport == "tcp"
    assert uri.lr
    assert uri.param("maddr") == "1.2.3.4"
    assert uri.headers == "subject=hi&priority=urgent"


def test_unchanged_uri_serializes_as_received():
    text = "SIP:Alice@AtLanTa.com;Transport=udp"
    assert str(parse_uri(text)) == text


def test_sips_and_default_ports():
    assert parse_uri("sips:bob@b.example").effective_port == 5061
    assert parse_uri("sip:b.example").effective_port == 5060
    assert parse_uri("sip:b.example").user is None


def test_ipv6_reference():
    uri = parse_uri("sip:[2001:db8::10]:5070;transport=udp")
    assert uri.host == "[2001:db8::10]"
    assert uri.port == 5070
    assert parse_uri("sip:user@[::1]").port is None


def test_user_with_telephone_subscriber_params():
    uri = parse_uri("sip:+1-212-555-1212:1234@gateway.com;user=phone")
    assert uri.user == "+1-212-555-1212"
    assert uri.password == "1234"
    uri = parse_uri("sip:+358;phone-context=x?y@example.com")
    assert uri.user == "+358;phone-context=x?y"
    assert uri.host == "example.com"


def test_escapes_compare_unescaped():
    assert parse_uri("sip:%61lice@atlanta.com") == parse_uri("sip:alice@AtLanta.com")
    assert parse_uri("sip:alice@atlanta.com") != parse_uri("sip:ALICE@atlanta.com")
    assert parse_uri("sip:a@b.com:5060") != parse_uri("sip:a@b.com")


def test_replace_and_params():
    uri = parse_uri("sip:bob@biloxi.com;lr")
    other = uri.replace(host="10.0.0.1", port=5080).with_params(transport="tcp")
    assert str(other) == "sip:bob@10.0.0.1:5080;lr;transport=tcp"
    assert str(uri) == "sip:bob@biloxi.com;lr"
    assert str(other.without_params("lr")) == "sip:bob@10.0.0.1:5080;transport=tcp"
    assert str(SipURI("::1", port=5060)) == "sip:[::1]:5060"


def test_tel_uri():
    uri = parse_uri("tel:+1-201-555-0123;ext=12")
    assert isinstance(uri, TelURI)
    assert uri.digits == "+12015550123"
    assert uri.params == {"ext": "12"}
    assert parse_uri("tel:7042;phone-context=example.com").number == "7042"
    with pytest.raises(ParseError):
        parse_uri("tel:7042")


def test_other_schemes_are_opaque():
    uri = parse_uri("mailto:alice@example.com")
    assert isinstance(uri, AbsoluteURI)
    assert uri.scheme == "mailto"
    assert str(uri) == "mailto:alice@example.com"


@pytest.mark.parametrize("bad", [
    "sip:", "sip:@host", "sip:user@", "sip:host:99999", "sip:host:abc",
    "sip:[::1", "sip:[zz::1]", "sip:ho st", "sip:a@b;=x", "sip:a%zz@b",
    "sip:a@b?", "nocolon", ":x", "1x:foo", "sip:a@b;x=\"q\"",
])
def test_malformed(bad):
    with pytest.raises(ParseError):
        parse_uri(bad)


def test_split_hostport():
    assert split_hostport("example.com") == ("example.com", None)
    assert split_hostport("1.2.3.4:5060") == ("1.2.3.4", 5060)
    assert split_hostport("[::1]:5") == ("[::1]", 5)
    with pytest.raises(ParseError):
        split_hostport("[::1]x")
