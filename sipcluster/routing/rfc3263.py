# -*- test-case-name: tests.test_rfc3263,tests.integration.test_rfc3263_dnsmasq -*-
"""
Locating SIP servers (RFC 3263): from a next-hop SIP or SIPS URI to the
ordered list of transport addresses a client tries in turn, through NAPTR,
SRV, A and AAAA records, with a cache honouring DNS TTLs (and negative
answers, RFC 2308) in front of the DNS so that a cached name costs no query.

L{SIPResolver} is built on a twisted.names C{IResolver} and never blocks
the reactor.  One procedure (L{SIPResolver._procedure}, a generator that
yields the DNS questions it needs and is sent their answers) serves both the
asynchronous L{SIPResolver.resolve} and the synchronous, cache-only
L{SIPResolver.cached_peers} of the hot path.

TLS: the node has no TLS transport yet.  Where RFC 3263 needs TLS (a SIPS
URI, C{transport=tls}, NAPTR C{SIPS+D2T}, SRV C{_sips._tcp}), the candidate
is given transport C{"tls"} when the node lists C{"tls"} among its
transports, and C{"tcp"} otherwise, as L{sipcluster.proxy.forwarding}
sends SIPS today.  For a SIP URI, TLS-only services are used only when the
node really has C{"tls"}.
"""

import ipaddress
import random as _random
import socket
from collections import OrderedDict

from twisted.internet import defer
from twisted.internet.defer import TimeoutError as _DeferTimeoutError
from twisted.names import client, dns, error, hosts, resolve

from sipcluster.schema import ConfigSection, Key, show
from sipcluster.sip.uri import SipURI
from sipcluster.transport.base import Peer, bare_host


def _server_list(values):
    for text in values:
        parse_server(text)
    return list(values)


def parse_server(text):
    """
    C{(host, port)} of a DNS server written C{host}, C{host:port} or
    C{[v6]:port}; the port defaults to 53.

    @raise ValueError: with what was expected.
    """
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError('expected "host:port", got %s' % show(text))
            port = rest[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError('expected a numeric DNS server "host:port", e.g. "127.0.0.1:53", '
                         'got %s' % show(text)) from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected a port from 1 to 65535 in %s" % show(text))
    return host, int(port)


CONFIG = ConfigSection("dns", {
    "servers": Key(list, [], 'DNS servers for next hops named by host name (RFC 3263 NAPTR, SRV, '
                   'A, AAAA), each "host:port" (numeric; port 53 when absent); empty: those of '
                   '/etc/resolv.conf (and /etc/hosts).', check=_server_list),
    "timeout_s": Key(float, 2.0, "How long one DNS question may go unanswered (sent again after "
                     "a third of it) before it counts as failed, in seconds.",
                     minimum=0.1, maximum=60),
    "negative_ttl_s": Key(int, 30, "How long a name or record type that does not exist stays "
                          "cached when the answer carries no SOA (RFC 2308), in seconds; 0: not "
                          "cached.", minimum=0, maximum=86400),
    "max_cache_entries": Key(int, 10000, "Most DNS answers (one per name and record type) kept in "
                             "the cache; the least recently used go first.", minimum=1),
})

# RFC 3263 4.1: the NAPTR services a SIP client may use, and the transport
# each leads to ("tls" is TLS over TCP).
NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
# RFC 3263 4.1/4.2: the SRV owner name of each transport, before the domain.
SRV_PREFIXES = {"udp": "_sip._udp.", "tcp": "_sip._tcp.", "tls": "_sips._tcp."}
# RFC 3263 4.2 (RFC 3261 19.1.2): the default port of each transport.
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}

_LOOKUPS = {
    dns.NAPTR: "lookupNamingAuthorityPointer",
    dns.SRV: "lookupService",
    dns.A: "lookupAddress",
    dns.AAAA: "lookupIPV6Address",
}
_TYPE_NAMES = {dns.NAPTR: "NAPTR", dns.SRV: "SRV", dns.A: "A", dns.AAAA: "AAAA"}


class ResolutionFailed(Exception):
    """
    A next hop that RFC 3263 leads to no transport address.

    @ivar name: the TARGET looked up (the URI's maddr or host), or the URI
        when it is not a SIP URI.
    @ivar reason: what went wrong, in one phrase.
    @ivar problems: C{(owner name, record type, what the DNS said)} for
        each question that gave nothing, in the order asked.
    """

    def __init__(self, name, reason, problems=()):
        Exception.__init__(self, name, reason)
        self.name = name
        self.reason = reason
        self.problems = list(problems)

    def __str__(self):
        text = "cannot resolve %s: %s" % (self.name, self.reason)
        if self.problems:
            text += " (%s)" % "; ".join("%s %s: %s" % p for p in self.problems)
        return text


