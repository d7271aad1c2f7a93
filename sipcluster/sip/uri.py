# -*- test-case-name: tests.test_sip_uri -*-
"""
SIP, SIPS and tel URIs (RFC 3261 19.1, RFC 3966), and an opaque holder for
any other absolute URI so that, for example, a Contact with an http: URI
still parses.

URIs are values: parsed once, never mutated; L{SipURI.replace} makes a
changed copy.  An unchanged URI serializes to exactly the text it was parsed
from.
"""

import ipaddress
from urllib.parse import unquote as _pct_unquote

try:
    import cython
except ImportError:  # pure Python without Cython: its decorators do nothing
    from sipcluster.compiled import pure_cython as cython

from sipcluster.sip.errors import ParseError, quoted
from sipcluster.sip.grammar import format_params, parse_params, remember

_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789+-.")
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._")
_HEX = frozenset("0123456789abcdefABCDEF")
# RFC 3261 25.1: user = 1*( unreserved / escaped / user-unreserved )
_USER_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    "-_.!~*'()%&=+$,;?/"
)
_PASSWORD_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    "-_.!~*'()%&=+$,"
)
_TEL_CHARS = frozenset("0123456789abcdefABCDEF*#+-.()pwPW")

DEFAULT_PORTS = {"sip": 5060, "sips": 5061}

# Host names and IPv4 addresses found valid: every message names the same
# few hosts again and again (in Via, Contact, Route, Request-URIs), so a
# bounded number of them is remembered and checked with one lookup.
_KNOWN_HOSTS = set()
_KNOWN_HOSTS_SIZE = 4096


def _check_escapes(text, what):
    i = text.find("%")
    while i != -1:
        if not set(text[i + 1 : i + 3]) <= _HEX or len(text[i + 1 : i + 3]) != 2:
            raise ParseError("Bad %%-escape in URI %s" % what)
        i = text.find("%", i + 3)


def pct_decode(text):
    """Undo %-escapes (RFC 3261 19.1.4 compares URIs unescaped)."""
    if "%" not in text:
        return text
    return _pct_unquote(text, errors="surrogateescape")


def parse_host(text):
    """
    Validate a host (hostname, IPv4 address or IPv6 reference) and return it
    as written.

    @raise ParseError: when C{text} is not a host.
    """
    if text in _KNOWN_HOSTS:
        return text
    if not text:
        raise ParseError("Empty host")
    if text[0] == "[":
        if text[-1] != "]":
            raise ParseError("Bad IPv6 reference")
        try:
            ipaddress.IPv6Address(text[1:-1])
        except ValueError:
            raise ParseError("Bad IPv6 reference") from None
        return text
    if not set(text) <= _HOST_CHARS:
        raise ParseError("Bad host %s" % quoted(text, 60))
    if len(_KNOWN_HOSTS) < _KNOWN_HOSTS_SIZE:
        _KNOWN_HOSTS.add(text)
    return text


def split_hostport(text):
    """
    Split C{host[:port]} into C{(host, port)} with port an int or None.
    Remembered by its text: a sent-by (every Via a client sends) and the
    host:port of URIs come again with every message.

    @raise ParseError: on a bad host or port.
    """
    hostport = _HOSTPORTS.get(text)
    if hostport is not None:
        return hostport
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise ParseError("Bad IPv6 reference")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and rest[0] != ":":
            raise ParseError("Bad host:port")
        port = rest[1:] if rest else None
    else:
        host, colon, port = text.partition(":")
        if not colon:
            port = None
    host = parse_host(host)
    if port is not None:
        if not port.isdigit() or not port.isascii() or len(port) > 5 or int(port) > 65535:
            raise ParseError("Bad port %s" % quoted(port, 10))
        port = int(port)
    return remember(_HOSTPORTS, text, (host, port), _HOSTPORTS_SIZE)


# split_hostport's answers by text (bounded, as every memo: grammar.remember).
_HOSTPORTS = {}
_HOSTPORTS_SIZE = 4096


def format_hostport(host, port):
    """Join a host and an optional port, bracketing bare IPv6 addresses."""
    if ":" in host and not host.startswith("["):
        host = "[%s]" % host
    # (%s of the int port, as Response.start_line writes its status.)
    return host if port is None else "%s:%s" % (host, port)


