# -*- test-case-name: tests.test_sip_framing -*-
"""
Cutting a byte stream (TCP, TLS) into SIP messages (RFC 3261 18.3): the
header section ends at the first empty line and Content-Length, mandatory on
streams, gives the body size.  Also tells apart the RFC 5626 4.4.1
keepalives: a double CRLF "ping" and a single CRLF "pong".

The framer returns raw message bytes; parsing them is the message layer's
job.  Any error it raises means the stream can no longer be framed, and the
connection must be closed.
"""

from sipcluster.sip.errors import MessageTooLarge, ParseError

PING = object()
PONG = object()


def _content_length(head):
    """Content-Length from raw header bytes, or None."""
    text = head.decode("latin-1")
    for line in text.split("\n")[1:]:
        name, colon, value = line.partition(":")
        if colon:
            name = name.strip().lower()
            if name == "content-length" or name == "l":
                value = value.strip()
                if not value.isdigit() or len(value) > 9:
                    raise ParseError("Bad Content-Length")
                return int(value)
    return None


class StreamFramer:
    """
    Accumulates stream data and yields complete messages.

    @ivar max_size: the largest message accepted, in bytes.
    @ivar expect_pong: whether a lone CRLF is a pong we are waiting for
        (we sent a ping) rather than possibly the start of a ping.
    """

    def __init__(self, max_size=65535):
        self.max_size = max_size
        self.expect_pong = False
        self._buffer = bytearray()

    @property
    def buffered(self):
        """How many bytes are waiting for the rest of their message."""
        return len(self._buffer)

    def feed(self, data):
        """
        Add C{data}; return a list whose items are message bytes, L{PING}
        or L{PONG}, in stream order.

        @raise ParseError: the stream has no valid framing (missing or bad
            Content-Length).
        @raise MessageTooLarge: a message exceeds C{max_size}.
        """
        buf = self._buffer
        buf += data
        out = []
        while buf:
            if buf[0] in (13, 10):
                if buf[:4] == b"\r\n\r\n":
                    del buf[:4]
                    out.append(PING)
                    continue
                if buf[:2] == b"\r\n":
                    if len(buf) == 2 and not self.expect_pong:
                        break  # maybe the first half of a ping
                    if len(buf) == 3 and buf[2] == 13:
                        break
                    del buf[:2]
                    self.expect_pong = False
                    out.append(PONG)
                    continue
                if buf[:1] == b"\n":
                    del buf[:1]  # a stray LF between messages
                    continue
                if len(buf) == 1:
                    break
                del buf[:1]
                continue
            end = buf.find(b"\r\n\r\n")
            sep = 4
            lf_end = buf.find(b"\n\n")
            if lf_end != -1 and (end == -1 or lf_end < end):
                end, sep = lf_end, 2
            if end == -1:
                if len(buf) > self.max_size:
                    raise MessageTooLarge("Header section larger than %d bytes" % self.max_size)
                break
            length = _content_length(bytes(buf[:end]))
            if length is None:
                raise ParseError("Missing Content-Length on a stream transport")
            total = end + sep + length
            if total > self.max_size:
                raise MessageTooLarge("Message larger than %d bytes" % self.max_size)
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out
