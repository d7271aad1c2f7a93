# -*- test-case-name: tests.test_auth -*-
"""
Digest authentication of requests (RFC 3261 22, RFC 7616, RFC 8760): a
C{request} stage that challenges a REGISTER for our domains with 401 and
WWW-Authenticate (we are its registrar, a UAS) and any other request
with 407 and Proxy-Authenticate (we are a proxy), one challenge per
configured algorithm, strongest first, and checks the answers.

Nonces are stateless: the time they were issued and random bytes, signed
with HMAC-SHA-256 under a secret every node of the cluster shares
(L{ClusterSecret}: kept in the store, or one node's own), so any node
verifies a nonce any other node issued without asking anyone.  A nonce
past C{auth.nonce_expires_s} is answered with a new challenge and
stale=true (RFC 7616 3.3); one whose signature does not verify (forged,
tampered, or from before the secret changed) with a new challenge.
Replays are refused by nonce-count tracking (RFC 7616 3.4, 5.12) within
a nonce's life, per node.

Which requests need authentication is one decision,
L{requires_authentication}, the seam the routing rules plug into.
"""

import base64
import hmac
import os
import struct
from collections import deque
from hashlib import sha256

from twisted.internet import defer
from twisted.logger import Logger

from sipcluster.cluster.store import StoreFollower
from sipcluster.policy import digest
from sipcluster.proxy.pipeline import REQUEST, Respond, Stage
from sipcluster.schema import ConfigSection, CrossKeyError, Key
from sipcluster.sip.errors import SIPError
from sipcluster.sip.uri import SipURI


def algorithm_list(values):
    if not values:
        raise ValueError("expected at least one algorithm")
    out = []
    for text in values:
        name = digest.canonical_algorithm(text)
        if name is None:
            raise ValueError('expected algorithms among "MD5", "SHA-256", "SHA-512-256", got "%s"'
                             % text)
        if not digest.available(name):
            raise ValueError("%s is not available in this Python's OpenSSL" % name)
        if name not in out:
            out.append(name)
    return out


def method_list(values):
    return [v.upper() for v in values]


def _check(values, sections):
    if values["verify"] == "radius":
        if not sections["radius"]["servers"]:
            raise CrossKeyError("radius.servers", 'expected at least one server with auth.verify = "radius"')
        if values["algorithms"] != ["MD5"]:
            raise CrossKeyError("auth.algorithms", 'expected ["MD5"] with auth.verify = "radius" '
                                                   "(FreeRADIUS's digest module computes MD5 only)")
        return
    if values["enabled"] and not values["users_file"] and sections["store"]["backend"] != "etcd":
        raise CrossKeyError("auth.users_file", 'expected a users file, or store.backend = "etcd" '
                                               '(users in the cluster store)')


CONFIG = ConfigSection("auth", {
    "enabled": Key(bool, False, "Digest authentication (RFC 3261 22): REGISTER for our domains challenged with 401, other requests with 407, as requires_authentication decides (see \"Authentication and access\")."),
    "realm": Key(str, "", "Realm of the challenges and of the users' HA1s; empty: the first of sip.domains."),
    "algorithms": Key(list, ["SHA-512-256", "SHA-256", "MD5"], "Digest algorithms offered, one challenge each, strongest first (RFC 8760); users need an HA1 for at least one.",
                      check=algorithm_list),
    "methods": Key(list, [], "Methods challenged, besides REGISTER (always, for our domains); empty: every method but ACK and CANCEL.",
                   check=method_list),
    "users_file": Key(str, "", "JSON file of users (HA1s, never passwords; written by sipcluster user --file), re-read within a second of a change. Empty: users from the cluster store (<prefix>/users/, store.backend = etcd)."),
    "nonce_expires_s": Key(int, 300, "Life of a nonce: an answer to an older one gets a new challenge with stale=true.", minimum=10, maximum=86400),
    "secret": Key(str, "", "Key signing the nonces of a single node (keep it secret); empty: a random one at start. In a cluster the key is kept in the store (<prefix>/auth/secret) and this is not used."),
    "verify": Key(str, "local", "Who checks the answers: local (the users of auth.users_file or the store) or radius (the [radius] servers, as Kamailio's auth_radius; MD5 only). Nonces stay this node's either way.",
                  choices=("local", "radius")),
    "check_identity": Key(bool, True, "A user may register only their own AOR and send only as their own From identity (403 otherwise)."),
    "strongest_first": Key(bool, True, "Order the challenges strongest algorithm first (RFC 8760 7). false: in the order of auth.algorithms, for clients that give up at the first algorithm they do not know (baresip 1.0 / libre 1.1 with SHA-256 before MD5)."),
}, check=_check)