class RecordCache:
    """
    DNS answers by C{(owner name, record type)}, each kept until its TTL
    runs out, the least recently used dropped beyond C{max_entries}.  An
    empty answer (NXDOMAIN, or no record of that type) is cached like any
    other (RFC 2308).

    @ivar clock: an C{IReactorTime}.
    """

    def __init__(self, clock, max_entries=10000):
        self.clock = clock
        self.max_entries = max_entries
        self._entries = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self):
        return len(self._entries)

    def get(self, key):
        """The records cached for C{key} (a tuple, maybe empty), or None."""
        entry = self._entries.get(key)
        if entry is not None:
            if self.clock.seconds() < entry[0]:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[1]
            del self._entries[key]
        self.misses += 1
        return None

    def put(self, key, records, ttl):
        # RFC 1035 3.2.1: a TTL of zero means "use for this transaction only".
        if ttl <= 0:
            self._entries.pop(key, None)
            return
        self._entries[key] = (self.clock.seconds() + ttl, records)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def order_srv(records, random):
    """
    SRV records C{(priority, weight, port, target)} in the order a client
    tries them (RFC 2782 "Usage rules"): lowest priority first; within a
    priority, a weighted random draw without replacement, where a record
    of weight w is drawn first with probability (w + 1) / (sum + 1) and
    weight 0 ones (placed first) only rarely.
    """
    if len(records) < 2:
        return list(records)
    ordered = []
    for priority in sorted(set(r[0] for r in records)):
        # RFC 2782: weight-0 records at the start of the list.
        group = sorted((r for r in records if r[0] == priority), key=lambda r: r[1] != 0)
        while group:
            total = sum(r[1] for r in group)
            # RFC 2782: "a uniform random number between 0 and the sum of
            # the weights (inclusive)", the first whose running sum reaches it.
            draw = random.randint(0, total)
            running = 0
            for i, record in enumerate(group):
                running += record[1]
                if running >= draw:
                    break
            ordered.append(group.pop(i))
    return ordered


def _is_address(host):
    """Whether C{host} (no brackets) is an IPv4 or IPv6 address rather than a name."""
    # On the hot path for every name: a domain name ends in a letter
    # (RFC 1123 2.1: top-level labels are alphabetic), and only an IPv6
    # address has a colon; only those go to the slower ipaddress parse.
    if ":" not in host and (not host or host[-1] not in "0123456789"):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _records(rtype, answers):
    """
    The payloads of C{answers} (twisted.names RRHeaders) of type C{rtype},
    as plain tuples and strings: what the cache holds.
    """
    out = []
    for rr in answers:
        if rr.type != rtype:
            continue  # a CNAME leading to the records
        p = rr.payload
        if rtype == dns.A:
            out.append(p.dottedQuad())
        elif rtype == dns.AAAA:
            out.append(socket.inet_ntop(socket.AF_INET6, p.address))
        elif rtype == dns.SRV:
            out.append((p.priority, p.weight, p.port,
                        p.target.name.decode("ascii").rstrip(".").lower()))
        elif rtype == dns.NAPTR:
            out.append((p.order, p.preference, p.flags.string.decode("ascii").lower(),
                        p.service.string.decode("ascii").upper(),
                        p.regexp.string.decode("ascii"),
                        p.replacement.name.decode("ascii").rstrip(".").lower()))
    return tuple(out)


def _negative_ttl(authority, default):
    """RFC 2308 5: a negative answer lives min(SOA TTL, SOA minimum), else C{default}."""
    for rr in authority or ():
        if rr.type == dns.SOA:
            return min(rr.ttl, rr.payload.minimum)
    return default


