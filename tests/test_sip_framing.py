"""Tests for sipcluster.sip.framing."""

import pytest

from sipcluster.sip.errors import MessageTooLarge, ParseError
from sipcluster.sip.framing import PING, PONG, StreamFramer

MSG = (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n"
       b"Content-Length: 4\r\n\r\nbody")


def test_partial_then_complete():
    framer = StreamFramer()
    assert framer.feed(MSG[:10]) == []
    assert framer.feed(MSG[10:-1]) == []
    assert framer.buffered == len(MSG) - 1
    assert framer.feed(MSG[-1:]) == [MSG]
    assert framer.buffered == 0


def test_pipelined_and_byte_by_byte():
    framer = StreamFramer()
    assert framer.feed(MSG + MSG + MSG[:5]) == [MSG, MSG]
    assert framer.feed(MSG[5:]) == [MSG]
    out = []
    for i in range(len(MSG) * 2):
        out.extend(framer.feed((MSG + MSG)[i:i + 1]))
    assert out == [MSG, MSG]


def test_compact_content_length():
    msg = MSG.replace(b"Content-Length", b"l")
    assert StreamFramer().feed(msg) == [msg]


def test_keepalive_ping_and_pong():
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == [PING]
    assert framer.feed(b"\r\n") == []  # could be half a ping
    assert framer.feed(b"\r\n" + MSG) == [PING, MSG]
    framer.expect_pong = True
    assert framer.feed(b"\r\n") == [PONG]
    assert framer.feed(b"\r\n" + MSG) == [PONG, MSG]


def test_missing_content_length_is_fatal():
    with pytest.raises(ParseError):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n")


def test_bad_content_length_is_fatal():
    with pytest.raises(ParseError):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n")


def test_too_large():
    framer = StreamFramer(max_size=100)
    with pytest.raises(MessageTooLarge):
        framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 500\r\n\r\n")
    with pytest.raises(MessageTooLarge):
        StreamFramer(max_size=100).feed(b"X" * 101)
