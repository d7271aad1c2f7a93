# -*- test-case-name: tests.test_sip_grammar -*-
"""
Lexical rules shared by the structured headers (RFC 3261 section 25.1):
tokens, quoted strings, generic parameters, and splitting a header value on
the commas that separate its values without splitting inside quotes or <>.

The common case (no quotes, no angle brackets) takes a C-speed fast path; the
character-by-character scanner runs only when a value needs it.
"""

try:
    import cython
except ImportError:  # pure Python without Cython: its decorators do nothing
    from sipcluster.compiled import pure_cython as cython

from sipcluster.sip.errors import ParseError, quoted

# RFC 3261 25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" /
# "+" / "`" / "'" / "~")
TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
)


_KNOWN_TOKENS = set()


def remember(memo, key, value, size):
    """
    Put C{value} into C{memo} (a dictionary of values worked out before,
    by their text) under C{key}, and return it.  A memo that holds C{size}
    entries is emptied first, so that it stays bounded whatever the
    traffic: the values are cheap to work out again.
    """
    if len(memo) >= size:
        memo.clear()
    memo[key] = value
    return value


def recall(memo, text, cls, size):
    """
    The value of class C{cls} for C{text} from C{memo}, parsed there by
    C{cls._parse(text)} and remembered (L{remember}) when it is not: the
    memoized parses of Via, CSeq and Address.  (The class, not its bound
    C{_parse}, is passed: no method object is made when the text is known.)
    """
    value = memo.get(text)
    if value is None:
        value = remember(memo, text, cls._parse(text), size)
    return value


def is_token(text):
    """Whether C{text} is a non-empty RFC 3261 token."""
    if text in _KNOWN_TOKENS:
        return True
    if not text or not set(text) <= TOKEN_CHARS:
        return False
    # Methods, parameter names and transports repeat endlessly: remember a
    # bounded number of them so the common case is one set lookup.
    if len(text) <= 32 and len(_KNOWN_TOKENS) < 4096:
        _KNOWN_TOKENS.add(text)
    return True


def split_commas(value):
    """
    Split a header value into its comma-separated elements (RFC 3261 7.3.1),
    ignoring commas inside quoted strings and inside <...>.

    Empty elements are dropped and each element is stripped.

    @raise ParseError: on an unterminated quoted string or <...>.
    """
    if '"' not in value and "<" not in value:
        if "," not in value:
            value = value.strip()
            return [value] if value else []
        parts = []
        for part in value.split(","):
            part = part.strip()
            if part:
                parts.append(part)
        return parts
    parts = []
    start = 0
    quoted = False
    angle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif angle:
            if c == ">":
                angle = False
        elif c == "<":
            angle = True
        elif c == ",":
            part = value[start:i].strip()
            if part:
                parts.append(part)
            start = i + 1
        i += 1
    if quoted:
        raise ParseError("Unterminated quoted string")
    if angle:
        raise ParseError("Unterminated <")
    part = value[start:].strip()
    if part:
        parts.append(part)
    return parts


def split_first(value):
    """
    The first element of a comma-separated header value and the text of
    the others: C{(first, rest)}, C{first} stripped (None when there is
    none), C{rest} stripped of white space (as C{str.strip}) with no empty
    element at either end (so empty when no element follows).  What
    L{split_commas} would give as C{parts[0]} and C{", ".join(parts[1:])},
    without cutting and stripping the elements that follow the first (a
    response's top Via, taken off the line SIPp and many user agents write
    every Via on).

    @raise ParseError: as L{split_commas}, when the value has quoted
        strings or <...> (the whole value is split, and checked, then).
    """
    if '"' in value or "<" in value:
        parts = split_commas(value)
        return (parts[0] if parts else None), ", ".join(parts[1:])
    start = 0
    while True:
        comma = value.find(",", start)
        if comma < 0:
            first = value[start:].strip()
            return (first or None), ""
        first = value[start:comma].strip()
        if first:
            rest = value[comma + 1 :].strip()
            if rest[:1] == "," or rest[-1:] == ",":
                # Empty elements next to the others (or nothing else but
                # them): dropped, as split_commas drops them.
                rest = ", ".join(split_commas(rest))
            return first, rest
        start = comma + 1


def split_semicolons(text):
    """
    Split C{text} on semicolons that are outside quoted strings.

    @raise ParseError: on an unterminated quoted string.
    """
    if '"' not in text:
        return text.split(";")
    parts = []
    start = 0
    quoted = False
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == ";":
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise ParseError("Unterminated quoted string")
    parts.append(text[start:])
    return parts


def parse_params(text, what="parameter"):
    """
    Parse C{;name=value;name2} (the leading semicolon already removed) into
    an ordered dict mapping the lower-cased name to the value (C{None} for
    a parameter without value).  Quoted values keep their quotes, so
    serializing gives back what was received.

    @raise ParseError: on an empty or malformed parameter name.
    """
    if not text:
        return {}
    return params_of(split_semicolons(text), what)


def params_of(items, what="parameter"):
    """
    L{parse_params} of a list already split at its semicolons (C{items},
    each C{name} or C{name=value}).
    """
    params = {}
    for item in items:
        name, eq, val = item.partition("=")
        name = name.strip()
        if not name or not is_token(name):
            raise ParseError("Bad %s name %s" % (what, quoted(name)))
        if eq:
            val = val.strip()
            if not val:
                raise ParseError("Empty value for %s %s" % (what, name))
            params[name.lower()] = val
        else:
            params[name.lower()] = None
    return params


def format_params(params):
    """Serialize an ordered params dict to C{;a=b;c}."""
    return "".join([
        ";%s" % name if val is None else ";%s=%s" % (name, val)
        for name, val in params.items()
    ])


def unquote(text):
    """Remove the quotes and backslash escapes of a quoted string, if quoted."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if "\\" not in inner:
            return inner
        out = []
        i = 0
        while i < len(inner):
            c = inner[i]
            if c == "\\" and i + 1 < len(inner):
                i += 1
                c = inner[i]
            out.append(c)
            i += 1
        return "".join(out)
    return text


def quote(text):
    """Make a quoted string of C{text} (RFC 3261 25.1 quoted-pair)."""
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')
