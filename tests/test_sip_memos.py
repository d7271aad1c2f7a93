"""
The parsed values the message layer remembers by their text (parse_uri,
Address.parse, Via.parse, CSeq.parse): one parse per text, shared by every
message naming it, bounded, and never a fault remembered.
"""

import pytest

from sipcluster.sip import address, uri, via
from sipcluster.sip.address import Address
from sipcluster.sip.errors import ParseError
from sipcluster.sip.via import CSeq, Via

# (module, name of its memo, parse function, a good text, another, a bad one)
MEMOS = [
    (uri, "_URIS", uri.parse_uri, "sip:bob@example.com;transport=tcp", "tel:+1555",
     "sip:bob@exa mple.com"),
    (address, "_ADDRESSES", Address.parse, '"Bob" <sip:bob@example.com>;tag=1',
     "<sip:alice@example.com>", "<sip:bob@example.com"),
    (via, "_VIAS", Via.parse, "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport",
     "SIP/2.0/TCP [2001:db8::1];branch=z9hG4bK2", "SIP/2.0/UDP"),
    (via, "_CSEQS", CSeq.parse, "1 INVITE", "2 BYE", "1 INVITE x"),
]
IDS = ["uri", "address", "via", "cseq"]


@pytest.mark.parametrize("module, name, parse, text, other, bad", MEMOS, ids=IDS)
def test_a_text_is_parsed_once_and_its_value_shared(module, name, parse, text, other, bad):
    first = parse(text)
    assert parse(text) is first
    assert str(first) == text
    second = parse(other)
    assert second is not first and str(second) == other
    assert getattr(module, name) == {text: first, other: second}


@pytest.mark.parametrize("module, name, parse, text, other, bad", MEMOS, ids=IDS)
def test_a_fault_is_never_remembered(module, name, parse, text, other, bad):
    for _ in range(2):
        with pytest.raises(ParseError):
            parse(bad)
    assert getattr(module, name) == {}


@pytest.mark.parametrize("module, name, parse, text, other, bad", MEMOS, ids=IDS)
def test_the_memo_is_emptied_when_full(monkeypatch, module, name, parse, text, other, bad):
    monkeypatch.setattr(module, name + "_SIZE", 1)
    first = parse(text)
    assert getattr(module, name) == {text: first}
    second = parse(other)
    assert getattr(module, name) == {other: second}
    third = parse(text)
    assert third is not first and str(third) == text
    assert getattr(module, name) == {text: third}


@pytest.mark.parametrize("cls, text", [
    (Via, "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1"),
    (Address, "<sip:bob@example.com>;tag=1"),
    (CSeq, "7 OPTIONS"),
], ids=["via", "address", "cseq"])
def test_a_subclass_gets_its_own_instances(cls, text):
    class Mine(cls):
        pass
    shared = cls.parse(text)
    mine = Mine.parse(text)
    assert type(mine) is Mine and mine is not shared
    assert Mine.parse(text) is not mine
    assert cls.parse(text) is shared


def test_a_via_pushed_on_a_request_is_found_parsed_when_its_response_brings_it_back():
    from sipcluster.sip.message import Request, make_response, parse_message
    request = Request("OPTIONS", "sip:a@b", [("from", "From: <sip:x@y>;tag=1"), ("to", "To: <sip:a@b>"),
                                             ("call-id", "Call-ID: c"), ("cseq", "CSeq: 1 OPTIONS")])
    ours = Via("UDP", "192.0.2.9", 5060, {"branch": "z9hG4bKours", "rport": None})
    request.push_via(ours)
    response = parse_message(make_response(request, 200).to_bytes())
    assert response.top_via is ours
    assert Via.parse("SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKours;rport") is ours


def test_a_via_of_a_subclass_is_not_shared():
    class Mine(Via):
        pass

    from sipcluster.sip.message import Request
    mine = Mine("UDP", "192.0.2.9", 5060, {"branch": "z9hG4bKmine"})
    Request("OPTIONS", "sip:a@b").push_via(mine)
    assert via._VIAS == {}
    assert type(Via.parse(str(mine))) is Via


@pytest.mark.parametrize("module, cls, function, text, bad", [
    (via, Via, "parse_via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", "SIP/2.0/UDP"),
    (via, CSeq, "parse_cseq", "7 OPTIONS", "1 INVITE x"),
    (address, Address, "parse_address", "<sip:bob@example.com>;tag=1", "<sip:bob@example.com"),
])
def test_the_module_parse_functions_are_the_class_parses(module, cls, function, text, bad):
    """What the message layer calls (a C call, compiled) is the class's parse:
    one memo, one value per text, faults raised the same."""
    parse = getattr(module, function)
    first = parse(text)
    assert type(first) is cls and cls.parse(text) is first and parse(text) is first
    with pytest.raises(ParseError):
        parse(bad)
