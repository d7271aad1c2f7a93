"""Tests for sipcluster.sip.grammar."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipcluster.sip.errors import ParseError
from sipcluster.sip.grammar import (
    format_params, is_token, parse_params, quote, split_commas, split_first, unquote)


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


def test_split_commas_drops_empty_parts_between_quotes_and_brackets_too():
    assert split_commas('<sip:a@x>, ,"B" <sip:b@y>,') == ["<sip:a@x>", '"B" <sip:b@y>']


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


# -- edges found by mutation testing (bench/MUTATION.md) ------------------------


def test_split_commas_empty_and_blank():
    assert split_commas("") == []
    assert split_commas("   ") == []
    assert split_commas(' "" ') == ['""']


def test_split_commas_slow_path_without_spaces():
    assert split_commas("<sip:a@b>,<sip:c@d>,x") == ["<sip:a@b>", "<sip:c@d>", "x"]
    assert split_commas('"a,b",c') == ['"a,b"', "c"]


def test_split_commas_escapes_inside_quotes():
    assert split_commas(r'"x\\", <sip:a@b>') == [r'"x\\"', "<sip:a@b>"]
    assert split_commas(r'"\"", y') == [r'"\""', "y"]


@pytest.mark.parametrize("bad, reason", [
    ('"unterminated, x', "Unterminated quoted string"),
    ("<sip:a@b, c", "Unterminated <"),
])
def test_split_commas_unterminated_names_the_fault(bad, reason):
    with pytest.raises(ParseError, match="^%s$" % reason):
        split_commas(bad)


def test_unquote_edges():
    assert unquote('""') == ""
    assert unquote('"') == '"'
    assert unquote('ab"') == 'ab"'
    assert unquote('"ab') == '"ab'
    assert unquote(r'"a\"b"') == 'a"b'
    assert unquote(r'"a\\b\"c"') == 'a\\b"c'
    assert unquote('"a\\"') == "a\\"  # a lone trailing backslash is kept


def test_quote_escapes():
    assert quote('say "hi"') == r'"say \"hi\""'
    assert quote("a\\b") == r'"a\\b"'


def test_split_semicolons_with_quotes():
    from sipcluster.sip.grammar import split_semicolons
    assert split_semicolons('a;b="x;y";c') == ["a", 'b="x;y"', "c"]
    assert split_semicolons(';"a"') == ["", '"a"']
    assert split_semicolons(r'"a\";b";c') == [r'"a\";b"', "c"]
    assert split_semicolons(r'"\\";x') == [r'"\\"', "x"]
    assert split_semicolons(r'x="\a;b";y') == [r'x="\a;b"', "y"]
    with pytest.raises(ParseError) as e:
        split_semicolons('x;"open')
    assert e.value.reason == "Unterminated quoted string"


def test_parse_params_fault_names_the_parameter_cut_to_40():
    with pytest.raises(ParseError) as e:
        parse_params("=x")
    assert e.value.reason == 'Bad parameter name ""'
    with pytest.raises(ParseError) as e:
        parse_params("a b" * 20)
    assert e.value.reason == 'Bad parameter name "%s"' % ("a b" * 20)[:40]


def test_every_token_character_at_once():
    from sipcluster.sip.grammar import TOKEN_CHARS
    assert is_token("".join(sorted(TOKEN_CHARS)))


def test_name_caches_stay_bounded():
    # Tokens and header names are remembered as they are seen; a stream of
    # random names must not grow those tables without limit.
    import uuid
    from sipcluster.sip import grammar, headers
    for _ in range(4200):
        name = "x" + uuid.uuid4().hex[:20]
        assert is_token(name)
        headers.canonical(name)
        headers.spelling(name)
    assert len(grammar._KNOWN_TOKENS) <= 4096
    assert len(headers._KEY_CACHE) <= headers._KEY_CACHE_LIMIT == 4096
    assert len(headers._SPECIAL_SPELLING) <= 4096


def test_split_first_takes_the_first_element_and_leaves_the_rest_uncut():
    value = "SIP/2.0/UDP p;branch=z9hG4bK1 , SIP/2.0/UDP a:5080;branch=z9hG4bK2,x ,y"
    assert split_first(value) == (
        "SIP/2.0/UDP p;branch=z9hG4bK1", "SIP/2.0/UDP a:5080;branch=z9hG4bK2,x ,y")
    assert split_first(" one ") == ("one", "")
    assert split_first("one,") == ("one", "")
    # Empty elements dropped, before the first and after it.
    assert split_first(" , ,a, , b,, ") == ("a", "b")
    assert split_first("a, ,") == ("a", "")
    assert split_first("a,\xa0,") == ("a", "")
    assert split_first("a,\x0c, b ,\u3000,") == ("a", "b")
    assert split_first(", ,") == (None, "")
    assert split_first("") == (None, "")


def test_split_first_splits_and_checks_the_whole_value_when_quoted():
    assert split_first('"a, b" <sip:x>, <sip:y,z>,') == ('"a, b" <sip:x>', "<sip:y,z>")
    with pytest.raises(ParseError):
        split_first('a, "b')


# White space str.strip takes beyond spaces and tabs included: pop_first
# deletes a line when nothing follows its first element, and a rest of
# "\xa0" would have kept a Via line with no value.
_ELEMENT = st.text(alphabet="ab ,;=\t\x0b\x0c\x1c\x85\xa0\u3000", max_size=12)


@given(st.lists(_ELEMENT, max_size=5).map(",".join))
def test_split_first_agrees_with_split_commas(value):
    # The first element is split_commas's first; the rest splits into the
    # others (spacing inside it is kept as written), and is empty exactly
    # when there are no others.
    parts = split_commas(value)
    first, rest = split_first(value)
    assert first == (parts[0] if parts else None)
    assert split_commas(rest) == parts[1:]
    assert bool(rest) == (len(parts) > 1)
    assert rest == rest.strip()
    assert rest[:1] != "," and rest[-1:] != ","