# In the compiled build (the .pxd beside this file) these classes are
# extension types the cyclic collector does not track (no_gc): their
# instances hold strings, numbers and other such values only, so they can
# be in no reference cycle, and a stateful proxy keeps thousands of them
# alive for 32 seconds (the collector visited each one again and again).
@cython.no_gc
@cython.cclass
class SipURI:
    """
    A sip: or sips: URI (RFC 3261 19.1.1).

    @ivar scheme: C{"sip"} or C{"sips"}, lower-cased.
    @ivar user: the user part as written (still %-escaped), or None.
    @ivar password: as written, or None.
    @ivar host: as written (IPv6 references keep their brackets).
    @ivar port: an int, or None when absent.
    @ivar params: ordered dict of lower-cased parameter name to value (None
        for a parameter without value).
    @ivar headers: the C{?name=value&...} part as written, or "".
    """

    __slots__ = ("scheme", "user", "password", "host", "port", "params", "headers", "_text")

    def __init__(self, host, user=None, port=None, params=None, scheme="sip",
                 password=None, headers="", _text=None):
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = params if params is not None else {}
        self.headers = headers
        self._text = _text

    @classmethod
    def parse(cls, text, scheme=None):
        """
        Parse a sip: or sips: URI.

        @raise ParseError: on a malformed URI.
        """
        if scheme is None:
            scheme, colon, _ = text.partition(":")
            scheme = scheme.lower()
            if not colon or scheme not in ("sip", "sips"):
                raise ParseError("Not a SIP URI")
        rest = text[len(scheme) + 1 :]
        headers = ""
        at = rest.find("@")
        if at != -1:
            userinfo, hostpart = rest[:at], rest[at + 1 :]
            user, colon, password = userinfo.partition(":")
            if not user:
                raise ParseError("Empty user part in URI")
            if not set(user) <= _USER_CHARS:
                raise ParseError("Bad character in URI user part")
            if "%" in user:
                _check_escapes(user, "user part")
            if colon:
                if not set(password) <= _PASSWORD_CHARS:
                    raise ParseError("Bad character in URI password")
                if "%" in password:
                    _check_escapes(password, "password")
            else:
                password = None
        else:
            user = password = None
            hostpart = rest
        q = hostpart.find("?")
        if q != -1:
            hostpart, headers = hostpart[:q], hostpart[q + 1 :]
            if not headers:
                raise ParseError("Empty URI headers")
        semi = hostpart.find(";")
        if semi != -1:
            hostport, paramtext = hostpart[:semi], hostpart[semi + 1 :]
            if '"' in paramtext:
                raise ParseError("Quote in URI parameter")
            params = parse_params(paramtext, "URI parameter")
        else:
            hostport, params = hostpart, {}
        host, port = split_hostport(hostport)
        return cls(host, user, port, params, scheme, password, headers, text)

    def __str__(self):
        if self._text is None:
            out = [self.scheme, ":"]
            if self.user is not None:
                out.append(self.user)
                if self.password is not None:
                    out.append(":" + self.password)
                out.append("@")
            out.append(format_hostport(self.host, self.port))
            out.append(format_params(self.params))
            if self.headers:
                out.append("?" + self.headers)
            self._text = "".join(out)
        return self._text

    def __repr__(self):
        return "<SipURI %s>" % self

    def replace(self, **changes):
        """A copy with the given attributes changed."""
        values = {name: getattr(self, name) for name in
                  ("host", "user", "port", "scheme", "password", "headers")}
        values["params"] = dict(self.params)
        values.update(changes)
        return SipURI(**values)

    def with_params(self, **params):
        """A copy with parameters added or replaced (a value of None = flag)."""
        merged = dict(self.params)
        merged.update(params)
        return self.replace(params=merged)

    def without_params(self, *names):
        """A copy without the named parameters."""
        return self.replace(params={k: v for k, v in self.params.items() if k not in names})

    def param(self, name, default=None):
        return self.params.get(name, default)

    @property
    def transport(self):
        """The transport parameter, lower-cased, or None."""
        return self._transport()

    # (The bodies of two properties a proxy reads of every next hop: C
    # calls where the URI is typed, compiled.)

    def _transport(self):
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def effective_port(self):
        return self._effective_port()

    def _effective_port(self):
        return self.port if self.port is not None else DEFAULT_PORTS[self.scheme]

    @property
    def lr(self):
        return "lr" in self.params

    @property
    def host_key(self):
        """The host lower-cased, for comparisons."""
        return self.host.lower()

    def _key(self):
        # RFC 3261 19.1.4: scheme, user and password case-sensitive after
        # unescaping, host case-insensitive, ports compared as written,
        # transport/user/ttl/method/maddr must match if present in either,
        # other parameters compared only if present in both (simplified
        # here: every parameter is compared case-insensitively).
        return (
            self.scheme,
            pct_decode(self.user) if self.user is not None else None,
            pct_decode(self.password) if self.password is not None else None,
            self.host.lower(),
            self.port,
            tuple(sorted((k, (v or "").lower()) for k, v in self.params.items())),
            self.headers,
        )

    def __eq__(self, other):
        if not isinstance(other, SipURI):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self):
        return hash(self._key())


