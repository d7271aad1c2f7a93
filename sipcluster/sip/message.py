# -*- test-case-name: tests.test_sip_message -*-
"""
SIP requests and responses (RFC 3261 section 7): parsing from bytes,
serializing to bytes, and header access.

Parsing is lazy.  L{parse_message} splits the start line and the header
lines and looks at nothing else except Content-Length; a header value is
parsed when it is first asked for, and the parsed value is cached until that
header changes.  Header lines nobody touched are serialized back exactly as
they were received, folding and compact names included.
"""

try:
    import cython
except ImportError:  # pure Python without Cython: its decorators do nothing
    from sipcluster.compiled import pure_cython as cython

from sipcluster.sip.address import Address
from sipcluster.sip.errors import (
    MessageTooLarge, ParseError, SIPError, UnsupportedURIScheme, VersionNotSupported, quoted)
from sipcluster.sip.grammar import is_token, remember, split_commas
from sipcluster.sip.headers import _KEY_CACHE, LIST_HEADERS, canonical, spelling
from sipcluster.sip.status import reason_for
from sipcluster.sip.uri import parse_uri
from sipcluster.sip.via import CSeq, Via

SIP_VERSION = "SIP/2.0"
# Request-URI schemes a server handles; others get 416 (RFC 3261 8.2.2.1).
# urn: service URNs are Request-URIs a proxy routes (RFC 5031 9:
# urn:service:sos); one that no stage routes is answered 416 later.
SUPPORTED_SCHEMES = frozenset(["sip", "sips", "tel", "urn"])

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"  # undecodable bytes round-trip unchanged


# The tag of a From or To header line, by the line's text.  Every message
# of a call repeats the same From and To lines, and each one's tags are read
# (RFC 3261 16.3 validation, transaction and dialog matching); Address.parse
# is a function of the text, so a line that parsed once has its tag without
# parsing (or even unfolding) it again.  Bounded: emptied when full.
_TAGS = {}
_TAGS_SIZE = 8192
_UNKNOWN = object()


def _number(value, digits, fault, highest=None):
    """
    A header value that is a decimal number of at most C{digits} digits (and
    at most C{highest}), as an int; None for None.

    @raise ParseError: with text C{fault} for anything else.
    """
    if value is None:
        return None
    if not value.isdigit() or not value.isascii() or len(value) > digits:
        raise ParseError(fault)
    number = int(value)
    if highest is not None and number > highest:
        raise ParseError(fault)
    return number


def _key_of(name):
    """
    The key of a header name asked for (as canonical, or the name
    lower-cased when it is none): the names callers ask for are known
    keys, found in the cache without calling into headers.
    """
    key = _KEY_CACHE.get(name)
    if key is None:
        key = canonical(name) or name.lower()
    return key


def _value_of(line):
    """The value of a raw header line: after the colon, unfolded, stripped."""
    value = line[line.index(":") + 1 :]
    if "\n" in value:
        # RFC 3261 7.3.1: a line fold is equivalent to a single space.
        value = " ".join([part.strip() for part in value.splitlines()])
    return value.strip()


