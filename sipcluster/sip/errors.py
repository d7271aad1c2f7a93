# -*- test-case-name: tests.test_sip_message -*-
"""
Typed parse errors.  Each carries the response status a server answers a
faulty request with, so the layer that catches it needs no knowledge of why
parsing failed.
"""


def quoted(text, limit=40):
    """
    C{text} (a piece of a faulty message) fit for a reason phrase, which
    must be UTF-8 TEXT (RFC 3261 25.1): quoted, cut at C{limit}, with every
    byte that was not valid UTF-8 and every control character shown as
    "?" rather than as a Python escape.
    """
    text = text[:limit]
    return '"%s"' % "".join(
        c if c.isprintable() and not "\udc80" <= c <= "\udcff" else "?" for c in text)


class SIPError(Exception):
    """
    A message, or part of one, is not acceptable.

    @ivar status: the status code a server answers a request with (400 by
        default).
    @ivar reason: a reason phrase naming the fault; used verbatim in the
        response so the sender can see what was wrong.
    """

    status = 400
    # The request or response as far as it could be read, when the start
    # line and headers were readable: enough to send an error response.
    message = None

    def __init__(self, reason, status=None):
        Exception.__init__(self, reason)
        self.reason = reason
        if status is not None:
            self.status = status


class ParseError(SIPError):
    """Syntax error: 400 Bad Request (RFC 3261 21.4.1)."""

    status = 400


class VersionNotSupported(SIPError):
    """Another protocol version than SIP/2.0: 505 (RFC 3261 8.1.1, 21.5.6)."""

    status = 505


class UnsupportedURIScheme(SIPError):
    """A Request-URI scheme the server does not handle: 416 (RFC 3261 21.4.14)."""

    status = 416


class MessageTooLarge(SIPError):
    """A message over the configured limit: 513 (RFC 3261 21.5.7)."""

    status = 513
