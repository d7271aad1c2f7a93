# -*- test-case-name: tests.test_proxy -*-
"""
The steps of RFC 3261 section 16 that stateful and stateless proxying
share: request validation (16.3), route pre-processing (16.4), whether a
URI is ours (what target selection, in L{sipcluster.routing}, builds on),
preparing a copy for one target (16.6), and turning a next-hop URI into a
transport address.
"""

import hashlib
import ipaddress
from hashlib import blake2s

from twisted.internet import defer

from sipcluster.proxy.pipeline import Respond
from sipcluster.sip.address import Address
from sipcluster.sip.grammar import remember
from sipcluster.sip.message import make_response
from sipcluster.sip.uri import SipURI
from sipcluster.sip.via import MAGIC_COOKIE, Via
from sipcluster.transport.base import bare_host, new_peer

# Methods that create a dialog, and so are record-routed (RFC 3261 16.6
# step 4; RFC 6665 for SUBSCRIBE/NOTIFY, RFC 3515 for REFER).
DIALOG_CREATING = frozenset(["INVITE", "SUBSCRIBE", "REFER", "NOTIFY"])
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, PRACK, UPDATE, INFO, MESSAGE, SUBSCRIBE, NOTIFY, REFER"
# Proxy-Require option tags this proxy implements (RFC 3261 16.3 step 5).
SUPPORTED_PROXY_OPTIONS = frozenset()


class Target:
    """
    One element of the target set: the URI to put in the Request-URI, its
    q-value, and where to actually send it when that is not derived from the
    URI (a NATed binding's source address, a Path route set, a next hop).

    @ivar next_hop: a URI to send to instead of the Request-URI when the
        request has no Route (Kamailio's destination URI, C{$du}): a
        destination of a set, with the Request-URI left as it came.
    @ivar timeout: seconds the branch may go without any response before
        it fails with 408 (tm's fr_timer), or None for the transaction's
        own timers; see L{sipcluster.proxy.context}.
    @ivar on_failed: callable(target, status) told when this branch fails
        without a response from downstream (its timeout, a transport
        error), or None: passive health marking.
    """

    __slots__ = ("uri", "q", "path", "received", "rank", "next_hop", "timeout", "on_failed")

    def __init__(self, uri, q=1.0, path=(), received=None, rank=0, next_hop=None,
                 timeout=None, on_failed=None):
        self.uri = uri
        self.q = q
        self.path = list(path)
        self.received = received
        # Within one q, lower ranks are tried first (region preference).
        self.rank = rank
        self.next_hop = next_hop
        self.timeout = timeout
        self.on_failed = on_failed

    def __repr__(self):
        return "<Target %s q=%s>" % (self.uri, self.q)


def short_hash(text, size):
    """
    C{size} bytes (as 2 * C{size} hex digits) of a hash of C{text}: the
    unique parts of branches.  BLAKE2s, CPython's own (no OpenSSL call):
    the third of MD5's cost through hashlib on texts this short, and the
    same on every node and worker, as loop detection and the branches of
    retransmissions need.
    """
    # A copy of an empty hash of that size: the same digest as
    # blake2s(data, digest_size=size) without parsing its dozen keyword
    # arguments on every call.
    empties = _EMPTY_HASHES
    empty = empties.get(size)
    if empty is None:
        empty = empties[size] = blake2s(digest_size=size)
    h = empty.copy()
    h.update(text.encode("utf-8", "surrogateescape"))
    return h.hexdigest()


# short_hash's empty hashes, by digest size.
_EMPTY_HASHES = {}


def loop_hash(request):
    """
    The part of a branch that detects loops (RFC 3261 16.6 step 8): a hash
    of what a looping request keeps unchanged.
    """
    # An ACK for a non-2xx response carries the To tag its INVITE did not:
    # without it, a stateless proxy gives the ACK the INVITE's branch, as
    # the next hop's transaction matching needs (RFC 3261 16.11, 17.2.3).
    # (The methods behind the message's properties: compiled, C calls on
    # the typed request, as everywhere in this module a Request is typed.)
    to_tag = "" if request.method == "ACK" else request._tag("to") or ""
    parts = "\x00".join((
        request._uri_text, request._tag("from") or "", to_tag,
        request._call_id() or "", str(request._cseq().number),
        ",".join(request.values("route")), ",".join(request.values("proxy-require")),
    ))
    return short_hash(parts, 6)