# -- nonces -------------------------------------------------------------------

class ClusterSecret(StoreFollower):
    """
    The key nonces are signed with.  Without a store it is given (or
    random); with one it is read from C{<prefix>/auth/secret}, created
    there by whichever node comes first, and followed.

    @ivar key: bytes, or None until the store answered.
    """

    log = Logger()

    def __init__(self, key=None, store=None, prefix="/sipcluster"):
        self.key = key.encode("utf-8") if isinstance(key, str) else key
        self.store = store
        self.store_key = "%s/auth/secret" % prefix.rstrip("/")
        if store is None and not self.key:
            self.key = os.urandom(32)

    @property
    def ready(self):
        return bool(self.key)

    def start(self):
        """Follow the store's key (a Deferred), creating it first if absent."""
        fresh = base64.b64encode(os.urandom(32))
        d = self.store.create(self.store_key, fresh)
        return d.addCallback(lambda _: self._follow(self.store_key))


    def _resync(self, items, revision):
        for key, value, _ in items:
            if key == self.store_key and value:
                self.key = bytes(value)

    def _events(self, events):
        for kind, key, value, _ in events:
            if key == self.store_key and kind == "put" and value:
                self.log.info("nonce secret changed in the store")
                self.key = bytes(value)


_PAYLOAD = struct.Struct(">Q8s")  # issue time in milliseconds, random
_MAC_SIZE = 16


def make_nonce(key, realm, now):
    """A nonce issued at C{now}: base64url(time, random, HMAC(time, random, realm))."""
    payload = _PAYLOAD.pack(int(now * 1000), os.urandom(8))
    mac = hmac.new(key, payload + realm.encode("utf-8"), sha256).digest()[:_MAC_SIZE]
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode("ascii")


def nonce_issued(key, realm, nonce):
    """When C{nonce} was issued (seconds), or None when we did not sign it."""
    try:
        raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
    except (ValueError, TypeError):
        return None
    if len(raw) != _PAYLOAD.size + _MAC_SIZE:
        return None
    payload, mac = raw[:_PAYLOAD.size], raw[_PAYLOAD.size:]
    expected = hmac.new(key, payload + realm.encode("utf-8"), sha256).digest()[:_MAC_SIZE]
    if not hmac.compare_digest(mac, expected):
        return None
    return _PAYLOAD.unpack(payload)[0] / 1000.0


class NonceCounts:
    """
    The highest nonce-count seen per nonce, for its life (RFC 7616 3.4:
    the server detects replays by nc).  The same nc again is accepted
    only from the same transaction (Via branch): a UDP retransmission a
    stateless node sees again, not a replay.  Bounded: the oldest
    entries go first when C{limit} are held.
    """

    def __init__(self, life, limit=200000):
        self.life = life
        self.limit = limit
        self._seen = {}  # nonce -> (nc, branch)
        self._order = deque()  # (forget_at, nonce)

    def __len__(self):
        return len(self._seen)

    def fresh(self, nonce, nc, branch, now):
        """Whether C{nc} may be used with C{nonce} now; remembered if so."""
        self._expire(now)
        seen = self._seen.get(nonce)
        if seen is not None:
            if nc < seen[0] or (nc == seen[0] and branch != seen[1]):
                return False
            if nc == seen[0]:
                return True
        else:
            self._order.append((now + self.life, nonce))
        self._seen[nonce] = (nc, branch)
        return True

    def _expire(self, now):
        order = self._order
        while order and (order[0][0] <= now or len(order) > self.limit):
            _, nonce = order.popleft()
            self._seen.pop(nonce, None)


# -- which requests -------------------------------------------------------------

def _host(uri):
    return uri.host.lower() if isinstance(uri, SipURI) else None


def rule_requires(rules, default):
    """
    A C{requires} for L{DigestAuthentication} that lets the routing rules
    decide (C{authenticate = true/false} on a rule, first match wins, as
    the routing itself), and C{default(context)} when the matching rule
    says nothing or none matches.  C{rules()} gives the routing stage (a
    L{RoutingRules}, read at each call: a reload replaces its rules), or
    None.
    """
    def requires(context):
        request = context.request
        if request.method in ("ACK", "CANCEL") or request.to_tag is not None or \
                context.vars.get("trusted"):
            return False
        routing = rules()
        if routing is not None and not request.has("route"):
            rule = routing.decide(context)
            if rule is not None and rule.authenticate is not None:
                return rule.authenticate
        return default(context)
    return requires


