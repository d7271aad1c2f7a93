"""Tests for sipcluster.sip.address."""

import pytest

from sipcluster.sip.address import Address
from sipcluster.sip.errors import ParseError


def test_name_addr_with_quoted_display_and_params():
    addr = Address.parse('"Bob \\"B\\" Biloxi" <sip:bob@biloxi.com;transport=tcp>;tag=a6c85cf;x')
    assert addr.display_name == 'Bob "B" Biloxi'
    assert str(addr.uri) == "sip:bob@biloxi.com;transport=tcp"
    assert addr.tag == "a6c85cf"
    assert addr.params["x"] is None


def test_token_display_name():
    addr = Address.parse("Bob Biloxi <sip:bob@biloxi.com>")
    assert addr.display_name == "Bob Biloxi"


def test_addr_spec_params_belong_to_header():
    # RFC 3261 20.10: without <>, ";tag" is a header parameter.
    addr = Address.parse("sip:alice@atlanta.com;tag=88sja8x")
    assert addr.tag == "88sja8x"
    assert str(addr.uri) == "sip:alice@atlanta.com"


def test_contact_q_and_expires():
    addr = Address.parse("<sip:a@b>;q=0.7;expires=3600")
    assert addr.q == 0.7
    assert addr.expires == 3600
    assert Address.parse("<sip:a@b>").q == 1.0
    assert Address.parse("<sip:a@b>").expires is None
    with pytest.raises(ParseError):
        Address.parse("<sip:a@b>;q=2").q
    with pytest.raises(ParseError):
        Address.parse("<sip:a@b>;expires=soon").expires


def test_unchanged_serializes_as_received_and_changes_rebuild():
    text = '"A" <sip:a@b>;tag=1'
    addr = Address.parse(text)
    assert str(addr) == text
    assert str(addr.with_params(tag="2")) == '"A" <sip:a@b>;tag=2'


@pytest.mark.parametrize("bad", [
    "", '"open <sip:a@b>', "<sip:a@b", "<sip:a@b> junk", '"x" sip:a@b',
    "<>", "sip:a@b, sip:c@d", "nouri", "<sip:a@b>;=x",
])
def test_malformed(bad):
    with pytest.raises(ParseError):
        a = Address.parse(bad)
        a.uri
        a.params["tag"] or None
        raise AssertionError("accepted %r" % bad)


# -- edges found by mutation testing (bench/MUTATION.md) ------------------------

from sipcluster.sip.address import make_display  # noqa: E402


@pytest.mark.parametrize("bad, reason", [
    ("", "Empty address"),
    ("  ", "Empty address"),
    ('"open <sip:a@b>', "Unterminated display name"),
    ("<sip:a@b", "Unterminated <URI>"),
    ("<sip:a@b> junk", "Junk after <URI>"),
    ("<sip:a@b>junk", "Junk after <URI>"),
    ('"x" sip:a@b', "Display name without <URI>"),
    ('"a" x <sip:a@b>', "Display name without <URI>"),
    ('A"B <sip:a@b>', "Bad display name"),
    ("A>B <sip:a@b>", "Bad display name"),
    ("<>", "Bad URI in address"),
    ("nouri", "Bad URI in address"),
    ("sip:a@b, sip:c@d", "addr-spec needs <> around this URI"),
    ("sip:a@b?x", "addr-spec needs <> around this URI"),
    ("sip:a b", "addr-spec needs <> around this URI"),
    ("sip:a@b;", "Empty header parameter"),
    ("<sip:a@b>;", "Empty header parameter"),
    ('"A" <sip:a@b> ; ', "Empty header parameter"),
    ("<sip:a@b>;=x", 'Bad header parameter name ""'),
])
def test_malformed_reasons(bad, reason):
    with pytest.raises(ParseError) as e:
        Address.parse(bad)
    assert e.value.reason == reason


def test_no_display_name_is_none():
    for text in ("<sip:a@b>", "sip:a@b", " <sip:a@b>;tag=1"):
        addr = Address.parse(text)
        assert addr.display is None and addr.display_name is None
    assert Address.parse('"a"<sip:a@b>').display == '"a"'


def test_param_without_params_and_make_display():
    addr = Address.parse("<sip:a@b>;tag=1;expires=60")
    assert addr.param("tag") == "1"
    assert addr.param("q", "none") == "none"
    assert str(addr.without_params("tag")) == "<sip:a@b>;expires=60"
    assert str(addr.without_params("tag", "expires")) == "<sip:a@b>"
    assert make_display(None) is None
    assert make_display('Bob "B"') == '"Bob \\"B\\""'
    assert str(Address(addr.uri, make_display("Bob"))) == '"Bob" <sip:a@b>'


def test_unchanged_address_serializes_exactly_as_received():
    for text in ("Bob   <sip:a@b> ;tag=1", "sip:a@b;TAG=1", '"A"<sip:a@b>'):
        assert str(Address.parse(text)) == text


def test_angle_brackets_and_quotes_in_parameters():
    # The URI is between the first "<" and the first ">" after it.
    addr = Address.parse('<sip:a@b>;p=">";q="<"')
    assert str(addr.uri) == "sip:a@b"
    assert addr.params == {"p": '">"', "q": '"<"'}
    assert Address.parse("A<sip:a@b>").display == "A"


def test_addr_spec_with_comma_needs_angle_brackets():
    with pytest.raises(ParseError) as e:
        Address.parse("sip:a@b,c")
    assert e.value.reason == "addr-spec needs <> around this URI"
