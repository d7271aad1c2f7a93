# -*- test-case-name: tests.test_digest -*-
"""
HTTP Digest as SIP uses it (RFC 3261 22.4, RFC 7616, RFC 8760): the
hashes of each algorithm, HA1, the request digest, and the challenge and
credentials header values.  Pure functions, no I/O.

Algorithms: MD5 (RFC 3261's), SHA-256 and SHA-512-256 (RFC 8760).
SHA-512-256 is SHA-512/256 of FIPS 180-4 (its own initial values, not a
truncated SHA-512); it comes from OpenSSL through hashlib.  A build
without it does not offer it (L{available}); configuring it there is a
configuration error, never a silent substitute.  The "-sess" variants
are not implemented (no SIP client in use needs them).
"""

import hashlib

from sipcluster.sip.errors import ParseError
from sipcluster.sip.grammar import is_token, quote, split_commas, unquote

_HASHLIB_NAMES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}

# Strongest first: the order challenges are offered in (RFC 8760 2.4,
# RFC 7616 3.7: a client uses the first one it supports).
STRENGTH = ("SHA-512-256", "SHA-256", "MD5")


def available(algorithm):
    """Whether this Python can compute C{algorithm}."""
    name = _HASHLIB_NAMES.get(algorithm)
    if name is None:
        return False
    try:
        hashlib.new(name)
    except ValueError:
        return False
    return True


def canonical_algorithm(name):
    """The algorithm as written in our challenges (case-insensitive match), or None."""
    if name is None:
        return "MD5"  # RFC 7616 3.3: absent means MD5
    upper = name.upper()
    return upper if upper in _HASHLIB_NAMES else None


def strongest_first(algorithms):
    return [a for a in STRENGTH if a in algorithms]


def H(algorithm, text):
    """The hex digest of C{text} (str, UTF-8 per RFC 7616 4) or bytes."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogateescape")
    return hashlib.new(_HASHLIB_NAMES[algorithm], text).hexdigest()


def ha1(algorithm, username, realm, password):
    """RFC 7616 3.4.2: H(username ":" realm ":" password)."""
    return H(algorithm, "%s:%s:%s" % (username, realm, password))


def request_digest(algorithm, ha1_hex, nonce, method, uri, qop=None, nc=None, cnonce=None,
                   body=b""):
    """
    The C{response} parameter (RFC 7616 3.4.1): KD(HA1, nonce:nc:cnonce:
    qop:HA2) with qop, H(HA1:nonce:HA2) without (RFC 2069, which RFC 3261
    22.4 still allows).  HA2 is H(method:uri), and with auth-int
    H(method:uri:H(body)) (RFC 7616 3.4.3).
    """
    if qop == "auth-int":
        ha2 = H(algorithm, "%s:%s:%s" % (method, uri, H(algorithm, body or b"")))
    else:
        ha2 = H(algorithm, "%s:%s" % (method, uri))
    if qop:
        return H(algorithm, "%s:%s:%s:%s:%s:%s" % (ha1_hex, nonce, nc, cnonce, qop, ha2))
    return H(algorithm, "%s:%s:%s" % (ha1_hex, nonce, ha2))


def format_challenge(realm, nonce, algorithm, qop="auth", stale=False, opaque=None):
    """The value of one WWW-Authenticate or Proxy-Authenticate header."""
    parts = ["realm=%s" % quote(realm), "nonce=%s" % quote(nonce)]
    if opaque is not None:
        parts.append("opaque=%s" % quote(opaque))
    if stale:
        parts.append("stale=true")
    parts.append("algorithm=%s" % algorithm)
    if qop:
        parts.append("qop=%s" % quote(qop))
    return "Digest " + ", ".join(parts)


def format_credentials(username, realm, nonce, uri, response, algorithm=None, qop=None,
                       nc=None, cnonce=None, opaque=None):
    """The value of an Authorization or Proxy-Authorization header (clients, tests)."""
    parts = ["username=%s" % quote(username), "realm=%s" % quote(realm),
             "nonce=%s" % quote(nonce), "uri=%s" % quote(uri), "response=%s" % quote(response)]
    if algorithm:
        parts.append("algorithm=%s" % algorithm)
    if qop:
        parts += ["qop=%s" % qop, "nc=%s" % nc, "cnonce=%s" % quote(cnonce)]
    if opaque is not None:
        parts.append("opaque=%s" % quote(opaque))
    return "Digest " + ", ".join(parts)


def parse_auth(value):
    """
    (scheme, params) of a challenge or credentials value (RFC 3261 25.1,
    RFC 7235 2.1): the scheme lower-cased, the parameter names
    lower-cased, quoted values unquoted.

    @raise ParseError: when it is not "scheme name=value, ...".
    """
    value = value.strip()
    scheme, _, rest = value.partition(" ")
    if not is_token(scheme):
        raise ParseError("Bad authentication scheme")
    params = {}
    for item in split_commas(rest):
        name, eq, val = item.partition("=")
        name = name.strip().lower()
        if not eq or not is_token(name):
            raise ParseError("Bad authentication parameter")
        params[name] = unquote(val.strip())
    return scheme.lower(), params
