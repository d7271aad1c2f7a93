# -*- test-case-name: tests.test_sip_via -*-
"""
The Via header (RFC 3261 20.42, 18.2.1) with the received and rport
parameters of RFC 3581, and CSeq (RFC 3261 20.16).
"""

import re

try:
    import cython
except ImportError:  # pure Python without Cython: its decorators do nothing
    from sipcluster.compiled import pure_cython as cython

from sipcluster.sip.errors import ParseError
from sipcluster.sip.grammar import (
    format_params, is_token, params_of, recall, remember, split_semicolons)
from sipcluster.sip.uri import format_hostport, split_hostport

# RFC 3261 8.1.1.7: a branch starting with this was built by an RFC 3261
# element and is unique across space and time.
MAGIC_COOKIE = "z9hG4bK"
_COLON_LWS = re.compile(r"[ \t]*:[ \t]*")
_TRANSPORTS = frozenset(["UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "udp", "tcp", "tls", "sctp", "ws", "wss"])


# Vias parsed before, by their text.  A Via is a value (never changed in
# place: with_params makes a new one), and each one is read again by the
# responses of its transaction (our own on top, the sender's under it).
# Bounded: emptied when full.
_VIAS = {}
_VIAS_SIZE = 4096
# CSeqs the same way (a value too: nothing sets its number or method).
_CSEQS = {}
_CSEQS_SIZE = 4096


# In the compiled build (the .pxd beside this file) these classes are
# extension types the cyclic collector does not track (no_gc): their
# instances hold strings, numbers and other such values only, so they can
# be in no reference cycle, and a stateful proxy keeps thousands of them
# alive for 32 seconds (the collector visited each one again and again).
@cython.no_gc
@cython.cclass
class Via:
    """
    One Via value.

    @ivar transport: the transport, upper-cased (UDP, TCP, TLS, SCTP, WS...).
    @ivar host: the sent-by host as written.
    @ivar port: the sent-by port, or None.
    @ivar params: ordered dict of lower-cased parameter names to values.
    """

    __slots__ = ("protocol", "transport", "host", "port", "params", "_text")

    def __init__(self, transport, host, port=None, params=None,
                 protocol="SIP/2.0", _text=None):
        self.protocol = protocol
        self.transport = transport
        self.host = host
        self.port = port
        self.params = params if params is not None else {}
        self._text = _text

    @classmethod
    def parse(cls, text):
        """
        Parse one Via value.

        @raise ParseError: on a malformed value.
        """
        if cls is not Via:
            return cls._parse(text)  # a subclass: its own, not shared
        return parse_via(text)

    @classmethod
    def _parse(cls, text):
        return _parse_via_text(cls, text)

    def __str__(self):
        if self._text is None:
            self._text = "%s/%s %s%s" % (
                self.protocol, self.transport,
                format_hostport(self.host, self.port), format_params(self.params))
        return self._text

    def __repr__(self):
        return "<Via %s>" % self

    @property
    def branch(self):
        return self.params.get("branch")

    @property
    def received(self):
        return self.params.get("received")

    @property
    def maddr(self):
        return self.params.get("maddr")

    @property
    def has_rport(self):
        """Whether the rport parameter is present (RFC 3581 3)."""
        return "rport" in self.params

    @property
    def rport(self):
        """The rport value as an int, or None when absent or empty."""
        return self._rport()

    def _rport(self):
        # (The property's body: a C call where the Via is typed, compiled.)
        value = self.params.get("rport")
        if value is None:
            return None
        if not value.isdigit() or not value.isascii() or int(value) > 65535:
            raise ParseError("Bad rport")
        return int(value)

    @property
    def ttl(self):
        value = self.params.get("ttl")
        if value is None:
            return None
        if not value.isdigit() or int(value) > 255:
            raise ParseError("Bad Via ttl")
        return int(value)

    @property
    def sent_by(self):
        """(host lower-cased, port or None): compared for transaction matching."""
        return self._sent_by()

    def _sent_by(self):
        return (self.host.lower(), self.port)

    def with_params(self, **params):
        merged = dict(self.params)
        merged.update(params)
        return Via(self.transport, self.host, self.port, merged, self.protocol)


def _parse_via_text(cls, text):
    """
    L{Via._parse}: a module function so that the compiled build types its
    strings (their methods then C calls, not Python method calls).
    """
    parts = split_semicolons(text)
    head = parts[0]
    if head.startswith("SIP/2.0/"):
        # The common spelling, with no LWS inside sent-protocol.
        fields = head[8:].split(None, 1)
        if len(fields) == 2 and fields[0] in _TRANSPORTS:
            transport, sent_by = fields
            sent_by = sent_by.strip()
            if " " not in sent_by and "\t" not in sent_by:
                host, port = split_hostport(sent_by)
                params = _via_params(parts)
                if "branch" in params and params["branch"] is None:
                    raise ParseError("Via branch without value")
                return cls(transport.upper(), host, port, params, "SIP/2.0", text)
    slash = head.rfind("/")
    if slash == -1:
        raise ParseError("Bad Via sent-protocol")
    proto = head[:slash].replace(" ", "").replace("\t", "")
    name, sep, version = proto.partition("/")
    if not sep or not is_token(name) or not is_token(version):
        raise ParseError("Bad Via sent-protocol")
    rest = head[slash + 1 :].lstrip()
    fields = rest.split(None, 1)
    if len(fields) != 2:
        raise ParseError("Bad Via sent-by")
    transport, sent_by = fields
    if not is_token(transport):
        raise ParseError("Bad Via transport")
    sent_by = sent_by.strip()
    if " " in sent_by or "\t" in sent_by:
        # RFC 3261 25.1 allows LWS around the colon of sent-by (COLON =
        # SWS ":" SWS), nowhere else: "h1 h2" is no host.
        sent_by = _COLON_LWS.sub(":", sent_by)
        if " " in sent_by or "\t" in sent_by:
            raise ParseError("Bad Via sent-by")
    host, port = split_hostport(sent_by)
    params = _via_params(parts)
    if "branch" in params and params["branch"] is None:
        raise ParseError("Via branch without value")
    return cls(transport.upper(), host, port, params,
               "%s/%s" % (name.upper(), version), text)


def share_via(via, text):
    """
    Share C{via}, made here rather than parsed, with the Vias parsed by
    text under C{text}, its text: the responses to a request we send carry
    it back on top as written, and find it parsed.
    """
    if type(via) is Via:
        remember(_VIAS, text, via, _VIAS_SIZE)


def parse_via(text):
    """
    L{Via.parse} of the Via class itself, remembered by its text: a
    function so that the message layer calls it in C (compiled).
    """
    return recall(_VIAS, text, Via, _VIAS_SIZE)


def parse_cseq(text):
    """L{CSeq.parse} of the CSeq class itself, as L{parse_via}."""
    return recall(_CSEQS, text, CSeq, _CSEQS_SIZE)


def _via_params(parts):
    """The parameters of a Via split at its semicolons (C{parts[0]} its sent-by)."""
    if len(parts) == 1 or (len(parts) == 2 and not parts[1]):
        return {}  # none, or nothing after the semicolon
    return params_of(parts[1:], "Via parameter")


@cython.no_gc
@cython.cclass
class CSeq:
    """
    The CSeq header: a sequence number and a method (RFC 3261 20.16).
    """

    __slots__ = ("number", "method")

    def __init__(self, number, method):
        self.number = number
        self.method = method

    @classmethod
    def parse(cls, text):
        """
        Parse a CSeq value (a call's requests and responses repeat a few:
        shared by text, as Vias are).

        @raise ParseError: on a malformed value.
        """
        if cls is not CSeq:
            return cls._parse(text)  # a subclass: its own, not shared
        return parse_cseq(text)

    @classmethod
    def _parse(cls, text):
        fields = text.split()
        if len(fields) != 2:
            raise ParseError("Bad CSeq")
        number, method = fields
        # RFC 3261 8.1.1.5: the sequence number MUST be less than 2**31.
        if not number.isdigit() or not number.isascii() or len(number) > 10 or int(number) >= 2 ** 31:
            raise ParseError("Bad CSeq number")
        if not is_token(method):
            raise ParseError("Bad CSeq method")
        return cls(int(number), method)

    def __str__(self):
        return "%d %s" % (self.number, self.method)

    def __repr__(self):
        return "<CSeq %s>" % self

    def __eq__(self, other):
        if not isinstance(other, CSeq):
            return NotImplemented
        return (self.number, self.method) == (other.number, other.method)

    def __hash__(self):
        return hash((self.number, self.method))