def stateless_branch_suffix(request, target_uri):
    """
    The unique part of a branch that is the same for every retransmission
    of C{request} and for its CANCEL and non-2xx ACK (RFC 3261 16.11),
    built from the received top Via.
    """
    via = request._top_via()
    branch = via.params.get("branch") or ""   # (compiled: a typed Via, its dict in C)
    seed = "%s\x00%s\x00%s" % (branch or str(via), target_uri,
                                "" if branch.startswith(MAGIC_COOKIE) else request._call_id())
    return short_hash(seed, 8)


class Forwarder:
    """
    @ivar transport: the L{TransportLayer} (local addresses, Via, sending).
    @ivar domains: the domains this node serves (lower-case).
    @ivar resolver: an IResolverSimple-like object with
        C{getHostByName(name)} returning a Deferred, for next hops named
        by host name.
    """

    # (An extension type in the compiled build, its methods called in C by
    # the proxy modules that know its type: see forwarding.pxd.)
    __slots__ = ("transport", "domains", "record_route", "resolver", "server_header",
                 "transports")

    def __init__(self, transport, domains, record_route=True, resolver=None,
                 server_header="", transports=("udp", "tcp")):
        self.transport = transport
        self.domains = frozenset(domains)
        self.record_route = record_route
        self.resolver = resolver
        self.server_header = server_header
        # The transports this node has: what RFC 3263 may choose among.
        self.transports = tuple(transports)

    # -- 16.3 ---------------------------------------------------------------

    def check(self, request):
        """
        RFC 3261 16.3 request validation beyond syntax (which the transport
        layer checked).  Raises L{Respond}.
        """
        if request._max_forwards() == 0:
            if request.method == "OPTIONS" and self.addressed_to_us(request):
                return
            raise Respond(483)
        ours = [v for v in request.values("via") if self.transport.mentions_local(v)]
        if ours:
            # Only a request that passed here before can loop: hash it then.
            prefix = MAGIC_COOKIE + loop_hash(request)
            for value in ours:
                via = Via.parse(value)
                if self.transport.is_local(via.host, via.port or 5060) and \
                        (via.branch or "").startswith(prefix):
                    raise Respond(482)
        unsupported = [t for t in request.option_tags("proxy-require")
                       if t not in SUPPORTED_PROXY_OPTIONS]
        if unsupported:
            raise Respond(420, headers=[("Unsupported", ", ".join(unsupported))])

    # -- 16.4 ---------------------------------------------------------------

    def is_own_uri(self, uri):
        if not isinstance(uri, SipURI):
            return False
        sip_uri = uri   # (compiled: a typed SipURI, read in C; so below)
        return self.transport.is_local(sip_uri.host, sip_uri._effective_port())

    def preprocess_routes(self, request):
        """
        RFC 3261 16.4: undo a strict router's rewrite, then remove our own
        Route entry.
        """
        uri = request._request_uri()
        if self.is_own_uri(uri) and uri.lr:
            routes = request.values("route")
            if routes:
                last = routes[-1]
                request.remove("route")
                for value in routes[:-1]:
                    request.add("route", value)
                request.uri = Address.parse(last).uri
        routes = request._address_list("route")
        if routes and self.is_own_uri(routes[0].uri):
            request.pop_first("route")
            # Double Record-Route (16.6 step 4) leaves two entries of ours.
            routes = request._address_list("route")
            if routes and self.is_own_uri(routes[0].uri):
                request.pop_first("route")

    # -- 16.5 ---------------------------------------------------------------

    def is_our_domain(self, uri):
        if not isinstance(uri, SipURI):
            return False
        sip_uri = uri
        host = sip_uri.host.lower()
        if sip_uri.port is not None and sip_uri.port not in self.transport.local_ports():
            return False
        return host in self.domains or self.transport.is_local(host, sip_uri._effective_port())

    def addressed_to_us(self, request):
        """A request for the proxy itself: our domain or address, no user part."""
        uri = request._request_uri()
        return isinstance(uri, SipURI) and uri.user is None and self.is_our_domain(uri) \
            and not request.has("route")

    # -- 16.6 ---------------------------------------------------------------

    def prepare(self, request, target, branch_suffix, inbound_transport, inbound_v6=None):
        """
        The copy of C{request} for C{target} (RFC 3261 16.6 steps 1-8), and
        the URI of its next hop.  Returns (copy, next_hop_uri, transport).

        The branch is the magic cookie, a hash of the copy as it leaves (so
        that it coming back unchanged is detected as a loop, 16.3 step 4)
        and C{branch_suffix}, unique per transaction and target.
        """
        out = request.copy()
        # (The methods behind the uri and max_forwards setters: compiled, C
        # calls on the typed copy, not the attribute protocol's.)
        out._set_uri(target.uri)
        mf = out._max_forwards()
        out.set("max-forwards", 69 if mf is None else mf - 1)
        if target.path:
            # RFC 3327 5: the Path route set leads to the registered contact.
            for value in reversed(target.path):
                out.add("route", value, top=True)
        if target.next_hop is not None and not out.has("route"):
            next_uri = target.next_hop
        else:
            next_uri = self.next_hop_uri(out)
        outbound = self.transport_for(next_uri, target.received)
        out_v6 = _is_v6(next_uri, target.received)
        if self.record_route and out.method in DIALOG_CREATING and out._tag("to") is None:
            inbound_uri = str(self.transport.record_route_uri(inbound_transport, inbound_v6))
            out.add("record-route", "<%s>" % inbound_uri, top=True)
            outbound_uri = str(self.transport.record_route_uri(outbound, out_v6))
            if outbound_uri != inbound_uri:
                # RFC 3261 16.6 step 4 / RFC 5658: one entry per side when
                # the transport or the address family changes.
                out.add("record-route", "<%s>" % outbound_uri, top=True)
        branch = "%s%s.%s" % (MAGIC_COOKIE, loop_hash(out), branch_suffix)
        out.push_via(self.transport.make_via(outbound, branch, out_v6))
        return out, next_uri, outbound

    def for_peer(self, out, peer, branch=None, inbound=None):
        """
        C{out} (from L{prepare}) as it goes to C{peer}: when the resolver
        chose another transport than the URI suggested (RFC 3263 NAPTR/SRV),
        or another address family, or a new transaction asks for a new
        C{branch}, a copy whose top Via says so -- and whose Record-Route,
        when we record-route, names our side toward C{peer}; else C{out}
        itself.  C{inbound}: the (transport, host) the request came from.
        """
        via = out._top_via()
        v6 = ":" in peer.host
        moved = via.transport.lower() != peer.transport or (":" in via.host) != v6
        if branch is None and not moved:
            return out
        out = out.copy()
        out.pop_via()
        out.push_via(self.transport.make_via(peer.transport, branch or via.params.get("branch"), v6))
        if moved and inbound is not None and self.record_route and \
                out.method in DIALOG_CREATING and out._tag("to") is None:
            # Our one or two entries (16.6 step 4) on top, made again for
            # the side the request now leaves by.
            for value in out.values("record-route")[:2]:
                if not self.is_own_uri(Address.parse(value).uri):
                    break
                out.pop_first("record-route")
            inbound_uri = str(self.transport.record_route_uri(inbound[0], ":" in inbound[1]))
            out.add("record-route", "<%s>" % inbound_uri, top=True)
            outbound_uri = str(self.transport.record_route_uri(peer.transport, v6))
            if outbound_uri != inbound_uri:
                out.add("record-route", "<%s>" % outbound_uri, top=True)
        return out

    def next_hop_uri(self, request):
        """
        RFC 3261 16.6 steps 6-7: the URI whose address we send to, fixing a
        strict-router first Route on the way.
        """
        routes = request._address_list("route")
        if not routes:
            return request._request_uri()
        first = routes[0].uri
        if isinstance(first, SipURI) and not first.lr:
            # Strict router: it wants the Route in the Request-URI and the
            # Request-URI at the end of the route set (16.6 step 6).
            request.pop_first("route")
            request.add("route", "<%s>" % request._request_uri())
            request.uri = first
            return first
        return first

    def transport_for(self, uri, received=None):
        if received is not None:
            return received[0]
        if isinstance(uri, SipURI):
            sip_uri = uri
            transport = sip_uri._transport()
            if transport:
                return "tcp" if transport in ("tcp", "tls") else "udp"
            if sip_uri.scheme == "sips":
                return "tcp"
        return "udp"

    def numeric_peer(self, uri, transport, received=None):
        """
        The L{Peer} for C{uri} when no lookup is needed (a flow, a numeric
        host), else None.  Raises L{Respond} for a URI we cannot send to.
        """
        if received is not None:
            return new_peer(received[0], received[1], received[2])
        if not isinstance(uri, SipURI):
            raise Respond(416)
        sip_uri = uri
        host = bare_host(sip_uri.params.get("maddr") or sip_uri.host)
        if not is_numeric(host):
            return None
        return new_peer(transport, host, sip_uri.port or (5061 if sip_uri.scheme == "sips" else 5060))

    def resolve(self, uri, transport, received=None):
        """
        A Deferred firing with the L{Peer}s to try in turn for C{uri} (RFC
        3263 4.3): one for a flow or a numeric host; for a name, what the
        resolver's NAPTR, SRV and A/AAAA lookups give, in order.  Fails
        with L{Respond} 502 when the name does not resolve.
        """
        try:
            peer = self.numeric_peer(uri, transport, received)
        except Respond:
            return defer.fail()
        if peer is not None:
            return defer.succeed([peer])
        host = bare_host(uri.param("maddr") or uri.host)
        if self.resolver is None:
            return defer.fail(Respond(502, "Cannot resolve %s" % host))
        d = self.resolver.resolve(uri, self.transports)
        d.addErrback(lambda f: _raise(Respond(502, "Cannot resolve %s" % host)))
        return d

    def cached_peers(self, uri):
        """
        The L{Peer}s of L{resolve} for a name when the resolver's cache has
        them all (no Deferred, no DNS question: the hot path), else None.
        """
        cached = getattr(self.resolver, "cached_peers", None)
        if cached is None:
            return None
        try:
            return cached(uri, self.transports)
        except Exception:
            return None  # let resolve() say why

    # -- local answers --------------------------------------------------------

    def local_response(self, request, status, reason=None, extra=(), to_tag=None):
        """A response of our own to C{request}."""
        if to_tag is None and request.to_tag is None and status > 100:
            to_tag = hashlib.md5(("%s%s" % (request.call_id, request.from_tag)).encode(
                "utf-8", "surrogateescape")).hexdigest()[:10]
        response = make_response(request, status, reason, to_tag, extra)
        if self.server_header:
            response.add("Server", self.server_header)
        return response

    def options_response(self, request):
        return self.local_response(request, 200, None, [
            ("Allow", ALLOW), ("Accept", "application/sdp"), ("Accept-Language", "en")])