class SIPResolver:
    """
    The RFC 3263 client: L{resolve} turns a next-hop URI into the ordered
    L{Peer} candidates to try.

    @param resolver: a twisted.names C{IResolver} (only
        C{lookupNamingAuthorityPointer}, C{lookupService},
        C{lookupAddress} and C{lookupIPV6Address} are used).
    @param reactor: an C{IReactorTime}, for the cache's clock.
    @param negative_ttl: seconds a negative answer without SOA is cached.
    @param max_entries: bound of the cache (answers).
    @param random: a C{random.Random} for the SRV weighted draw.
    @param ipv6: whether to ask AAAA records (off for a node without IPv6).

    @ivar queries: the number of DNS questions sent so far.
    """

    def __init__(self, resolver, reactor, negative_ttl=30, max_entries=10000,
                 random=None, ipv6=True):
        self.resolver = resolver
        self.reactor = reactor
        self.negative_ttl = negative_ttl
        self.cache = RecordCache(reactor, max_entries)
        self.random = random if random is not None else _random.Random()
        self.address_types = (dns.A, dns.AAAA) if ipv6 else (dns.A,)
        self.queries = 0
        # Questions sent and not yet answered: requests for the same name
        # share one (no burst of queries on a cold cache).
        self._inflight = {}
        # (secure, node transports) -> (usable RFC 3263 transports, Peer names)
        self._transport_sets = {}

    @classmethod
    def from_config(cls, section, reactor, ipv6=True):
        """
        The resolver of a node from its C{[dns]} section (L{CONFIG});
        C{ipv6} False for a node with no IPv6 listen address, which could
        not send to the addresses of AAAA records.
        """
        return cls(build_dns_resolver(section.servers, section.timeout_s, reactor), reactor,
                   negative_ttl=section.negative_ttl_s, max_entries=section.max_cache_entries,
                   ipv6=ipv6)

    # -- the API ----------------------------------------------------------

    def resolve(self, uri, transports=("udp", "tcp")):
        """
        A Deferred firing with the ordered list of L{Peer} candidates for
        C{uri} (a L{SipURI}) over the node's C{transports}, the first to
        be tried first (RFC 3263 4.3); failing with L{ResolutionFailed}
        when there is none.  From the cache alone when it holds every
        answer needed: then the Deferred has already fired.
        """
        problems = []
        procedure = self._procedure(uri, transports, problems)
        try:
            outcome = self._advance(procedure, None, problems)
        except Exception:
            return defer.fail()
        if isinstance(outcome, list):
            return defer.succeed(outcome)
        return self._wait(procedure, outcome, problems)

    def cached_peers(self, uri, transports=("udp", "tcp")):
        """
        The candidates of L{resolve} when the cache holds every answer
        needed (no Deferred, no DNS question), else None.

        @raise ResolutionFailed: as L{resolve} fails.
        """
        procedure = self._procedure(uri, transports, [])
        outcome = self._advance(procedure, None, [])
        if isinstance(outcome, list):
            return outcome
        procedure.close()
        return None

    # -- driving the procedure ------------------------------------------------

    def _advance(self, procedure, answers, problems):
        """
        Run C{procedure} as far as the cache answers it: returns its list
        of peers, or C{(answers so far, questions missing)}.
        """
        cache_get = self.cache.get
        while True:
            try:
                questions = procedure.send(answers)
            except StopIteration as done:
                return done.value
            answers = {}
            missing = []
            for question in questions:
                records = cache_get(question)
                if records is None:
                    missing.append(question)
                else:
                    answers[question] = records
                    if not records:
                        problems.append((question[0], _TYPE_NAMES[question[1]], "no records"))
            if missing:
                return answers, missing

    def _wait(self, procedure, pending, problems):
        answers, missing = pending
        d = defer.gatherResults([self._ask(q, problems) for q in missing], consumeErrors=True)

        def answered(results):
            for question, records in zip(missing, results):
                answers[question] = records
            outcome = self._advance(procedure, answers, problems)
            if isinstance(outcome, list):
                return outcome
            return self._wait(procedure, outcome, problems)

        def unwrap(failure):
            # gatherResults wraps a failure of one question (a bug, not a
            # DNS answer: those became problems) in a FirstError.
            failure.trap(defer.FirstError)
            procedure.close()
            return failure.value.subFailure

        d.addCallbacks(answered, unwrap)
        return d

    def _ask(self, question, problems):
        """
        A Deferred firing with the records answering C{question}
        (C{(name, type)}), an empty tuple when the DNS gave none; shared
        by every request asking it while it is in flight.
        """
        mine = defer.Deferred()
        waiters = self._inflight.get(question)
        if waiters is not None:
            waiters.append((mine, problems))
            return mine
        # Registered before asking: a resolver may answer at once.
        self._inflight[question] = [(mine, problems)]
        self.queries += 1
        name, rtype = question
        d = getattr(self.resolver, _LOOKUPS[rtype])(name)
        d.addCallbacks(self._answered, self._failed, (question,), None, (question,))
        return mine

    def _answered(self, result, question):
        answers, authority, _ = result
        records = _records(question[1], answers)
        if records:
            # RFC 2181 5.2: one TTL per RRset; the smallest if they differ.
            ttl = min(rr.ttl for rr in answers)
            self._finish(question, records, ttl, None)
        else:
            # RFC 2308 2.2: NODATA, the name exists without that type.
            self._finish(question, (), _negative_ttl(authority, self.negative_ttl), "no records")

    def _failed(self, failure, question):
        if failure.check(error.DNSNameError):
            # RFC 2308 2.1: NXDOMAIN, cached like NODATA.
            message = failure.value.args[0] if failure.value.args else None
            ttl = _negative_ttl(getattr(message, "authority", ()), self.negative_ttl)
            self._finish(question, (), ttl, "NXDOMAIN")
        elif failure.check(error.DomainError, _DeferTimeoutError, OSError, NotImplementedError):
            # SERVFAIL, REFUSED, a timeout: not an answer about the name, so
            # not cached; the next request asks again.
            what = "timeout" if failure.check(_DeferTimeoutError) else \
                failure.type.__name__
            self._finish(question, (), 0, what)
        else:
            waiters = self._inflight.pop(question, [])
            for waiter, _ in waiters:
                waiter.errback(failure)

    def _finish(self, question, records, ttl, problem):
        self.cache.put(question, records, ttl)
        for waiter, problems in self._inflight.pop(question, []):
            if problem is not None:
                problems.append((question[0], _TYPE_NAMES[question[1]], problem))
            waiter.callback(records)

    # -- RFC 3263 ---------------------------------------------------------------

    def _procedure(self, uri, transports, problems):
        """
        RFC 3263 4.1 and 4.2 for C{uri}: yields tuples of DNS questions
        C{(owner name, record type)}, is sent a dict of their records, and
        returns the list of L{Peer} (4.3 order).
        """
        if not isinstance(uri, SipURI):
            raise ResolutionFailed(str(uri), "not a sip or sips URI")
        # RFC 3263 4: TARGET is the maddr parameter if present, else the host.
        # DNS names compare case-insensitively (RFC 4343): one cache entry.
        target = bare_host(uri.param("maddr") or uri.host).lower()
        secure = uri.scheme == "sips"
        if type(transports) is not tuple:
            transports = tuple(transports)
        key = (secure, transports)
        try:
            available, wire = self._transport_sets[key]
        except KeyError:
            available = _transports_for(secure, transports)
            wire = _wire_names(transports)
            self._transport_sets[key] = available, wire
        if not available:
            raise ResolutionFailed(target, "none of the transports %s can carry a %s URI"
                                   % ("/".join(transports), uri.scheme))
        transport = _explicit_transport(uri, secure, transports, target)
        default = transport or _default_transport(secure, available)

        # RFC 3263 4.1/4.2: a numeric TARGET needs no lookup at all.
        if _is_address(target):
            return [Peer(wire[default], target, uri.port or DEFAULT_PORTS[default])]
        # RFC 3263 4.2: an explicit port skips NAPTR and SRV: A/AAAA only.
        if uri.port is not None:
            questions = tuple((target, t) for t in self.address_types)
            answers = yield questions
            return self._peers(target, [(default, target, uri.port)], answers, wire, problems)

        if transport is not None:
            # RFC 3263 4.2: an explicit transport, SRV of that transport only.
            services = [(transport, SRV_PREFIXES[transport] + target)]
            determined = transport
        else:
            answers = yield ((target, dns.NAPTR),)
            services = _naptr_services(answers[(target, dns.NAPTR)], available)
            determined = services[0][0] if services else None
            if not services:
                # RFC 3263 4.1: no (usable) NAPTR, an SRV query for each
                # transport the node supports, in the node's order.
                services = [(t, SRV_PREFIXES[t] + target) for t in available]

        answers = yield tuple((name, dns.SRV) for _, name in services)
        hops = []
        found = False
        for t, name in services:
            records = answers[(name, dns.SRV)]
            if records:
                found = True
            for _, _, port, host in order_srv(records, self.random):
                # RFC 2782: a target of "." means "decidedly not available".
                if host not in ("", "."):
                    hops.append((t, host, port))
        if not found:
            # RFC 3263 4.2: no SRV, A/AAAA of TARGET at the transport's
            # default port (4.1: UDP for sip, TCP/TLS for sips).
            t = determined or default
            hops = [(t, target, DEFAULT_PORTS[t])]

        # RFC 3263 4.3: the A and AAAA records of every target, asked at once.
        names = []
        for _, host, _ in hops:
            if not _is_address(host) and host not in names:
                names.append(host)
        answers = yield tuple((host, t) for host in names for t in self.address_types)
        return self._peers(target, hops, answers, wire, problems)

    def _peers(self, target, hops, answers, wire, problems):
        peers = []
        seen = set()
        for t, host, port in hops:
            if _is_address(host):
                addresses = (host,)
            else:
                addresses = ()
                for rtype in self.address_types:
                    addresses += answers[(host, rtype)]
            for address in addresses:
                peer = Peer(wire[t], address, port)
                if peer not in seen:
                    seen.add(peer)
                    peers.append(peer)
        if not peers:
            raise ResolutionFailed(target, "no NAPTR, SRV, A or AAAA record leads to an address",
                                   problems)
        return peers


