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


def test_a_folded_header_line_before_content_length_is_passed_over():
    # RFC 3261 7.3.1: a header may continue on lines starting with white
    # space; such a line has no colon of its own, whatever its words.
    msg = MSG.replace(b"\r\nContent-Length",
                      b"\r\nSubject: about the\r\n content-length\r\nContent-Length", 1)
    assert msg != MSG
    assert StreamFramer().feed(msg + MSG) == [msg, MSG]


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


# -- edges found by mutation testing (bench/MUTATION.md) ------------------------

LF_MSG = b"OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\nl: 5\n\nab\n\nc"


def test_bare_lf_messages_are_framed_each_at_its_own_empty_line():
    # The body itself holds an empty line; the second message must not
    # decide where the first one ends.
    assert StreamFramer().feed(LF_MSG + LF_MSG) == [LF_MSG, LF_MSG]


def test_the_earlier_of_crlf_and_lf_header_ends_wins():
    assert StreamFramer().feed(LF_MSG + MSG) == [LF_MSG, MSG]
    assert StreamFramer().feed(MSG + LF_MSG) == [MSG, LF_MSG]


@pytest.mark.parametrize("junk", [b"\n", b"\r", b"\n\n\n", b"\r\r"])
def test_stray_cr_or_lf_before_a_message_is_dropped(junk):
    framer = StreamFramer()
    assert framer.feed(junk + MSG) == [MSG]
    assert framer.buffered == 0


def test_stray_lf_alone_is_dropped_at_once():
    framer = StreamFramer()
    assert framer.feed(b"\n") == []
    assert framer.buffered == 0


def test_lone_cr_waits_for_what_follows():
    framer = StreamFramer()
    assert framer.feed(MSG + b"\r") == [MSG]
    assert framer.buffered == 1
    assert framer.feed(b"\n\r\n") == [PING]


def test_three_bytes_of_a_ping_wait_for_the_fourth():
    framer = StreamFramer()
    assert framer.feed(MSG + b"\r\n\r") == [MSG]
    assert framer.buffered == 3
    assert framer.feed(b"\n") == [PING]
    assert framer.feed(b"\r\n\rX") == [PONG]  # not a ping after all


def test_one_pong_expected_then_crlf_waits_again():
    framer = StreamFramer()
    framer.expect_pong = True
    assert framer.feed(b"\r\n") == [PONG]
    assert framer.feed(b"\r\n") == []  # no pong expected: maybe half a ping
    assert framer.feed(b"\r\n") == [PING]


def test_content_length_of_nine_digits_is_accepted_ten_refused():
    framer = StreamFramer()
    msg = MSG.replace(b"Content-Length: 4", b"Content-Length: 000000004")
    assert framer.feed(msg) == [msg]
    with pytest.raises(ParseError, match="^Bad Content-Length$"):
        framer.feed(MSG.replace(b"Content-Length: 4", b"Content-Length: 0000000004"))


def test_content_length_value_with_a_colon_is_bad():
    msg = MSG.replace(b"Content-Length: 4", b"Content-Length: 4:2\r\nContent-Length: 4")
    with pytest.raises(ParseError, match="^Bad Content-Length$"):
        StreamFramer().feed(msg)


def test_missing_content_length_names_the_fault():
    with pytest.raises(ParseError, match="^Missing Content-Length on a stream transport$"):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n")


def test_size_limit_is_inclusive():
    # A message of exactly max_size bytes passes; one byte more does not.
    framer = StreamFramer(max_size=len(MSG))
    assert framer.feed(MSG) == [MSG]
    with pytest.raises(MessageTooLarge, match="^Message larger than %d bytes$" % (len(MSG) - 1)):
        StreamFramer(max_size=len(MSG) - 1).feed(MSG)
    framer = StreamFramer(max_size=100)
    assert framer.feed(b"X" * 100) == []  # a header section still growing
    with pytest.raises(MessageTooLarge, match="^Header section larger than 100 bytes$"):
        framer.feed(b"X")


def test_default_size_limit_is_65535():
    head = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: %d\r\n\r\n"
    size = 65535 - len(head % 60000)
    msg = head % size + b"x" * size
    assert len(msg) == 65535
    assert StreamFramer().feed(msg) == [msg]
    with pytest.raises(MessageTooLarge):
        StreamFramer().feed(head % (size + 1) + b"x" * (size + 1))
