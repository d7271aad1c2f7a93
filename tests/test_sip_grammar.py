"""Tests for sipcluster.sip.grammar."""

import pytest

from sipcluster.sip.errors import ParseError
from sipcluster.sip.grammar import (
    format_params, is_token, parse_params, quote, split_commas, unquote)


def test_is_token():
    assert is_token("INVITE")
    assert is_token("z9hG4bK-1.2!%*_+`'~")
    assert not is_token("")
    assert not is_token("a b")
    assert not is_token("a:b")
    assert not is_token("é")


def test_split_commas_plain():
    assert split_commas("a, b ,c") == ["a", "b", "c"]
    assert split_commas(" single ") == ["single"]
    assert split_commas("a,,b") == ["a", "b"]


def test_split_commas_respects_quotes_and_angle_brackets():
    value = '"Doe, John" <sip:j@x;a=1?h=1,2>;q=0.5, <sip:k@y>'
    assert split_commas(value) == ['"Doe, John" <sip:j@x;a=1?h=1,2>;q=0.5', "<sip:k@y>"]


def test_split_commas_escaped_quote():
    assert split_commas(r'"a\", b" <sip:a@b>, <sip:c@d>') == [r'"a\", b" <sip:a@b>', "<sip:c@d>"]


@pytest.mark.parametrize("bad", ['"unterminated, x', "<sip:a@b, c"])
def test_split_commas_unterminated(bad):
    with pytest.raises(ParseError):
        split_commas(bad)


def test_parse_params_order_case_and_flags():
    params = parse_params('Branch=z9hG4bK1;RPORT;received=1.2.3.4;x="a;b"')
    assert list(params) == ["branch", "rport", "received", "x"]
    assert params["rport"] is None
    assert params["x"] == '"a;b"'
    assert format_params(params) == ';branch=z9hG4bK1;rport;received=1.2.3.4;x="a;b"'


@pytest.mark.parametrize("bad", [";", "a=", "=b", "a b=c", 'x="open'])
def test_parse_params_rejects(bad):
    with pytest.raises(ParseError):
        parse_params(bad)


def test_quote_roundtrip():
    for text in ['plain', 'with "quotes"', 'back\\slash']:
        assert unquote(quote(text)) == text
