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