def _transports_for(secure, transports):
    """
    The RFC 3263 transports ("udp", "tcp", "tls") usable for a URI over the
    node's C{transports}, in the node's order.
    """
    if secure:
        # RFC 3263 4.1: a SIPS URI only over TLS; until the node has TLS, TCP
        # stands in for it (see the module docstring).
        return ("tls",) if "tls" in transports or "tcp" in transports else ()
    return tuple(t for t in transports if t in DEFAULT_PORTS)


def _wire_names(transports):
    """The L{Peer} transport of each RFC 3263 transport on this node."""
    return {"udp": "udp", "tcp": "tcp", "tls": "tls" if "tls" in transports else "tcp"}


def _explicit_transport(uri, secure, transports, target):
    """RFC 3263 4.1: the transport parameter, when there is one, wins."""
    param = uri.transport
    if param is None:
        return None
    if param == "tls" or (secure and param == "tcp"):
        # RFC 3261 26.2.2: sips with transport=tcp means TLS over TCP.
        transport = "tls"
    elif param == "udp" and not secure:
        transport = "udp"
    elif param == "tcp":
        transport = "tcp"
    else:
        raise ResolutionFailed(target, "transport=%s is not usable for a %s URI"
                               % (param, uri.scheme))
    if transport not in _transports_for(transport == "tls", transports):
        raise ResolutionFailed(target, "transport=%s: the node has no such transport" % param)
    return transport