# In the compiled build (the .pxd beside this file) these classes are
# extension types the cyclic collector does not track (no_gc): their
# instances hold strings, numbers and other such values only, so they can
# be in no reference cycle, and a stateful proxy keeps thousands of them
# alive for 32 seconds (the collector visited each one again and again).
@cython.no_gc
@cython.cclass
class Message:
    """
    What requests and responses share: header fields and a body.

    Header fields are kept as C{(key, line)} pairs in message order, where
    C{key} is the canonical header name and C{line} the raw header line.
    The pairs are tuples: a copy shares them, and the cyclic collector stops
    looking at them (a tuple of strings is untracked), which matters for the
    messages a stateful proxy keeps for 32 seconds.
    """

    __slots__ = ("_fields", "body", "_cache")

    def __init__(self, fields=None, body=b""):
        self._fields = fields if fields is not None else []
        self.body = body
        self._cache = {}

    # -- raw header access ------------------------------------------------

    def header(self, name):
        """
        The value of the first header line called C{name} (any spelling or
        compact form), or None.  For a list header that is the whole line,
        commas included: use L{values} for the elements.
        """
        key = _key_of(name)
        for field in self._fields:
            if field[0] == key:
                return _value_of(field[1])
        return None

    def values(self, name):
        """
        Every value of header C{name}, in order.  List headers (Via, Route,
        Contact...) are split at their separating commas.
        """
        key = _key_of(name)
        lines = []
        for field in self._fields:
            if field[0] == key:
                lines.append(_value_of(field[1]))
        if key in LIST_HEADERS:
            out = []
            for value in lines:
                out.extend(split_commas(value))
            return out
        return lines

    def has(self, name):
        key = _key_of(name)
        for field in self._fields:
            if field[0] == key:
                return True
        return False

    def items(self):
        """(name as written, value) for every header line, in order."""
        out = []
        for _, line in self._fields:
            colon = line.index(":")
            out.append((line[:colon].strip(), _value_of(line)))
        return out

    def _key_for_write(self, name):
        key = _KEY_CACHE.get(name) or canonical(name)
        if key is None:
            raise ValueError("Not a header name: %r" % (name,))
        self._cache.pop(key, None)
        return key

    def add(self, name, value, top=False):
        """
        Add a header line.  C{top} puts it before every other line of the
        same header (where Via, Route and Record-Route values are pushed);
        otherwise it goes after the last line of that header, or at the end.
        """
        key = self._key_for_write(name)
        value = str(value)
        if "\r" in value or "\n" in value:
            raise ValueError("Header value with a line break")
        field = (key, "%s: %s" % (spelling(key), value))
        fields = self._fields
        positions = [i for i, f in enumerate(fields) if f[0] == key]
        if not positions:
            fields.append(field)
        elif top:
            fields.insert(positions[0], field)
        else:
            fields.insert(positions[-1] + 1, field)

    def set(self, name, value):
        """Replace every line of header C{name} by one line with C{value}."""
        key = self._key_for_write(name)
        value = str(value)
        if "\r" in value or "\n" in value:
            raise ValueError("Header value with a line break")
        line = "%s: %s" % (spelling(key), value)
        fields = self._fields
        for i, field in enumerate(fields):
            if field[0] == key:
                fields[i] = (key, line)
                # Any later line of it goes, in place (no new lists: a
                # proxy sets Max-Forwards on every request it forwards).
                j = len(fields) - 1
                while j > i:
                    if fields[j][0] == key:
                        del fields[j]
                    j -= 1
                return
        fields.append((key, line))

    def remove(self, name):
        """Remove every line of header C{name}."""
        key = self._key_for_write(name)
        self._fields = [f for f in self._fields if f[0] != key]

    def pop_first(self, name):
        """
        Remove and return the first value of list header C{name} (the top
        Via, the first Route), leaving any other values on its line intact.
        Returns None when there is none.
        """
        key = self._key_for_write(name)
        fields = self._fields
        i = 0
        while i < len(fields):
            field = fields[i]
            if field[0] == key:
                line = field[1]
                parts = split_commas(_value_of(line))
                if len(parts) <= 1:
                    del fields[i]
                    if parts:
                        return parts[0]
                    # A line of commas only: gone, and the next line now
                    # stands at i (a for loop over the list skipped it).
                    continue
                colon = line.index(":")
                fields[i] = (key, "%s: %s" % (line[:colon].rstrip(), ", ".join(parts[1:])))
                return parts[0]
            i += 1
        return None

    def replace_first(self, name, value):
        """
        Replace the first value of list header C{name} in place (other
        values on its line, and its position, are kept).  Adds the header
        when absent.
        """
        key = self._key_for_write(name)
        if "\r" in value or "\n" in value:
            raise ValueError("Header value with a line break")
        fields = self._fields
        for i, field in enumerate(fields):
            if field[0] == key:
                line = field[1]
                colon = line.index(":")
                parts = split_commas(_value_of(line))
                parts[:1] = [value]
                fields[i] = (key, "%s: %s" % (line[:colon].rstrip(), ", ".join(parts)))
                return
        self.add(name, value)

    # -- typed headers ------------------------------------------------------

    # Each typed header below is parsed on first use and kept in _cache
    # under its key until the header changes.  A parse that fails caches
    # nothing (it fails again, with the same error, when asked again).  No
    # closure is made on each access: reading a cached value costs one
    # dictionary lookup.

    def _single(self, key):
        for field in self._fields:
            if field[0] == key:
                return _value_of(field[1])
        return None

    @property
    def vias(self):
        """Every Via, top first."""
        vias = self._cache.get("via")
        if vias is None:
            vias = self._cache["via"] = [Via.parse(v) for v in self.values("via")]
        return vias

    @property
    def top_via(self):
        """The topmost Via, parsed without parsing the others; None if absent."""
        cache = self._cache
        via = cache.get("via")
        if via is not None:
            return via[0] if via else None
        top = cache.get(" topvia")
        if top is None:
            for field in self._fields:
                if field[0] == "via":
                    value = _value_of(field[1])
                    if "," in value:
                        values = split_commas(value)
                        if not values:
                            raise ParseError("Empty Via header")
                        value = values[0]
                    top = cache[" topvia"] = Via.parse(value)
                    break
        return top

    def push_via(self, via):
        """Add C{via} (a L{Via}) on top of the Via headers."""
        self.add("via", str(via), top=True)
        self._cache[" topvia"] = via

    def set_top_via(self, via):
        """Replace the topmost Via value where it stands."""
        self.replace_first("via", str(via))
        self._cache[" topvia"] = via

    def pop_via(self):
        """
        Remove the topmost Via value and return its text (None if absent);
        it is not parsed again.
        """
        value = self.pop_first("via")
        self._cache.pop(" topvia", None)
        return value

    @property
    def call_id(self):
        call_id = self._cache.get("call-id", _UNKNOWN)
        if call_id is _UNKNOWN:
            call_id = self._cache["call-id"] = self._single("call-id")
        return call_id

    @property
    def cseq(self):
        cseq = self._cache.get("cseq", _UNKNOWN)
        if cseq is _UNKNOWN:
            value = self._single("cseq")
            cseq = self._cache["cseq"] = CSeq.parse(value) if value is not None else None
        return cseq

    @property
    def max_forwards(self):
        """Max-Forwards as an int, or None when absent."""
        number = self._cache.get("max-forwards", _UNKNOWN)
        if number is _UNKNOWN:
            number = self._cache["max-forwards"] = _number(
                self._single("max-forwards"), 10, "Bad Max-Forwards", 255)
        return number

    @max_forwards.setter
    def max_forwards(self, value):
        self.set("max-forwards", int(value))

    @property
    def content_length(self):
        number = self._cache.get("content-length", _UNKNOWN)
        if number is _UNKNOWN:
            number = self._cache["content-length"] = _number(
                self._single("content-length"), 9, "Bad Content-Length")
        return number

    def _address(self, key):
        address = self._cache.get(key, _UNKNOWN)
        if address is _UNKNOWN:
            value = self._single(key)
            address = self._cache[key] = Address.parse(value) if value is not None else None
        return address

    @property
    def from_(self):
        """The From header as an L{Address}, or None."""
        return self._address("from")

    @property
    def to(self):
        """The To header as an L{Address}, or None."""
        return self._address("to")

    def _tag(self, key):
        address = self._cache.get(key)
        if address is not None:
            return address.tag
        for field in self._fields:
            if field[0] == key:
                line = field[1]
                break
        else:
            return None
        tag = _TAGS.get(line, _UNKNOWN)
        if tag is _UNKNOWN:
            # Parsed as _address would, without looking for the line again.
            address = self._cache[key] = Address.parse(_value_of(line))
            tag = remember(_TAGS, line, address.tag, _TAGS_SIZE)
        return tag

    @property
    def from_tag(self):
        return self._tag("from")

    @property
    def to_tag(self):
        return self._tag("to")

    def _address_list(self, key):
        addresses = self._cache.get(key)
        if addresses is None:
            addresses = self._cache[key] = [Address.parse(v) for v in self.values(key)]
        return addresses

    @property
    def contacts(self):
        """
        Every Contact as an L{Address}; [] when there is none.  A Contact of
        C{*} gives [] too: test L{is_star_contact}.
        """
        if self.is_star_contact:
            return []
        return self._address_list("contact")

    @property
    def is_star_contact(self):
        """Whether the Contact is the C{*} of RFC 3261 10.2.2."""
        star = self._cache.get(" star")
        if star is None:
            values = self.values("contact")
            if "*" in values and len(values) != 1:
                raise ParseError("Contact * with other contacts")
            star = self._cache[" star"] = "*" in values
        return star

    @property
    def routes(self):
        return self._address_list("route")

    @property
    def record_routes(self):
        return self._address_list("record-route")

    @property
    def paths(self):
        return self._address_list("path")

    @property
    def expires(self):
        """The Expires header as an int, or None."""
        number = self._cache.get("expires", _UNKNOWN)
        if number is _UNKNOWN:
            number = self._cache["expires"] = _number(self._single("expires"), 10, "Bad Expires")
        return number

    def option_tags(self, name):
        """The option tags of Require, Proxy-Require, Supported... lower-cased."""
        return [v.lower() for v in self.values(name)]

    def set_body(self, body, content_type=None):
        """Replace the body and keep Content-Length (and Content-Type) right."""
        self.body = body
        self.set("content-length", len(body))
        if content_type is not None:
            self.set("content-type", content_type)
        elif not body:
            self.remove("content-type")

    # -- checks and serialization ------------------------------------------

    def validate(self):
        """
        Parse and check what every element needs of a message (RFC 3261
        8.1.1 mandatory headers, 20.16 CSeq, 20.42 Via), so that a faulty
        message is refused with 400 before any processing.

        @raise SIPError: naming the first fault found, with this message
            as C{error.message}.
        """
        try:
            self._validate()
        except SIPError as e:
            if e.message is None:
                e.message = self
            raise

    # Headers that may appear once only (RFC 3261 7.3.1: not list headers).
    _SINGLE = frozenset(["call-id", "cseq", "from", "to", "max-forwards", "content-length"])

    def _validate(self):
        # RFC 3261 16.3 step 1: what the transaction and proxy layers use
        # must be well-formed; other components are left alone (a proxy
        # forwards a From with an odd URI unchanged).
        counts = {}
        single = self._SINGLE
        has_via = False
        for field in self._fields:
            key = field[0]
            if key == "via":
                has_via = True
            elif key in single:
                counts[key] = counts.get(key, 0) + 1
        if not has_via:
            raise ParseError("Missing Via header")
        for key, what in (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq")):
            if key not in counts:
                raise ParseError("Missing %s header" % what)
        for key, count in counts.items():
            if count > 1:
                raise ParseError("Duplicate %s header" % spelling(key))
        self.top_via
        self.from_tag
        self.to_tag
        self.cseq
        self.content_length
        if not self.call_id:
            raise ParseError("Empty Call-ID")

    def start_line(self):
        raise NotImplementedError

    def to_bytes(self):
        """
        Serialize.  A Content-Length is added when missing, since it is
        mandatory on stream transports (RFC 3261 18.3, 20.14).
        """
        fields = self._fields
        lines = [self.start_line()]
        has_length = False
        for field in fields:
            if field[0] == "content-length":
                has_length = True
            lines.append(field[1])
        if not has_length:
            lines.append("Content-Length: %d" % len(self.body))
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode(_ENCODING, _ERRORS) + self.body

    __bytes__ = to_bytes

    def copy(self):
        """A copy whose headers can be changed without touching this one."""
        other = self.__class__.__new__(self.__class__)
        other._fields = list(self._fields)
        other.body = self.body
        other._cache = dict(self._cache)
        self._copy_start(other)
        return other


@cython.no_gc
@cython.cclass
class Request(Message):
    """A SIP request."""

    __slots__ = ("method", "_uri", "_uri_text", "version")

    def __init__(self, method, uri, fields=None, body=b"", version=SIP_VERSION):
        Message.__init__(self, fields, body)
        self.method = method
        if isinstance(uri, str):
            self._uri_text = uri
            self._uri = None
        else:
            self._uri = uri
            self._uri_text = str(uri)
        self.version = version

    @property
    def uri(self):
        """The Request-URI, parsed on first use."""
        if self._uri is None:
            self._uri = parse_uri(self._uri_text)
        return self._uri

    @uri.setter
    def uri(self, uri):
        self._uri = uri
        self._uri_text = str(uri)

    @property
    def uri_scheme(self):
        return self._uri_text[: self._uri_text.find(":")].lower()

    def start_line(self):
        return "%s %s %s" % (self.method, self._uri_text, self.version)

    def _copy_start(self, other):
        other.method = self.method
        other._uri = self._uri
        other._uri_text = self._uri_text
        other.version = self.version

    def _validate(self):
        Message._validate(self)
        if self.cseq.method != self.method:
            # RFC 3261 8.1.1.5: the CSeq method MUST match the request's.
            raise ParseError("CSeq method does not match request method")
        self.max_forwards
        self.uri

    def __repr__(self):
        return "<Request %s %s>" % (self.method, self._uri_text)


@cython.no_gc
@cython.cclass
class Response(Message):
    """A SIP response."""

    __slots__ = ("status", "reason", "version")

    def __init__(self, status, reason=None, fields=None, body=b"", version=SIP_VERSION):
        Message.__init__(self, fields, body)
        self.status = status
        self.reason = reason if reason is not None else reason_for(status)
        self.version = version

    def start_line(self):
        return "%s %d %s" % (self.version, self.status, self.reason)

    def _copy_start(self, other):
        other.status = self.status
        other.reason = self.reason
        other.version = self.version

    @property
    def is_provisional(self):
        return self.status < 200

    def __repr__(self):
        return "<Response %d %s>" % (self.status, self.reason)


def make_response(request, status, reason=None, to_tag=None, extra=()):
    """
    Build a response to C{request} per RFC 3261 8.2.6.2: Via (every line),
    From, To, Call-ID and CSeq copied; a To tag added when given and the To
    has none.  C{extra} is a sequence of (name, value) headers to add.
    """
    fields = []
    add_tag = to_tag is not None and request.to_tag is None
    for field in request._fields:
        key = field[0]
        if key == "via" or key == "from" or key == "call-id" or key == "cseq":
            fields.append(field)
        elif key == "to":
            if add_tag:
                field = (key, "%s;tag=%s" % (field[1].rstrip(), to_tag))
            fields.append(field)
    response = _new_response(status, reason if reason is not None else reason_for(status),
                             fields, b"")
    if status == 100 and request.has("timestamp"):
        # RFC 3261 8.2.6.1: a 100 copies the Timestamp.
        response.add("timestamp", request.header("timestamp"))
    for name, value in extra:
        response.add(name, value)
    return response


def _split_head(data):
    """Find the end of the header section: (head bytes, body start) or None."""
    end = data.find(b"\r\n\r\n")
    if end != -1:
        return end, end + 4
    end = data.find(b"\n\n")
    if end != -1:
        return end, end + 2
    return None


def parse_message(data, max_size=None, stream=False):
    """
    Parse one SIP message from C{data} (bytes).

    For a datagram (C{stream} false), a body longer than Content-Length is
    truncated and a missing Content-Length means "to the end" (RFC 3261
    18.3).  For a message framed from a stream, the framer has already cut
    the message at Content-Length.

    @raise SIPError: on any fault.  When the start line and headers could be
        read, the error carries them as C{error.message} so that a server can
        still answer with C{error.status}.
    """
    if max_size is not None and len(data) > max_size:
        error = MessageTooLarge("Message larger than %d bytes" % max_size)
        # RFC 3261 21.5.7: a request still gets its 513 when its headers
        # can be read, so the sender learns why (and does not retransmit).
        try:
            error.message = parse_message(data)
        except SIPError:
            pass
        raise error
    if not isinstance(data, bytes):
        try:
            data = bytes(data)
        except (TypeError, ValueError):
            raise ParseError("Not bytes") from None
    # RFC 3261 7.5: CRLFs before the start line are ignored.
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    split = _split_head(data)
    if split is None:
        raise ParseError("No empty line after the headers")
    head_end, body_start = split
    head = data[:head_end].decode(_ENCODING, _ERRORS)
    lines = head.split("\r\n")
    for line in lines:
        # (A line left with an LF in it is cheaper to look for than to
        # count the head's LFs.)
        if "\n" in line:
            # Bare LF line ends: tolerated (RFC 3261 7 asks for CRLF).
            lines = [line[:-1] if line.endswith("\r") else line for line in head.split("\n")]
            break
    first = lines[0]
    fields = []
    fault = None
    known = _KEY_CACHE
    for line in lines[1:] if len(lines) > 1 else ():
        colon = line.find(":")
        # Fast path: a header name seen before, written the same way.
        key = known.get(line[:colon]) if colon > 0 else None
        if key is None:
            if line and (line[0] == " " or line[0] == "\t"):
                if fields:
                    fields[-1] = (fields[-1][0], fields[-1][1] + "\r\n" + line)
                elif fault is None:
                    fault = ParseError("Continuation line before any header")
                continue
            if colon > 0:
                name = line[:colon]
                key = canonical(name) or canonical(name.rstrip(" \t"))
            if key is None:
                # Skip the line but go on reading, so that the request can
                # still be answered with a 400 naming the fault.
                if fault is None:
                    fault = ParseError("Malformed header line %s" % quoted(line))
                continue
        fields.append((key, line))
    body = data[body_start:]

    if first[:4].upper() == "SIP/":
        message = _parse_status_line(first, fields, body)
    else:
        message = _parse_request_line(first, fields, body)
    if fault is not None:
        fault.message = message
        raise fault

    try:
        length = message.content_length
    except SIPError as e:
        e.message = message
        raise
    if length is not None:
        if length > len(body):
            error = ParseError("Content-Length larger than body")
            error.message = message
            message.body = b""
            raise error
        if length < len(body):
            message.body = body[:length]
    elif stream:
        error = ParseError("Missing Content-Length")
        error.message = message
        raise error
    return message


def _parse_status_line(line, fields, body):
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version.upper() != SIP_VERSION:
        raise VersionNotSupported("Version %s not supported" % version[:20])
    if len(code) != 3 or not code.isdigit() or not code.isascii() or code[0] == "0":
        raise ParseError("Bad status code")
    status = int(code)
    if status >= 700:
        raise ParseError("Bad status code")
    return _new_response(status, reason, fields, body)


# The parser and make_response make their messages without calling the
# class (Python's call protocol, argument parsing, __init__: a quarter of a
# small message's parse).

def _new_response(status, reason, fields, body):
    """A Response of these parts, in SIP/2.0."""
    response = Response.__new__(Response)
    response._fields = fields
    response.body = body
    response._cache = {}
    response.status = status
    response.reason = reason
    response.version = SIP_VERSION
    return response


def _new_request(method, uri, fields, body, version):
    """A Request of these parts, its Request-URI parsed when first asked for."""
    request = Request.__new__(Request)
    request._fields = fields
    request.body = body
    request._cache = {}
    request.method = method
    request._uri = None
    request._uri_text = uri
    request.version = version
    return request


def _parse_request_line(line, fields, body):
    parts = line.split(" ")
    if len(parts) == 3 and is_token(parts[0]):
        method, uri, version = parts
        fault = None
    else:
        # Keep what can be kept so that a 400 can still be sent.
        method, uri, version = "UNKNOWN", "sip:invalid", SIP_VERSION
        fault = ParseError("Malformed request line")
    request = _new_request(method, uri, fields, body, version)
    if fault is None:
        if version.upper() != SIP_VERSION:
            fault = VersionNotSupported("Version %s not supported" % version[:20])
        else:
            request.version = SIP_VERSION
            colon = uri.find(":")
            scheme = uri[:colon].lower()
            if scheme in SUPPORTED_SCHEMES:
                pass
            elif colon <= 0 or not scheme.isascii() or not scheme[:1].isalpha() or not all(
                    c.isalnum() or c in "+-." for c in scheme):
                fault = ParseError("Bad Request-URI")
            else:
                fault = UnsupportedURIScheme("Unsupported URI scheme %s" % scheme[:20])
    if fault is not None:
        fault.message = request
        raise fault
    return request