def requires_authentication(context, domains, methods=(), is_ours=None):
    """
    Whether the request of C{context} must carry our credentials.  The
    one place this is decided: override it (pass C{requires=} to
    L{DigestAuthentication}) to implement other policies; the routing
    rules plug in here.  By default:

      - never ACK or CANCEL (RFC 3261 22.1: they cannot be resubmitted
        with credentials), nor a request inside a dialog (To tag: the
        dialog was authenticated when it was set up), nor one from a
        trusted peer (C{context.vars["trusted"]}, L{sipcluster.policy.acl}),
        nor an OPTIONS for the node itself (keepalives of trunks and load
        balancers);
      - always a REGISTER the node's registrar takes (for one of
        C{domains}, or for the node's own address);
      - otherwise, when its method is among C{methods} (empty: any), a
        request to us (as for the REGISTER) or from one of C{domains}
        (From host).

    @param domains: the served domains, lower case (sip.domains), by name.
    @param is_ours: callable(uri): whether a Request-URI is served here
        (the Forwarder's is_our_domain: the domains and the node's own
        addresses, as the registrar and the location service see it);
        None: its host among C{domains}.  Without it, a REGISTER for
        sip:bob@NODE-ADDRESS would be stored unauthenticated.
    """
    request = context.request
    method = request.method
    if method in ("ACK", "CANCEL") or request.to_tag is not None or context.vars.get("trusted"):
        return False
    ours = is_ours(request.uri) if is_ours is not None else _host(request.uri) in domains
    if method == "REGISTER":
        return ours
    if methods and method not in methods:
        return False
    if method == "OPTIONS" and isinstance(request.uri, SipURI) and request.uri.user is None:
        return False
    return ours or _host(request.from_.uri) in domains


