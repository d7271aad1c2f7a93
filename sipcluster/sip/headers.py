# -*- test-case-name: tests.test_sip_message -*-
"""
Header names: the canonical (lower-case, long) key of every header, the
compact forms of RFC 3261 7.3.3 and later RFCs, the headers whose value is
a comma-separated list, and the spelling used for headers we add.
"""

import sys

from sipcluster.sip.grammar import is_token

# RFC 3261 7.3.3 and 20, RFC 3265 (o, u), RFC 3515 (r), RFC 3892 (b),
# RFC 4028 (x), RFC 3841 (a, j, d), RFC 4474 (y, n).
COMPACT_FORMS = {
    "i": "call-id", "m": "contact", "e": "content-encoding",
    "l": "content-length", "c": "content-type", "f": "from", "s": "subject",
    "k": "supported", "t": "to", "v": "via", "o": "event", "u": "allow-events",
    "r": "refer-to", "b": "referred-by", "x": "session-expires",
    "a": "accept-contact", "j": "reject-contact", "d": "request-disposition",
    "y": "identity", "n": "identity-info",
}

# Headers defined as a comma-separated list (RFC 3261 7.3.1): several values
# may share one line, and one value may be split over several lines.
LIST_HEADERS = frozenset([
    "via", "contact", "route", "record-route", "path", "service-route",
    "allow", "supported", "require", "proxy-require", "unsupported",
    "accept", "accept-encoding", "accept-language", "content-encoding",
    "allow-events", "in-reply-to", "alert-info", "call-info", "error-info",
    "warning", "content-language", "reason", "security-client",
    "security-server", "security-verify", "p-asserted-identity",
])

_SPECIAL_SPELLING = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version", "rack": "RAck", "rseq": "RSeq",
    "sip-etag": "SIP-ETag", "sip-if-match": "SIP-If-Match",
    "p-asserted-identity": "P-Asserted-Identity",
}

# Known keys, plus every spelling already seen, map to the canonical key; it
# saves the lower()/token check per header on the hot path.  Bounded so that
# a stream of random names cannot grow it without limit.
_KEY_CACHE = {}
_KEY_CACHE_LIMIT = 4096


def canonical(name):
    """
    The canonical key for a header name: lower-cased, compact forms
    expanded.  Returns None when C{name} is not a valid header name.
    """
    known = _KEY_CACHE
    key = known.get(name)
    if key is not None:
        return key
    if not is_token(name):
        return None
    key = name.lower()
    # Interned: the keys of every spelling are then one object, which the
    # header search finds by identity (and so is any literal key the code
    # asks for that the compiler interned: "via", "cseq", "to").
    key = sys.intern(COMPACT_FORMS.get(key, key))
    if len(_KEY_CACHE) < _KEY_CACHE_LIMIT:
        _KEY_CACHE[name] = key
    return key


def spelling(key):
    """How we write the header C{key} in headers we add."""
    spellings = _SPECIAL_SPELLING
    special = spellings.get(key)
    if special is None:
        special = "-".join([part.capitalize() for part in key.split("-")])
        if len(_SPECIAL_SPELLING) < _KEY_CACHE_LIMIT:
            _SPECIAL_SPELLING[key] = special
    return special


for _key in list(LIST_HEADERS) + list(COMPACT_FORMS.values()) + [
        "max-forwards", "cseq", "expires", "min-expires", "user-agent", "server",
        "date", "authorization", "proxy-authorization", "proxy-authenticate",
        "www-authenticate", "retry-after", "timestamp", "organization",
        "priority", "content-disposition", "mime-version", "reply-to"]:
    canonical(_key)
    canonical(spelling(_key))
del _key
