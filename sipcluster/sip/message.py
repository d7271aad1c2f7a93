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

from sipcluster.sip.address import parse_address
from sipcluster.sip.errors import (
    MessageTooLarge, ParseError, SIPError, UnsupportedURIScheme, VersionNotSupported, quoted)
from sipcluster.sip.grammar import is_token, remember, split_commas, split_first
from sipcluster.sip.headers import _KEY_CACHE, LIST_HEADERS, canonical, spelling
from sipcluster.sip.status import reason_for
from sipcluster.sip.uri import parse_uri
from sipcluster.sip.via import parse_cseq, parse_via, share_via

SIP_VERSION = "SIP/2.0"
# Request-URI schemes a server handles; others get 416 (RFC 3261 8.2.2.1).
# urn: service URNs are Request-URIs a proxy routes (RFC 5031 9:
# urn:service:sos); one that no stage routes is answered 416 later.
SUPPORTED_SCHEMES = frozenset(["sip", "sips", "tel", "urn"])


# The tag of a From or To header line, by the line's text.  Every message
# of a call repeats the same From and To lines, and each one's tags are read
# (RFC 3261 16.3 validation, transaction and dialog matching); Address.parse
# is a function of the text, so a line that parsed once has its tag without
# parsing (or even unfolding) it again.  Bounded: emptied when full.
_TAGS = {}
_TAGS_SIZE = 8192
# The numbers of short numeric header values (Content-Length, Max-Forwards,
# Expires), by their text: the same few, message after message.  Only
# values that were valid numbers are kept; bounded.
_NUMBERS = {}
_NUMBERS_SIZE = 4096
_UNKNOWN = object()
# The compiled parser's table of header-name spellings seen, by a hash of
# their characters (DJB's times-33, computed in C while the line's colon is
# looked for): a slot holds the last spelling hashed to it and its key, so
# the known names of a message cost a comparison each, not a name cut out
# of the line and hashed for _KEY_CACHE.  Only spellings _KEY_CACHE knows
# are put there; fixed in size, so a stream of random names only takes
# slots from each other.
_NAME_SLOTS = 1024
_NAMES = [None] * _NAME_SLOTS
_NAME_KEYS = [None] * _NAME_SLOTS


def clear_names():
    """Empty the name table (for tests: compiled, it is not a module attribute)."""
    for slot in range(_NAME_SLOTS):
        _NAMES[slot] = None
        _NAME_KEYS[slot] = None

# What validation looks for (RFC 3261 8.1.1), in the order faults are named.
_MANDATORY = (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("cseq", "CSeq"))
# Headers that may appear once only (RFC 3261 7.3.1: not list headers).
_SINGLE = frozenset(["call-id", "cseq", "from", "to", "max-forwards", "content-length"])
# The headers validate looks for, a bit each: the single ones (_ONCE_BITS)
# and Via, which may be repeated.
_CHECKED_BITS = {key: 1 << n for n, key in enumerate(sorted(_SINGLE))}
_ONCE_BITS = (1 << len(_SINGLE)) - 1
_VIA_BIT = 1 << len(_SINGLE)
_CHECKED_BITS["via"] = _VIA_BIT
_MANDATORY_BITS = _VIA_BIT
for _key, _what in _MANDATORY:
    _MANDATORY_BITS |= _CHECKED_BITS[_key]
del _key, _what
# What a response copies of its request (RFC 3261 8.2.6.2).
_COPIED = frozenset(["via", "from", "to", "call-id", "cseq"])


def _number(value, digits, fault, highest=None):
    """
    A header value that is a decimal number of at most C{digits} digits (and
    at most C{highest}), as an int; None for None.

    @raise ParseError: with text C{fault} for anything else.
    """
    if value is None:
        return None
    numbers = _NUMBERS
    number = numbers.get(value)
    if number is None:
        if not value.isdigit() or not value.isascii() or len(value) > digits:
            raise ParseError(fault)
        number = int(value)
        if len(value) <= 5:
            remember(numbers, value, number, _NUMBERS_SIZE)
    elif len(value) > digits:
        raise ParseError(fault)
    if highest is not None and number > highest:
        raise ParseError(fault)
    return number


def _index(keys, key, start):
    """
    Where the first of C{keys} from C{start} on that is C{key} stands, or -1.

    Compiled, a loop of C comparisons, identity then length first: Cython
    compiles C{==} between two str to C{PyUnicode_Compare}, an ordering
    comparison several times dearer, and a call makes some two thousand
    of them.  Interpreted, the list's own search, which compares in C.
    """
    if not cython.compiled:
        if start == 0:
            return keys.index(key) if key in keys else -1
        for i in range(start, len(keys)):
            if keys[i] == key:
                return i
        return -1
    n = len(keys)
    while start < n:
        k = keys[start]
        if k is key or (len(k) == len(key) and k == key):
            return start
        start += 1
    return -1