class DigestAuthentication(Stage):
    """
    The C{request} stage of C{[auth]}.

    @ivar users: a L{sipcluster.policy.users} directory (C{lookup(name)},
        C{ready}).
    @ivar secret: the L{ClusterSecret}.
    @ivar stats: counters: challenged, stale, forged, replayed,
        wrong (a response that did not verify), accepted, forbidden.
    """

    log = Logger()
    name = "auth"
    points = (REQUEST,)

    def __init__(self, users, secret, clock, realm, domains, algorithms=("SHA-256", "MD5"),
                 methods=(), nonce_expires=300, check_identity=True, requires=None,
                 verifier=None, strongest_first=True):
        self.users = users
        self.secret = secret
        self.clock = clock
        self.realm = realm
        self.domains = frozenset(d.lower() for d in domains)
        self.algorithms = digest.strongest_first(algorithms) if strongest_first else \
            list(algorithms)
        self.methods = frozenset(methods)
        self.nonce_expires = nonce_expires
        self.check_identity = check_identity
        self.nonce_counts = NonceCounts(nonce_expires)
        # Something answering verify(params, method) with a Deferred of a
        # bool (RADIUS) instead of the local users' HA1s, or None.
        self.verifier = verifier
        if requires is not None:
            self.requires = requires
        self.stats = dict.fromkeys(("challenged", "stale", "forged", "replayed", "wrong",
                                    "accepted", "forbidden", "unavailable"), 0)

    def requires(self, context):
        return requires_authentication(context, self.domains, self.methods)

    def on_request(self, context):
        if not self.requires(context):
            return None
        if not (self.secret.ready and self.users.ready):
            # Never let a request through unauthenticated because we could
            # not check it.
            raise Respond(503, "Service Unavailable (authentication not ready)",
                          [("Retry-After", "5")])
        request = context.request
        registrar = request.method == "REGISTER"
        header = "authorization" if registrar else "proxy-authorization"
        ours, others = self._credentials(request, header)
        if ours is None:
            raise self._challenge(registrar)
        if self.verifier is not None:
            d = self._verify_remotely(context, ours, registrar)
            return d.addCallback(lambda _: self._accept(context, ours, registrar, header, others))
        self._verify(context, ours, registrar)
        self._accept(context, ours, registrar, header, others)
        return None

    def _accept(self, context, params, registrar, header, others):
        """The answer was right: the nonce's age and count, the identity, then on."""
        request = context.request
        user = params["username"]
        self._check_nonce_use(context, params, registrar)
        self._check_identity(request, user, registrar)
        # Our credentials end here (RFC 3261 22.3: a proxy removes those
        # for its realm); those for other realms go on.
        request.remove(header)
        for value in others:
            request.add(header, value)
        context.vars["user"] = user
        context.vars["realm"] = self.realm
        self.stats["accepted"] += 1

    def _credentials(self, request, header):
        """(our credentials' params or None, the other header values as written)."""
        ours = None
        others = []
        for value in request.values(header):
            try:
                scheme, params = digest.parse_auth(value)
            except SIPError:
                others.append(value)
                continue
            if ours is None and scheme == "digest" and params.get("realm") == self.realm:
                ours = params
            else:
                others.append(value)
        return ours, others

    def _challenge(self, registrar, stale=False):
        self.stats["challenged"] += 1
        nonce = make_nonce(self.secret.key, self.realm, self.clock.seconds())
        name = "WWW-Authenticate" if registrar else "Proxy-Authenticate"
        headers = [(name, digest.format_challenge(self.realm, nonce, a, "auth", stale))
                   for a in self.algorithms]
        if registrar:
            return Respond(401, "Unauthorized", headers)
        return Respond(407, "Proxy Authentication Required", headers)

    def _precheck(self, context, params, registrar):
        """The algorithm and the nonce's signature; raise a new challenge if not ours."""
        request = context.request
        algorithm = digest.canonical_algorithm(params.get("algorithm"))
        if algorithm not in self.algorithms or not params.get("username") \
                or "response" not in params or "uri" not in params \
                or params.get("qop") not in ("auth", "auth-int"):
            # RFC 7616 3.4: qop is required (it carries the nonce count
            # replays are detected by).
            raise self._challenge(registrar)
        try:
            int(params.get("nc", ""), 16)
        except ValueError:
            raise self._challenge(registrar) from None
        issued = nonce_issued(self.secret.key, self.realm, params.get("nonce", ""))
        if issued is None or issued > self.clock.seconds() + 5:
            self.stats["forged"] += 1
            self.log.info("{method} from {source}: nonce not ours (forged or tampered)",
                          method=request.method, source=context.source.host)
            raise self._challenge(registrar)
        return algorithm

    def _wrong(self, context, params, registrar):
        self.stats["wrong"] += 1
        self.log.info("{method} from {source}: wrong credentials for {user}",
                      method=context.request.method, source=context.source.host,
                      user=params.get("username"))
        return self._challenge(registrar)

    def _verify(self, context, params, registrar):
        """Check the response against the user's HA1, or raise the new challenge."""
        request = context.request
        algorithm = self._precheck(context, params, registrar)
        record = self.users.lookup(params["username"])
        ha1 = None
        if record is not None and record.get("realm") == self.realm:
            ha1 = record["ha1"].get(algorithm)
        if ha1 is None:
            raise self._wrong(context, params, registrar)
        expected = digest.request_digest(
            algorithm, ha1, params["nonce"], request.method, params["uri"], params["qop"],
            params.get("nc"), params.get("cnonce", ""), request.body)
        if not hmac.compare_digest(expected, params["response"].lower()):
            raise self._wrong(context, params, registrar)

    def _verify_remotely(self, context, params, registrar):
        """
        The same through the AAA server (L{sipcluster.policy.radius}): a
        Deferred failing with the new challenge, or 503 when no server
        answers (never a pass).
        """
        from sipcluster.policy.radius import RadiusUnavailable
        try:
            self._precheck(context, params, registrar)
        except Respond as e:
            return defer.fail(e)

        def answered(accepted):
            if not accepted:
                raise self._wrong(context, params, registrar)

        def unavailable(failure):
            failure.trap(RadiusUnavailable)
            self.stats["unavailable"] += 1
            raise Respond(503, "Service Unavailable (authentication server)",
                          [("Retry-After", "5")])
        d = self.verifier.verify(params, context.request.method)
        return d.addCallbacks(answered, unavailable)

    def _check_nonce_use(self, context, params, registrar):
        """The answer was right: is its nonce still fresh, its count new?"""
        request = context.request
        now = self.clock.seconds()
        issued = nonce_issued(self.secret.key, self.realm, params["nonce"])
        if now - issued > self.nonce_expires:
            # The password was right; the nonce is only old (RFC 7616 3.3).
            self.stats["stale"] += 1
            raise self._challenge(registrar, stale=True)
        if not self.nonce_counts.fresh(params["nonce"], int(params["nc"], 16),
                                       request.top_via.branch, now):
            self.stats["replayed"] += 1
            self.log.info("{method} from {source}: replayed nonce count for {user}",
                          method=request.method, source=context.source.host,
                          user=params["username"])
            raise self._challenge(registrar)

    def _check_identity(self, request, user, registrar):
        if not self.check_identity:
            return
        uri = request.to.uri if registrar else request.from_.uri
        if isinstance(uri, SipURI) and uri.user == user and \
                (uri.host.lower() in self.domains or uri.host.lower() == self.realm):
            return
        self.stats["forbidden"] += 1
        raise Respond(403, "Forbidden (%s is not %s's)" % ("To" if registrar else "From", user))