@cython.no_gc
@cython.cclass
class TelURI:
    """
    A tel: URI (RFC 3966): a telephone number with parameters.

    @ivar number: the number as written (visual separators kept).
    """

    __slots__ = ("number", "params", "_text")
    scheme = "tel"

    def __init__(self, number, params=None, _text=None):
        self.number = number
        self.params = params if params is not None else {}
        self._text = _text

    @classmethod
    def parse(cls, text):
        rest = text[4:]
        number, semi, paramtext = rest.partition(";")
        if not number or not set(number) <= _TEL_CHARS:
            raise ParseError("Bad tel URI number")
        params = parse_params(paramtext, "tel URI parameter") if semi else {}
        if not number.startswith("+") and "phone-context" not in params:
            # RFC 3966 5.1.5: a local number needs a phone-context.
            raise ParseError("Local tel URI without phone-context")
        return cls(number, params, text)

    @property
    def digits(self):
        """The number without visual separators (RFC 3966 5.1.1)."""
        return "".join(c for c in self.number if c not in "-.()")

    def __str__(self):
        if self._text is None:
            self._text = "tel:%s%s" % (self.number, format_params(self.params))
        return self._text

    def __repr__(self):
        return "<TelURI %s>" % self

    def __eq__(self, other):
        if not isinstance(other, TelURI):
            return NotImplemented
        return (self.digits, self.params) == (other.digits, other.params)

    def __hash__(self):
        return hash(self.digits)


@cython.no_gc
@cython.cclass
class AbsoluteURI:
    """Any other absolute URI (RFC 3986 scheme ":" ...), kept opaque."""

    __slots__ = ("scheme", "text")

    def __init__(self, scheme, text):
        self.scheme = scheme
        self.text = text

    def __str__(self):
        return self.text

    def __repr__(self):
        return "<AbsoluteURI %s>" % self.text

    def __eq__(self, other):
        if not isinstance(other, AbsoluteURI):
            return NotImplemented
        return self.text == other.text

    def __hash__(self):
        return hash(self.text)


# URIs parsed before, by their text.  A URI is a value (never changed in
# place: replace and with_params make new ones), so every message naming
# the same URI may share one: a call's Request-URIs, Route and
# Record-Route entries and the next hops of a proxy are a few texts seen
# again and again.  Bounded: emptied when full.
_URIS = {}
_URIS_SIZE = 4096


def parse_uri(text):
    """
    Parse any absolute URI: L{SipURI} for sip/sips, L{TelURI} for tel,
    L{AbsoluteURI} otherwise.

    @raise ParseError: when C{text} is not an absolute URI, or is a
        malformed sip, sips or tel URI.
    """
    memo = _URIS
    uri = memo.get(text)
    if uri is None:
        uri = remember(memo, text, _parse_uri(text), _URIS_SIZE)
    return uri


def _parse_uri(text):
    colon = text.find(":")
    if colon <= 0:
        raise ParseError("Bad URI %s" % quoted(text, 60))
    scheme = text[:colon].lower()
    if scheme == "sip" or scheme == "sips":
        return SipURI.parse(text, scheme)
    if scheme == "tel":
        return TelURI.parse(text)
    if not set(scheme) <= _SCHEME_CHARS or not scheme[0].isalpha():
        raise ParseError("Bad URI scheme")
    for c in " \t\r\n<>\"":
        if c in text:
            raise ParseError("Bad character in URI")
    return AbsoluteURI(scheme, text)
