# -*- test-case-name: tests.test_sip_address -*-
"""
name-addr and addr-spec with header parameters (RFC 3261 20.10, 20.20,
25.1): the value of From, To, Contact, Route, Record-Route, Path and the
like.
"""

try:
    import cython
except ImportError:  # pure Python without Cython: its decorators do nothing
    from sipcluster.compiled import pure_cython as cython

from sipcluster.sip.errors import ParseError
from sipcluster.sip.grammar import (
    format_params, parse_params, quote, recall, unquote)
from sipcluster.sip.uri import parse_uri


# Addresses parsed before, by their text.  An Address is a value (never
# changed in place: replace and with_params make new ones), so the messages
# of a call share the parse of the From, To and Route values they repeat.
# Bounded: emptied when full.
_ADDRESSES = {}
_ADDRESSES_SIZE = 4096


# In the compiled build (the .pxd beside this file) these classes are
# extension types the cyclic collector does not track (no_gc): their
# instances hold strings, numbers and other such values only, so they can
# be in no reference cycle, and a stateful proxy keeps thousands of them
# alive for 32 seconds (the collector visited each one again and again).
@cython.no_gc
@cython.cclass
class Address:
    """
    A URI with an optional display name and header parameters.

    @ivar display: the display name as written (quotes kept), or None.
    @ivar uri: the parsed URI (L{SipURI}, L{TelURI} or L{AbsoluteURI}).
    @ivar params: ordered dict of lower-cased header parameter names to
        values (None for a flag).
    """

    __slots__ = ("display", "_uri", "_uri_text", "params", "_text")

    def __init__(self, uri, display=None, params=None, _text=None):
        if isinstance(uri, str):
            # Parsed on first use: a proxy reading a To tag never needs it.
            self._uri, self._uri_text = None, uri
        else:
            self._uri, self._uri_text = uri, None
        self.display = display
        self.params = params if params is not None else {}
        self._text = _text

    @property
    def uri(self):
        if self._uri is None:
            self._uri = parse_uri(self._uri_text)
        return self._uri

    @property
    def uri_text(self):
        """The URI as written (without parsing it when it was not yet)."""
        return self._uri_text if self._uri_text is not None else str(self._uri)

    @classmethod
    def parse(cls, text):
        """
        Parse a name-addr or addr-spec followed by parameters.

        @raise ParseError: on a malformed value.
        """
        if cls is not Address:
            return cls._parse(text)  # a subclass: its own, not shared
        return parse_address(text)

    @classmethod
    def _parse(cls, text):
        return _parse_address_text(cls, text)

    def __str__(self):
        if self._text is None:
            if self.display:
                head = "%s <%s>" % (self.display, self.uri)
            else:
                head = "<%s>" % (self.uri,)
            self._text = head + format_params(self.params)
        return self._text

    def __repr__(self):
        return "<Address %s>" % self

    @property
    def display_name(self):
        """The display name without quotes or escapes, or None."""
        return unquote(self.display) if self.display else None

    @property
    def tag(self):
        return self.params.get("tag")

    def param(self, name, default=None):
        return self.params.get(name, default)

    def replace(self, **changes):
        values = {"uri": self.uri, "display": self.display, "params": dict(self.params)}
        values.update(changes)
        return Address(**values)

    def with_params(self, **params):
        merged = dict(self.params)
        merged.update(params)
        return self.replace(params=merged)

    def without_params(self, *names):
        return self.replace(params={k: v for k, v in self.params.items() if k not in names})

    # Contact (RFC 3261 20.10)

    @property
    def q(self):
        """The q-value as a float in [0, 1] (1.0 when absent)."""
        value = self.params.get("q")
        if value is None:
            return 1.0
        try:
            q = float(value)
        except ValueError:
            raise ParseError("Bad q-value") from None
        if not 0.0 <= q <= 1.0:
            raise ParseError("q-value out of range")
        return q

    @property
    def expires(self):
        """The expires parameter as an int, or None when absent."""
        value = self.params.get("expires")
        if value is None:
            return None
        value = unquote(value)
        if not value.isdigit() or not value.isascii():
            raise ParseError("Bad expires parameter")
        return int(value)


def _parse_address_text(cls, text):
    """
    L{Address._parse}: a module function so that the compiled build types
    its strings and indexes (their methods and characters then read in C).
    """
    text = text.strip()
    if not text:
        raise ParseError("Empty address")
    display = None
    if text[0] == '"':
        i = 1
        n = len(text)
        while i < n:
            c = text[i]
            if c == "\\":
                i += 2
                continue
            if c == '"':
                break
            i += 1
        if i >= n:
            raise ParseError("Unterminated display name")
        display = text[: i + 1]
        rest = text[i + 1 :].lstrip()
        if not rest.startswith("<"):
            raise ParseError("Display name without <URI>")
        lt = 0
        rest_offset = rest
    else:
        lt = text.find("<")
        rest_offset = text
        if lt > 0:
            display = text[:lt].strip() or None
            if display and ('"' in display or ">" in display):
                raise ParseError("Bad display name")
    if lt != -1:
        gt = rest_offset.find(">", lt)
        if gt == -1:
            raise ParseError("Unterminated <URI>")
        uri_text = rest_offset[lt + 1 : gt].strip()
        tail = rest_offset[gt + 1 :].strip()
        if tail and tail[0] != ";":
            raise ParseError("Junk after <URI>")
        paramtext = tail[1:]
        if tail and not paramtext.strip():
            raise ParseError("Empty header parameter")
    else:
        # addr-spec: parameters after the URI belong to the header
        # (RFC 3261 20.10), so the URI itself stops at the first ";".
        uri_text, semi, paramtext = text.partition(";")
        uri_text = uri_text.strip()
        if "," in uri_text or "?" in uri_text or " " in uri_text:
            raise ParseError("addr-spec needs <> around this URI")
        if semi and not paramtext.strip():
            raise ParseError("Empty header parameter")
    if not uri_text or ":" not in uri_text:
        raise ParseError("Bad URI in address")
    params = parse_params(paramtext, "header parameter") if paramtext else {}
    return cls(uri_text, display, params, text)


def parse_address(text):
    """
    L{Address.parse} of the Address class itself, remembered by its text:
    a function so that the message layer calls it in C (compiled).
    """
    return recall(_ADDRESSES, text, Address, _ADDRESSES_SIZE)


def make_display(name):
    """A display name quoted for use in an L{Address}."""
    return quote(name) if name is not None else None