def _key_of(name):
    """
    The key of a header name asked for (as canonical, or the name
    lower-cased when it is none): the names callers ask for are known
    keys, found in the cache without calling into headers.
    """
    known = _KEY_CACHE
    key = known.get(name)
    if key is None:
        key = canonical(name) or name.lower()
    return key


def _value_of(line):
    """The value of a raw header line: after the colon, unfolded, stripped."""
    # (find, not index: the compiled build calls str.find in C; every
    # line kept has its colon.)
    start = line.find(":") + 1
    end = len(line)
    # The whitespace around the value skipped before it is cut out: one
    # string made, not a slice and then its stripped copy.  (Compiled, a
    # loop over characters in C.)
    while start < end and line[start].isspace():
        start += 1
    while end > start and line[end - 1].isspace():
        end -= 1
    value = line[start:end]
    if "\n" in value:
        # RFC 3261 7.3.1: a line fold is equivalent to a single space.
        value = " ".join([part.strip() for part in value.splitlines()])
    return value


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

    Header fields are kept in message order as two lists of the same
    length: C{_keys}, the canonical name of each line, and C{_lines}, the
    raw lines, searched by L{_index}.  Lists of strings only: no tuple per
    line to make and free, and nothing the cyclic collector looks into,
    which matters for the messages a stateful proxy keeps for 32 seconds.
    """

    __slots__ = ("_keys", "_lines", "body", "_cache")

    def __init__(self, fields=None, body=b""):
        """C{fields}: (key, line) pairs, the keys canonical header names."""
        self._keys = [field[0] for field in fields] if fields else []
        self._lines = [field[1] for field in fields] if fields else []
        self.body = body
        self._cache = {}

    # -- raw header access ------------------------------------------------

    def header(self, name):
        """
        The value of the first header line called C{name} (any spelling or
        compact form), or None.  For a list header that is the whole line,
        commas included: use L{values} for the elements.
        """
        return self._single(_key_of(name))

    def values(self, name):
        """
        Every value of header C{name}, in order.  List headers (Via, Route,
        Contact...) are split at their separating commas.
        """
        key = _key_of(name)
        keys = self._keys
        i = _index(keys, key, 0)
        if i < 0:
            # (Absent, as Route and Proxy-Require are from most requests
            # the loop hash reads: no lists made.)
            return []
        lines = []
        while i >= 0:
            lines.append(_value_of(self._lines[i]))
            i = _index(keys, key, i + 1)
        if key in LIST_HEADERS:
            out = []
            for value in lines:
                out.extend(split_commas(value))
            return out
        return lines

    def has(self, name):
        return _index(self._keys, _key_of(name), 0) >= 0

    def items(self):
        """(name as written, value) for every header line, in order."""
        out = []
        for line in self._lines:
            colon = line.index(":")
            out.append((line[:colon].strip(), _value_of(line)))
        return out

    def _key_for_write(self, name):
        known = _KEY_CACHE
        key = known.get(name) or canonical(name)
        if key is None:
            raise ValueError("Not a header name: %r" % (name,))
        cache = self._cache
        cache.pop(key, None)
        if key == "via" or key == "contact":
            # What is kept of these besides their parsed list: the top Via
            # parsed alone, whether the Contact is "*".
            cache.pop(" topvia" if key == "via" else " star", None)
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
        line = "%s: %s" % (spelling(key), value)
        keys = self._keys
        i = _index(keys, key, 0)
        if i < 0:
            keys.append(key)
            self._lines.append(line)
            return
        if not top:
            j = i
            while j >= 0:
                i = j
                j = _index(keys, key, i + 1)
            i += 1
        keys.insert(i, key)
        self._lines.insert(i, line)

    def set(self, name, value):
        """Replace every line of header C{name} by one line with C{value}."""
        key = self._key_for_write(name)
        value = str(value)
        if "\r" in value or "\n" in value:
            raise ValueError("Header value with a line break")
        line = "%s: %s" % (spelling(key), value)
        keys = self._keys
        lines = self._lines
        i = _index(keys, key, 0)
        if i < 0:
            keys.append(key)
            lines.append(line)
            return
        lines[i] = line
        # Any later line of it goes, in place (no new lists: a proxy sets
        # Max-Forwards on every request it forwards).
        i = _index(keys, key, i + 1)
        while i >= 0:
            del keys[i]
            del lines[i]
            i = _index(keys, key, i)

    def remove(self, name):
        """Remove every line of header C{name}."""
        key = self._key_for_write(name)
        keys = self._keys
        i = _index(keys, key, 0)
        while i >= 0:
            del keys[i]
            del self._lines[i]
            i = _index(keys, key, i)

    def pop_first(self, name):
        """
        Remove and return the first value of list header C{name} (the top
        Via, the first Route), leaving any other values on its line intact.
        Returns None when there is none.
        """
        key = self._key_for_write(name)
        keys = self._keys
        lines = self._lines
        i = _index(keys, key, 0)
        while i >= 0:
            line = lines[i]
            first, rest = split_first(_value_of(line))
            if not rest:
                del keys[i]
                del lines[i]
                if first is not None:
                    return first
                # A line of commas only: gone; the value is on a later line.
                i = _index(keys, key, i)
                continue
            colon = line.find(":")
            lines[i] = "%s: %s" % (line[:colon].rstrip(), rest)
            return first
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
        i = _index(self._keys, key, 0)
        if i < 0:
            self.add(name, value)
            return
        line = self._lines[i]
        colon = line.find(":")
        rest = split_first(_value_of(line))[1]
        self._lines[i] = "%s: %s" % (line[:colon].rstrip(), "%s, %s" % (value, rest) if rest else value)

    # -- typed headers ------------------------------------------------------

    # Each typed header below is parsed on first use and kept in _cache
    # under its key until the header changes.  A parse that fails caches
    # nothing (it fails again, with the same error, when asked again).  No
    # closure is made on each access: reading a cached value costs one
    # dictionary lookup.

    def _single(self, key):
        i = _index(self._keys, key, 0)
        if i < 0:
            return None
        return _value_of(self._lines[i])

    @property
    def vias(self):
        """Every Via, top first."""
        vias = self._cache.get("via")
        if vias is None:
            vias = self._cache["via"] = [parse_via(v) for v in self.values("via")]
        return vias

    # The parsed values below are properties to Python code; compiled, the
    # message's own methods (and callers that know its type) call the
    # method behind each in C, where a property is read through the
    # attribute protocol even on a typed object.

    @property
    def top_via(self):
        """The topmost Via, parsed without parsing the others; None if absent."""
        return self._top_via()

    def _top_via(self):
        cache = self._cache
        via = cache.get("via")
        if via is not None:
            return via[0] if via else None
        top = cache.get(" topvia")
        if top is None:
            value = self._single("via")
            if value is not None:
                if "," in value:
                    value = split_first(value)[0]
                    if value is None:
                        raise ParseError("Empty Via header")
                top = cache[" topvia"] = parse_via(value)
        return top

    def push_via(self, via):
        """Add C{via} (a L{Via}) on top of the Via headers."""
        text = str(via)
        self.add("via", text, top=True)
        self._cache[" topvia"] = via
        # The responses to a request we send bring it back on top.
        share_via(via, text)

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
        return self._call_id()

    def _call_id(self):
        call_id = self._cache.get("call-id", _UNKNOWN)
        if call_id is _UNKNOWN:
            call_id = self._cache["call-id"] = self._single("call-id")
        return call_id

    @property
    def cseq(self):
        return self._cseq()

    def _cseq(self):
        cseq = self._cache.get("cseq", _UNKNOWN)
        if cseq is _UNKNOWN:
            value = self._single("cseq")
            cseq = self._cache["cseq"] = parse_cseq(value) if value is not None else None
        return cseq

    @property
    def max_forwards(self):
        """Max-Forwards as an int, or None when absent."""
        return self._max_forwards()

    def _max_forwards(self):
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
        return self._content_length()

    def _content_length(self):
        number = self._cache.get("content-length", _UNKNOWN)
        if number is _UNKNOWN:
            number = self._cache["content-length"] = _number(
                self._single("content-length"), 9, "Bad Content-Length")
        return number

    def _address(self, key):
        address = self._cache.get(key, _UNKNOWN)
        if address is _UNKNOWN:
            value = self._single(key)
            address = self._cache[key] = parse_address(value) if value is not None else None
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
            return address.params.get("tag")   # (compiled: a typed Address, its dict in C)
        i = _index(self._keys, key, 0)
        if i < 0:
            return None
        line = self._lines[i]
        tags = _TAGS
        tag = tags.get(line, _UNKNOWN)
        if tag is _UNKNOWN:
            # Parsed as _address would, without looking for the line again.
            address = self._cache[key] = parse_address(_value_of(line))
            tag = remember(tags, line, address.params.get("tag"), _TAGS_SIZE)
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
            addresses = self._cache[key] = [parse_address(v) for v in self.values(key)]
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

    def _validate(self):
        # RFC 3261 16.3 step 1: what the transaction and proxy layers use
        # must be well-formed; other components are left alone (a proxy
        # forwards a From with an odd URI unchanged).
        # One pass over the keys says which of the headers checked are
        # present and whether one allowed once is repeated (a bit each).
        keys = self._keys
        bits = _CHECKED_BITS
        seen = 0
        repeated = 0
        for key in keys:
            bit = bits.get(key, 0)
            repeated |= seen & bit
            seen |= bit
        if seen & _MANDATORY_BITS != _MANDATORY_BITS:
            if not seen & _VIA_BIT:
                raise ParseError("Missing Via header")
            for key, what in _MANDATORY:
                if not seen & bits[key]:
                    raise ParseError("Missing %s header" % what)
        if repeated & _ONCE_BITS:
            # A header allowed once found again after itself: the first
            # one repeated, in message order, is named.
            once = _SINGLE
            i = 0
            for key in keys:
                i += 1
                if key in once and _index(keys, key, i) >= 0:
                    raise ParseError("Duplicate %s header" % spelling(key))
        self._top_via()
        self._tag("from")
        self._tag("to")
        self._cseq()
        self._content_length()
        if not self._call_id():
            raise ParseError("Empty Call-ID")

    def start_line(self):
        raise NotImplementedError

    def to_bytes(self):
        """
        Serialize.  A Content-Length is added when missing, since it is
        mandatory on stream transports (RFC 3261 18.3, 20.14).
        """
        lines = [self.start_line()]
        lines.extend(self._lines)
        if _index(self._keys, "content-length", 0) < 0:
            lines.append("Content-Length: %d" % len(self.body))
        lines.append("")
        lines.append("")
        # (The codec named literally: the compiled build then calls it in C.)
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    __bytes__ = to_bytes

    def copy(self):
        """A copy whose headers can be changed without touching this one."""
        cls = type(self)
        other = cls.__new__(cls)
        other._keys = list(self._keys)
        other._lines = list(self._lines)
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
        return self._request_uri()

    def _request_uri(self):
        if self._uri is None:
            self._uri = parse_uri(self._uri_text)
        return self._uri

    @uri.setter
    def uri(self, uri):
        self._set_uri(uri)

    def _set_uri(self, uri):
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
        if self._cseq().method != self.method:
            # RFC 3261 8.1.1.5: the CSeq method MUST match the request's.
            raise ParseError("CSeq method does not match request method")
        self._max_forwards()
        self._request_uri()

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
        # (%s of the int status: compiled, Python's int to text; %d asks
        # int.__format__ to parse a format spec on every response.)
        return "%s %s %s" % (self.version, self.status, self.reason)

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
    keys = []
    lines = []
    add_tag = to_tag is not None and request.to_tag is None
    request_lines = request._lines
    i = 0
    for key in request._keys:
        if key in _COPIED:
            line = request_lines[i]
            if add_tag and key == "to":
                line = "%s;tag=%s" % (line.rstrip(), to_tag)
            keys.append(key)
            lines.append(line)
        i += 1
    response = _new_response(status, reason if reason is not None else reason_for(status),
                             keys, lines, b"")
    if status == 100 and request.has("timestamp"):
        # RFC 3261 8.2.6.1: a 100 copies the Timestamp.
        response.add("timestamp", request.header("timestamp"))
    for name, value in extra:
        response.add(name, value)
    return response


def _split_head(data):
    """The header section and the body, (head, body) as bytes; None without an empty line."""
    # (partition, not find: compiled, a call in C with one argument; find
    # parses its optional start and end at every call.)
    head, sep, body = data.partition(b"\r\n\r\n")
    if sep:
        return head, body
    end = data.find(b"\n\n")
    if end != -1:
        return data[:end], data[end + 2 :]
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
    head_bytes, body = split
    # UTF-8, undecodable bytes kept as surrogates so that they round-trip
    # unchanged (the codec named literally: compiled, decoded in C).
    head = head_bytes.decode("utf-8", "surrogateescape")
    lines = head.split("\r\n")
    for line in lines:
        # (A line left with an LF in it is cheaper to look for than to
        # count the head's LFs.)
        if "\n" in line:
            # Bare LF line ends: tolerated (RFC 3261 7 asks for CRLF).
            lines = [line[:-1] if line.endswith("\r") else line for line in head.split("\n")]
            break
    first = lines[0]
    keys = []
    values = []
    fault = None
    known = _KEY_CACHE
    names = _NAMES
    name_keys = _NAME_KEYS
    for line in lines[1:] if len(lines) > 1 else ():
        # Fast path: a header name seen before, written the same way.
        if cython.compiled:
            # Its hash made in C as the colon is looked for, and the name
            # compared where it stands in the line: no name cut out and
            # hashed again for the dictionary (see _NAMES).
            n = len(line)
            colon = 0
            h = 5381
            while colon < n:
                c = line[colon]
                if c == ":":
                    break
                h = h * 33 + ord(c)
                colon += 1
            if colon == n:
                colon = -1
            key = None
            if colon > 0:
                slot = h & (_NAME_SLOTS - 1)
                name = names[slot]
                if name is not None and len(name) == colon and line.startswith(name):
                    key = name_keys[slot]
                else:
                    name = line[:colon]
                    key = known.get(name)
                    if key is not None:
                        names[slot] = name
                        name_keys[slot] = key
        else:
            colon = line.find(":")
            key = known.get(line[:colon]) if colon > 0 else None
        if key is None:
            if line and (line[0] == " " or line[0] == "\t"):
                if values:
                    values[-1] = values[-1] + "\r\n" + line
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
        keys.append(key)
        values.append(line)

    if first[:4].upper() == "SIP/":
        message = _parse_status_line(first, keys, values, body)
    else:
        message = _parse_request_line(first, keys, values, body)
    if fault is not None:
        fault.message = message
        raise fault

    try:
        length = message._content_length()
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


def _parse_status_line(line, keys, lines, body):
    parts = line.split(" ", 2)
    version = parts[0]
    code = parts[1] if len(parts) > 1 else ""
    reason = parts[2] if len(parts) > 2 else ""
    if version != SIP_VERSION and version.upper() != SIP_VERSION:
        raise VersionNotSupported("Version %s not supported" % version[:20])
    # Three ASCII digits, the first 1 to 6 (RFC 3261 7.2, 21): the codes
    # are looked up, not converted.
    codes = _STATUS_CODES
    status = codes.get(code)
    if status is None:
        raise ParseError("Bad status code")
    return _new_response(status, reason, keys, lines, body)


# Every status code a response may carry (100 to 699), by its text.
_STATUS_CODES = {str(code): code for code in range(100, 700)}


# The parser and make_response make their messages without calling the
# class (Python's call protocol, argument parsing, __init__: a quarter of a
# small message's parse).

def _new_response(status, reason, keys, lines, body):
    """A Response of these parts, in SIP/2.0."""
    response = Response.__new__(Response)
    response._keys = keys
    response._lines = lines
    response.body = body
    response._cache = {}
    response.status = status
    response.reason = reason
    response.version = SIP_VERSION
    return response


def _new_request(method, uri, keys, lines, body, version):
    """A Request of these parts, its Request-URI parsed when first asked for."""
    request = Request.__new__(Request)
    request._keys = keys
    request._lines = lines
    request.body = body
    request._cache = {}
    request.method = method
    request._uri = None
    request._uri_text = uri
    request.version = version
    return request


def _parse_request_line(line, keys, lines, body):
    parts = line.split(" ")
    if len(parts) == 3 and is_token(parts[0]):
        method, uri, version = parts
        fault = None
    else:
        # Keep what can be kept so that a 400 can still be sent.
        method, uri, version = "UNKNOWN", "sip:invalid", SIP_VERSION
        fault = ParseError("Malformed request line")
    request = _new_request(method, uri, keys, lines, body, version)
    if fault is None:
        if version != SIP_VERSION and version.upper() != SIP_VERSION:
            fault = VersionNotSupported("Version %s not supported" % version[:20])
        else:
            request.version = SIP_VERSION
            colon = uri.find(":")
            if colon == 3 and uri.startswith("sip"):
                # The usual scheme, written the usual way: nothing to cut.
                scheme = "sip"
            else:
                scheme = uri[:colon].lower()
            if scheme in SUPPORTED_SCHEMES:
                pass
            elif colon <= 0 or not scheme.isascii() or not scheme[:1].isalpha() or not (
                    # RFC 3986 3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
                    scheme.replace("+", "a").replace("-", "a").replace(".", "a").isalnum()):
                fault = ParseError("Bad Request-URI")
            else:
                fault = UnsupportedURIScheme("Unsupported URI scheme %s" % scheme[:20])
    if fault is not None:
        fault.message = request
        raise fault
    return request
