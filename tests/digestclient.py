"""
A digest client for the tests, written from the RFC 7616 3.4.1 formulas
(not from the server's code paths): the credentials answering a challenge.
"""

import hashlib

NAMES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}


def _h(algorithm, text):
    return hashlib.new(NAMES[algorithm], text.encode("utf-8")).hexdigest()


def challenge_params(value):
    """The parameters of one challenge value (simple: no commas inside quotes)."""
    scheme, _, rest = value.partition(" ")
    assert scheme == "Digest", value
    out = {}
    for item in rest.split(","):
        name, _, val = item.strip().partition("=")
        out[name] = val.strip('"')
    return out


def credentials(challenge, method, uri, user, password, nc=1, cnonce="0a4f113b",
                algorithm=None, realm=None, nonce=None, qop="auth"):
    """The Authorization / Proxy-Authorization value answering C{challenge}."""
    c = challenge_params(challenge)
    algorithm = algorithm or c.get("algorithm", "MD5")
    realm = realm or c["realm"]
    nonce = nonce or c["nonce"]
    ha1 = _h(algorithm, "%s:%s:%s" % (user, realm, password))
    ha2 = _h(algorithm, "%s:%s" % (method, uri))
    ncs = nc if isinstance(nc, str) else "%08x" % nc  # a string: written as it is
    if qop:
        response = _h(algorithm, "%s:%s:%s:%s:%s:%s" % (ha1, nonce, ncs, cnonce, qop, ha2))
        tail = ', qop=%s, nc=%s, cnonce="%s"' % (qop, ncs, cnonce)
    else:
        response = _h(algorithm, "%s:%s:%s" % (ha1, nonce, ha2))
        tail = ""
    return ('Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", '
            'algorithm=%s%s' % (user, realm, nonce, uri, response, algorithm, tail))