def _default_transport(secure, available):
    # RFC 3263 4.1: UDP for a SIP URI, TCP (TLS) for a SIPS URI, when nothing
    # says otherwise; a node without UDP uses what it has.
    if secure:
        return "tls"
    return "udp" if "udp" in available else available[0]


def _naptr_services(records, available):
    """
    RFC 3263 4.1: the C{(transport, SRV owner name)} of the NAPTR records a
    client may follow, by order then preference (RFC 3403 4.1): SIP
    services the node has a transport for, with the "s" flag (an SRV
    lookup next) and a replacement rather than a regexp.
    """
    usable = []
    for order, preference, flags, service, regexp, replacement in records:
        transport = NAPTR_SERVICES.get(service)
        if transport is None or transport not in available:
            continue
        if flags != "s" or regexp or not replacement:
            continue
        usable.append((order, preference, transport, replacement))
    usable.sort(key=lambda r: (r[0], r[1]))
    return [(transport, replacement) for _, _, transport, replacement in usable]


# twisted.names' client listens on a new UDP port per question; its
# protocol logged "Starting/Stopping protocol" for each at info level (the
# port's own "starting on"/"Closed" lines remain).  Twisted's `noisy` is the
# switch meant for this.
dns.DNSDatagramProtocol.noisy = False


def build_dns_resolver(servers, timeout_s, reactor):
    """
    The twisted.names resolver asking C{servers} (strings "host:port"),
    or, when there are none, those of /etc/resolv.conf after /etc/hosts
    (as C{twisted.names.client.createResolver} builds it, but with our
    timeout and without its cache: L{SIPResolver} has its own).  One
    question is sent, then again after a third of C{timeout_s}.

    @param reactor: an C{IReactorTime}, C{IReactorUDP} and C{IReactorTCP}.
    """
    timeout = (timeout_s / 3.0, timeout_s * 2 / 3.0)
    if servers:
        return client.Resolver(servers=[parse_server(s) for s in servers], timeout=timeout,
                               reactor=reactor)
    return resolve.ResolverChain([
        hosts.Resolver(b"/etc/hosts"),
        client.Resolver(resolv="/etc/resolv.conf", timeout=timeout, reactor=reactor),
    ])