def _is_v6(uri, received):
    """Whether the next hop is an IPv6 address; None when it is a name."""
    if received is not None:
        return ":" in received[1]
    if not isinstance(uri, SipURI):
        return None
    host = bare_host(uri.param("maddr") or uri.host)
    if ":" in host:
        return True
    return False if is_numeric(host) else None


# Hosts already classified by is_numeric: the next hops of a proxy are a
# few addresses, asked about on every forward.  Bounded: emptied when full.
_NUMERIC = {}
_NUMERIC_SIZE = 4096


def is_numeric(host):
    """Whether C{host} (no brackets) is an IPv4 or IPv6 address rather than a name."""
    memo = _NUMERIC
    numeric = memo.get(host)
    if numeric is None:
        numeric = remember(memo, host, _is_numeric(host), _NUMERIC_SIZE)
    return numeric


def _is_numeric(host):
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not part.isdigit() or len(part) > 3 or int(part) > 255:
            return False
    return True


def parse_alias(value):
    """(transport, host, port) of an alias parameter "host~port~transport", or None."""
    parts = value.split("~")
    if len(parts) != 3 or not parts[1].isdigit() or parts[2] not in ("udp", "tcp"):
        return None
    try:
        ipaddress.ip_address(parts[0])
    except ValueError:
        return None
    return (parts[2], parts[0], int(parts[1]))


def _raise(error):
    raise error
