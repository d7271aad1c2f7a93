"""
L{sipcluster.routing.rfc3263}: RFC 3263 server location against a fake
twisted.names resolver that counts the questions it is asked, with time on
a L{task.Clock}.
"""

import random
from collections import Counter

import pytest
from twisted.internet import defer, task
from twisted.names import client, dns, error, resolve
from twisted.python.failure import Failure

from sipcluster.routing import rfc3263
from sipcluster.routing.rfc3263 import (CONFIG, RecordCache, ResolutionFailed, SIPResolver,
                                        build_dns_resolver, order_srv, parse_server)
from sipcluster.sip.uri import parse_uri
from sipcluster.transport.base import Peer

A, AAAA, SRV, NAPTR = dns.A, dns.AAAA, dns.SRV, dns.NAPTR


class FakeDNS:
    """
    An IResolver answering from a dict the way twisted.names.client does:
    records, NODATA (an empty answer) for a name that has other types,
    DNSNameError carrying the message for a name that has none; every
    question recorded in C{asked}.
    """

    def __init__(self, soa_minimum=None, soa_ttl=3600):
        self.records = {}
        self.errors = {}
        self.asked = []
        self.held = None
        self.soa = []
        if soa_minimum is not None:
            self.soa = [dns.RRHeader(b"example.test", dns.SOA, ttl=soa_ttl, payload=dns.Record_SOA(
                mname=b"ns.example.test", minimum=soa_minimum, ttl=soa_ttl))]

    def add(self, name, payload, ttl=300):
        rtype = payload.TYPE
        self.records.setdefault((name, rtype), []).append(
            dns.RRHeader(name.encode(), rtype, ttl=ttl, payload=payload))
        return self

    def srv(self, name, priority, weight, port, target, ttl=300):
        return self.add(name, dns.Record_SRV(priority, weight, port, target.encode()), ttl)

    def a(self, name, address, ttl=300):
        return self.add(name, dns.Record_A(address), ttl)

    def aaaa(self, name, address, ttl=300):
        return self.add(name, dns.Record_AAAA(address), ttl)

    def naptr(self, name, order, preference, service, replacement, flags=b"s", ttl=300):
        return self.add(name, dns.Record_NAPTR(order, preference, flags, service.encode(), b"",
                                               replacement.encode()), ttl)

    def _lookup(self, name, rtype):
        self.asked.append((name, rtype))
        if self.held is not None:
            d = defer.Deferred()
            self.held.append((d, name, rtype))
            return d
        return self._answer(name, rtype)

    def _answer(self, name, rtype):
        if (name, rtype) in self.errors:
            return defer.fail(self.errors[(name, rtype)])
        answers = self.records.get((name, rtype))
        if answers:
            return defer.succeed((list(answers), [], []))
        if any(n == name for n, _ in self.records):
            return defer.succeed(([], list(self.soa), []))
        message = dns.Message(rCode=dns.ENAME)
        message.authority = list(self.soa)
        return defer.fail(error.DNSNameError(message))

    def release(self):
        held, self.held = self.held, []
        for d, name, rtype in held:
            self._answer(name, rtype).chainDeferred(d)

    def lookupNamingAuthorityPointer(self, name, timeout=None):
        return self._lookup(name, NAPTR)

    def lookupService(self, name, timeout=None):
        return self._lookup(name, SRV)

    def lookupAddress(self, name, timeout=None):
        return self._lookup(name, A)

    def lookupIPV6Address(self, name, timeout=None):
        return self._lookup(name, AAAA)


def uri(text):
    return parse_uri(text)


def result(d):
    """The result of an already fired Deferred (a failure is raised)."""
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


@pytest.fixture
def clock():
    return task.Clock()


def make(fake, clock, **kw):
    kw.setdefault("random", random.Random(7))
    return SIPResolver(fake, clock, **kw)


# -- RFC 3263 4.1/4.2 shortcuts ------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("sip:alice@192.0.2.1", Peer("udp", "192.0.2.1", 5060)),
    ("sip:alice@192.0.2.1:5070;transport=tcp", Peer("tcp", "192.0.2.1", 5070)),
    ("sips:alice@192.0.2.1", Peer("tcp", "192.0.2.1", 5061)),
    ("sip:alice@192.0.2.1;transport=tls", Peer("tcp", "192.0.2.1", 5061)),
    ("sip:[2001:db8::1]:5080", Peer("udp", "2001:db8::1", 5080)),
    # RFC 3263 4: maddr is the TARGET.
    ("sip:alice@example.test;maddr=192.0.2.9", Peer("udp", "192.0.2.9", 5060)),
])
def test_numeric_target_needs_no_lookup(clock, text, expected):
    fake = FakeDNS()
    assert result(make(fake, clock).resolve(uri(text))) == [expected]
    assert fake.asked == []


def test_numeric_target_over_tls_when_the_node_has_it(clock):
    fake = FakeDNS()
    peers = result(make(fake, clock).resolve(uri("sips:192.0.2.1"), ("udp", "tcp", "tls")))
    assert peers == [Peer("tls", "192.0.2.1", 5061)]


def test_explicit_port_asks_only_a_and_aaaa(clock):
    fake = FakeDNS().a("example.test", "192.0.2.1").aaaa("example.test", "2001:db8::1")
    fake.naptr("example.test", 10, 10, "SIP+D2T", "_sip._tcp.example.test")
    fake.srv("_sip._tcp.example.test", 0, 0, 5090, "other.example.test")
    peers = result(make(fake, clock).resolve(uri("sip:bob@example.test:5070")))
    assert peers == [Peer("udp", "192.0.2.1", 5070), Peer("udp", "2001:db8::1", 5070)]
    assert sorted(fake.asked) == [("example.test", A), ("example.test", AAAA)]


def test_explicit_transport_asks_that_srv_only(clock):
    fake = FakeDNS().a("t.example.test", "192.0.2.3")
    fake.naptr("example.test", 10, 10, "SIP+D2U", "_sip._udp.example.test")
    fake.srv("_sip._udp.example.test", 0, 0, 5060, "u.example.test")
    fake.srv("_sip._tcp.example.test", 0, 0, 5062, "t.example.test")
    peers = result(make(fake, clock).resolve(uri("sip:bob@example.test;transport=TCP")))
    assert peers == [Peer("tcp", "192.0.2.3", 5062)]
    assert ("example.test", NAPTR) not in fake.asked
    assert ("_sip._udp.example.test", SRV) not in fake.asked


def test_maddr_name_is_looked_up_instead_of_the_host(clock):
    fake = FakeDNS().a("proxy.example.test", "192.0.2.4")
    resolver = make(fake, clock)
    peers = result(resolver.resolve(uri("sip:bob@example.test;maddr=proxy.example.test")))
    assert peers == [Peer("udp", "192.0.2.4", 5060)]
    assert all(name.endswith("proxy.example.test") for name, _ in fake.asked)
    # Names are case-insensitive: the same cache entries.
    asked = len(fake.asked)
    assert result(resolver.resolve(uri("sip:bob@Example.TEST;maddr=Proxy.Example.Test"))) == peers
    assert len(fake.asked) == asked


def test_explicit_transport_the_node_lacks_fails(clock):
    fake = FakeDNS()
    resolver = make(fake, clock)
    with pytest.raises(ResolutionFailed) as raised:
        result(resolver.resolve(uri("sip:bob@example.test;transport=tcp"), ("udp",)))
    assert raised.value.name == "example.test"
    for text in ("sips:bob@example.test;transport=udp", "sip:bob@example.test;transport=sctp"):
        with pytest.raises(ResolutionFailed):
            result(resolver.resolve(uri(text)))
    with pytest.raises(ResolutionFailed):
        result(resolver.resolve(uri("tel:+15551234")))
    assert fake.asked == []


# -- NAPTR -------------------------------------------------------------------------


def naptr_zone():
    fake = FakeDNS()
    fake.naptr("example.test", 20, 1, "SIP+D2U", "_sip._udp.example.test")
    fake.naptr("example.test", 10, 50, "SIP+D2U", "_sip._udp.alt.example.test")
    fake.naptr("example.test", 10, 20, "SIP+D2T", "_sip._tcp.example.test")
    fake.naptr("example.test", 5, 1, "SIPS+D2T", "_sips._tcp.example.test")
    fake.naptr("example.test", 1, 1, "E2U+sip", "_whatever.example.test")
    # Not a terminal SRV rule: "u" is a URI, not an SRV name to look up.
    fake.naptr("example.test", 1, 1, "SIP+D2T", "_sip._udp.example.test", flags=b"u")
    fake.srv("_sip._udp.example.test", 0, 0, 5060, "u.example.test")
    fake.srv("_sip._udp.alt.example.test", 0, 0, 5060, "alt.example.test")
    fake.srv("_sip._tcp.example.test", 0, 0, 5060, "t.example.test")
    fake.srv("_sips._tcp.example.test", 0, 0, 5061, "s.example.test")
    for n, host in enumerate(("u", "alt", "t", "s")):
        fake.a("%s.example.test" % host, "192.0.2.%d" % (n + 1))
    return fake


def test_naptr_order_then_preference_over_the_node_transports(clock):
    fake = naptr_zone()
    peers = result(make(fake, clock).resolve(uri("sip:bob@example.test")))
    # SIPS+D2T (order 5) needs TLS the node lacks; E2U is not SIP, the
    # "u" flag is not an SRV rule; then
    # order 10 by preference (tcp 20, udp 50), then order 20.
    assert peers == [Peer("tcp", "192.0.2.3", 5060), Peer("udp", "192.0.2.2", 5060),
                     Peer("udp", "192.0.2.1", 5060)]
    # NAPTR gave SRV names: no SRV guessed from the domain.
    assert ("_sip._tcp.example.test", SRV) in fake.asked
    assert ("_sips._tcp.example.test", SRV) not in fake.asked


def test_naptr_tls_first_when_the_node_has_tls(clock):
    peers = result(make(naptr_zone(), clock).resolve(uri("sip:bob@example.test"),
                                                       ("udp", "tcp", "tls")))
    assert peers[0] == Peer("tls", "192.0.2.4", 5061)


def test_naptr_sips_uri_follows_only_sips_services(clock):
    peers = result(make(naptr_zone(), clock).resolve(uri("sips:bob@example.test")))
    assert peers == [Peer("tcp", "192.0.2.4", 5061)]


def test_naptr_only_transports_the_node_has(clock):
    peers = result(make(naptr_zone(), clock).resolve(uri("sip:bob@example.test"), ("udp",)))
    assert [p.transport for p in peers] == ["udp", "udp"]


def test_no_naptr_srv_for_each_transport_in_the_node_order(clock):
    fake = FakeDNS()
    fake.srv("_sip._udp.example.test", 0, 0, 5060, "u.example.test")
    fake.srv("_sip._tcp.example.test", 0, 0, 5070, "t.example.test")
    fake.a("u.example.test", "192.0.2.1").a("t.example.test", "192.0.2.2")
    resolver = make(fake, clock)
    assert result(resolver.resolve(uri("sip:example.test"))) == [
        Peer("udp", "192.0.2.1", 5060), Peer("tcp", "192.0.2.2", 5070)]
    assert result(resolver.resolve(uri("sip:example.test"), ("tcp", "udp"))) == [
        Peer("tcp", "192.0.2.2", 5070), Peer("udp", "192.0.2.1", 5060)]
    assert ("example.test", NAPTR) in fake.asked
    assert ("_sips._tcp.example.test", SRV) not in fake.asked


def test_no_naptr_no_srv_a_and_aaaa_on_the_default_port(clock):
    fake = FakeDNS().a("example.test", "192.0.2.1").aaaa("example.test", "2001:db8::1")
    resolver = make(fake, clock)
    assert result(resolver.resolve(uri("sip:example.test"))) == [
        Peer("udp", "192.0.2.1", 5060), Peer("udp", "2001:db8::1", 5060)]
    assert result(resolver.resolve(uri("sips:example.test"))) == [
        Peer("tcp", "192.0.2.1", 5061), Peer("tcp", "2001:db8::1", 5061)]
    assert ("_sips._tcp.example.test", SRV) in fake.asked


def test_ipv6_off_asks_no_aaaa(clock):
    fake = FakeDNS().a("example.test", "192.0.2.1").aaaa("example.test", "2001:db8::1")
    peers = result(make(fake, clock, ipv6=False).resolve(uri("sip:example.test")))
    assert peers == [Peer("udp", "192.0.2.1", 5060)]
    assert all(rtype != AAAA for _, rtype in fake.asked)


# -- SRV ordering (RFC 2782, RFC 3263 4.3) ---------------------------------------------


def test_srv_priority_ascending_then_a_and_aaaa_of_each_target(clock):
    fake = FakeDNS()
    fake.srv("_sip._udp.example.test", 20, 0, 5062, "backup.example.test")
    fake.srv("_sip._udp.example.test", 10, 0, 5060, "main.example.test")
    fake.a("main.example.test", "192.0.2.1").aaaa("main.example.test", "2001:db8::1")
    fake.a("backup.example.test", "192.0.2.2")
    peers = result(make(fake, clock).resolve(uri("sip:example.test"), ("udp",)))
    assert peers == [Peer("udp", "192.0.2.1", 5060), Peer("udp", "2001:db8::1", 5060),
                     Peer("udp", "192.0.2.2", 5062)]


def test_srv_target_without_address_is_skipped_for_the_next(clock):
    # The first target "dies" in DNS: the caller's list starts at the second.
    fake = FakeDNS()
    fake.srv("_sip._udp.example.test", 10, 0, 5060, "dead.example.test")
    fake.srv("_sip._udp.example.test", 20, 0, 5060, "alive.example.test")
    fake.a("alive.example.test", "192.0.2.2")
    peers = result(make(fake, clock).resolve(uri("sip:example.test"), ("udp",)))
    assert peers == [Peer("udp", "192.0.2.2", 5060)]


def test_srv_targets_written_as_addresses_and_repeated_ones(clock):
    # RFC 2782 asks for a name; an address is taken as it is (no question
    # asked for it), and a peer two records lead to is tried once.
    fake = FakeDNS()
    fake.srv("_sip._udp.example.test", 10, 0, 5060, "192.0.2.7")
    fake.srv("_sip._udp.example.test", 20, 0, 5060, "a.example.test")
    fake.srv("_sip._udp.example.test", 30, 0, 5060, "b.example.test")
    fake.a("a.example.test", "192.0.2.1").a("b.example.test", "192.0.2.1")
    peers = result(make(fake, clock).resolve(uri("sip:example.test"), ("udp",)))
    assert peers == [Peer("udp", "192.0.2.7", 5060), Peer("udp", "192.0.2.1", 5060)]
    assert ("192.0.2.7", A) not in fake.asked


def test_srv_dot_target_means_not_available(clock):
    fake = FakeDNS().a("example.test", "192.0.2.1")
    fake.srv("_sip._udp.example.test", 0, 0, 0, ".")
    with pytest.raises(ResolutionFailed):
        result(make(fake, clock).resolve(uri("sip:example.test"), ("udp",)))
    # Neither "." nor the domain's own A record is looked up.
    assert fake.asked == [("example.test", NAPTR), ("_sip._udp.example.test", SRV)]


def test_order_srv_weights_statistically():
    rng = random.Random(1234)
    records = [(10, 60, 5060, "a"), (10, 40, 5060, "b"), (5, 0, 5060, "first")]
    firsts = Counter()
    seconds = Counter()
    draws = 20000
    for _ in range(draws):
        ordered = order_srv(records, rng)
        assert ordered[0][3] == "first"
        assert sorted(ordered) == sorted(records)
        firsts[ordered[1][3]] += 1
    # RFC 2782: drawn first with probability (w + 1) / (sum + 1) = 61/101.
    assert abs(firsts["a"] / draws - 61 / 101) < 0.015
    zero = [(0, 0, 1, "zero"), (0, 10, 1, "ten")]
    for _ in range(draws):
        seconds[order_srv(zero, rng)[0][3]] += 1
    # Weight 0 first only when the draw is 0: 1/11.
    assert abs(seconds["zero"] / draws - 1 / 11) < 0.01


def test_weighted_order_varies_per_request_from_the_cache(clock):
    fake = FakeDNS()
    fake.srv("_sip._udp.example.test", 0, 75, 5060, "a.example.test")
    fake.srv("_sip._udp.example.test", 0, 25, 5060, "b.example.test")
    fake.a("a.example.test", "192.0.2.1").a("b.example.test", "192.0.2.2")
    resolver = make(fake, clock, random=random.Random(99))
    firsts = Counter()
    for _ in range(4000):
        firsts[result(resolver.resolve(uri("sip:example.test"), ("udp",)))[0].host] += 1
    assert abs(firsts["192.0.2.1"] / 4000 - 76 / 101) < 0.03
    assert len(fake.asked) == 6  # NAPTR, SRV, A and AAAA of each: then only the cache


# -- the cache ---------------------------------------------------------------------


def srv_zone():
    fake = FakeDNS()
    fake.srv("_sip._udp.example.test", 0, 0, 5060, "n1.example.test", ttl=600)
    fake.a("n1.example.test", "192.0.2.1", ttl=60)
    fake.aaaa("n1.example.test", "2001:db8::1", ttl=60)
    return fake


def test_cached_name_asks_nothing_until_its_ttl_runs_out(clock):
    fake = srv_zone()
    resolver = make(fake, clock, negative_ttl=600)
    first = result(resolver.resolve(uri("sip:example.test"), ("udp",)))
    asked = len(fake.asked)
    assert asked == 4  # NAPTR (negative), SRV, A, AAAA
    clock.advance(59)
    assert result(resolver.resolve(uri("sip:example.test"), ("udp",))) == first
    assert resolver.cached_peers(uri("sip:example.test"), ("udp",)) == first
    assert len(fake.asked) == asked
    clock.advance(1)
    result(resolver.resolve(uri("sip:example.test"), ("udp",)))
    # The addresses expired (TTL 60), not the SRV (600) nor the negative
    # NAPTR (no SOA: negative_ttl 600).
    assert sorted(fake.asked[asked:]) == [("n1.example.test", A), ("n1.example.test", AAAA)]
    assert resolver.queries == len(fake.asked)


def test_negative_answer_cached_for_the_soa_minimum(clock):
    fake = FakeDNS(soa_minimum=120).a("example.test", "192.0.2.1")
    resolver = make(fake, clock, negative_ttl=5)
    result(resolver.resolve(uri("sip:example.test"), ("udp",)))
    asked = len(fake.asked)
    assert ("example.test", NAPTR) in fake.asked  # NODATA
    assert ("_sip._udp.example.test", SRV) in fake.asked  # NXDOMAIN
    clock.advance(119)
    result(resolver.resolve(uri("sip:example.test"), ("udp",)))
    assert len(fake.asked) == asked
    clock.advance(1)
    result(resolver.resolve(uri("sip:example.test"), ("udp",)))
    assert ("example.test", NAPTR) in fake.asked[asked:]
    assert ("_sip._udp.example.test", SRV) in fake.asked[asked:]


def test_negative_answer_without_soa_cached_for_negative_ttl(clock):
    fake = FakeDNS()
    resolver = make(fake, clock, negative_ttl=10)
    for _ in range(3):
        with pytest.raises(ResolutionFailed) as raised:
            result(resolver.resolve(uri("sip:nowhere.test"), ("udp",)))
    assert raised.value.name == "nowhere.test"
    assert "nowhere.test" in str(raised.value)
    assert ("nowhere.test", "A", "no records") in raised.value.problems
    assert len(fake.asked) == 4  # NAPTR, SRV, A, AAAA: once
    clock.advance(10)
    with pytest.raises(ResolutionFailed) as raised:
        result(resolver.resolve(uri("sip:nowhere.test"), ("udp",)))
    assert ("nowhere.test", "A", "NXDOMAIN") in raised.value.problems
    assert len(fake.asked) == 8


def test_failures_other_than_nxdomain_are_not_cached(clock):
    fake = FakeDNS().a("example.test", "192.0.2.1")
    fake.errors[("example.test", NAPTR)] = error.DNSQueryTimeoutError(1)
    fake.errors[("_sip._udp.example.test", SRV)] = error.DNSServerError(dns.Message())
    resolver = make(fake, clock)
    assert result(resolver.resolve(uri("sip:example.test"), ("udp",))) == [
        Peer("udp", "192.0.2.1", 5060)]
    asked = len(fake.asked)
    result(resolver.resolve(uri("sip:example.test"), ("udp",)))
    assert fake.asked[asked:] == [("example.test", NAPTR), ("_sip._udp.example.test", SRV)]


def test_unexpected_resolver_error_is_not_hidden(clock):
    fake = FakeDNS()
    fake.errors[("example.test", NAPTR)] = KeyError("bug")
    with pytest.raises(KeyError):
        result(make(fake, clock).resolve(uri("sip:example.test")))


def test_zero_ttl_is_not_cached(clock):
    fake = FakeDNS().a("example.test", "192.0.2.1", ttl=0)
    resolver = make(fake, clock)
    result(resolver.resolve(uri("sip:example.test:5060")))
    result(resolver.resolve(uri("sip:example.test:5060")))
    assert fake.asked.count(("example.test", A)) == 2


def test_requests_during_a_lookup_share_its_questions(clock):
    fake = srv_zone()
    fake.held = []
    resolver = make(fake, clock)
    first = resolver.resolve(uri("sip:example.test"), ("udp",))
    second = resolver.resolve(uri("sip:example.test"), ("udp",))
    assert fake.asked == [("example.test", NAPTR)]
    while fake.held:
        fake.release()
    # Each question once although two requests waited on it.
    assert Counter(fake.asked).most_common(1)[0][1] == 1
    assert result(first) == result(second) == [Peer("udp", "192.0.2.1", 5060),
                                              Peer("udp", "2001:db8::1", 5060)]


def test_cached_peers_is_none_until_cached(clock):
    fake = srv_zone()
    resolver = make(fake, clock)
    assert resolver.cached_peers(uri("sip:example.test"), ("udp",)) is None
    assert fake.asked == []
    result(resolver.resolve(uri("sip:example.test"), ("udp",)))
    assert resolver.cached_peers(uri("sip:example.test"), ("udp",))[0] == \
        Peer("udp", "192.0.2.1", 5060)
    assert resolver.cached_peers(uri("sip:192.0.2.8")) == [Peer("udp", "192.0.2.8", 5060)]
    with pytest.raises(ResolutionFailed):
        resolver.cached_peers(uri("sips:example.test;transport=udp"))


def test_cache_is_bounded_least_recently_used_first(clock):
    cache = RecordCache(clock, max_entries=3)
    for n in range(3):
        cache.put(("n%d" % n, A), ("192.0.2.%d" % n,), 60)
    assert cache.get(("n0", A)) == ("192.0.2.0",)
    cache.put(("n3", A), ("192.0.2.3",), 60)
    assert len(cache) == 3
    assert cache.get(("n1", A)) is None  # the least recently used went
    assert cache.get(("n0", A)) == ("192.0.2.0",)
    fake = FakeDNS()
    resolver = make(fake, clock, max_entries=2)
    with pytest.raises(ResolutionFailed):
        result(resolver.resolve(uri("sip:nowhere.test")))
    assert len(resolver.cache) == 2


# -- configuration -----------------------------------------------------------------


def test_parse_server():
    assert parse_server("127.0.0.1:5399") == ("127.0.0.1", 5399)
    assert parse_server("192.0.2.1") == ("192.0.2.1", 53)
    assert parse_server("[::1]:5353") == ("::1", 5353)
    assert parse_server("[::1]") == ("::1", 53)
    assert parse_server("::1") == ("::1", 53)
    for bad in ("dns.example.test:53", "127.0.0.1:0", "127.0.0.1:x", "[::1]x"):
        with pytest.raises(ValueError):
            parse_server(bad)
    assert CONFIG.keys["servers"].convert(["127.0.0.1:53"]) == ["127.0.0.1:53"]
    with pytest.raises(ValueError):
        CONFIG.keys["servers"].convert(["localhost"])


def test_build_dns_resolver_asks_only_the_configured_servers(clock):
    resolver = build_dns_resolver(["127.0.0.9:5399", "[::1]:53"], 3.0, clock)
    assert isinstance(resolver, client.Resolver)
    assert resolver.servers == [("127.0.0.9", 5399), ("::1", 53)]
    assert resolver.resolv is None  # /etc/resolv.conf not read
    assert resolver.timeout == (1.0, 2.0)
    system = build_dns_resolver([], 2.0, clock)
    assert isinstance(system, resolve.ResolverChain)


def test_from_config(clock):
    class Section:
        servers = ["127.0.0.9:5399"]
        timeout_s = 1.5
        negative_ttl_s = 7
        max_cache_entries = 5
    resolver = SIPResolver.from_config(Section, clock)
    assert resolver.negative_ttl == 7 and resolver.cache.max_entries == 5
    assert resolver.resolver.servers == [("127.0.0.9", 5399)]
    assert resolver.address_types == (A, AAAA)
    assert SIPResolver.from_config(Section, clock, ipv6=False).address_types == (A,)
    assert sorted(CONFIG.keys) == ["max_cache_entries", "negative_ttl_s", "servers", "timeout_s"]


@pytest.mark.parametrize("host, numeric", [
    ("192.0.2.1", True), ("2001:db8::1", True), ("::ffff:192.0.2.1", True),
    ("example.test", False), ("n1", False), ("1.2.3", False), ("999.0.0.1", False), ("", False),
])
def test_is_address(host, numeric):
    assert rfc3263._is_address(host) is numeric


def test_transports_may_be_a_list(clock):
    peers = result(make(FakeDNS(), clock).resolve(uri("sip:192.0.2.1"), ["tcp"]))
    assert peers == [Peer("tcp", "192.0.2.1", 5060)]


@pytest.mark.parametrize("text,message", [
    ("dns.example.test:53",
     'expected a numeric DNS server "host:port", e.g. "127.0.0.1:53", got "dns.example.test:53"'),
    ("127.0.0.1:0", 'expected a port from 1 to 65535 in "127.0.0.1:0"'),
    ("127.0.0.1:65536", 'expected a port from 1 to 65535 in "127.0.0.1:65536"'),
    ("127.0.0.1:x", 'expected a port from 1 to 65535 in "127.0.0.1:x"'),
    ("[::1]x", 'expected "host:port", got "[::1]x"'),
    ("[::1]:53]", 'expected a port from 1 to 65535 in "[::1]:53]"'),
])
def test_a_bad_dns_server_says_what_was_expected(text, message):
    with pytest.raises(ValueError) as e:
        parse_server(text)
    assert str(e.value) == message


def test_dns_server_ports_at_the_bounds():
    assert parse_server("127.0.0.1:1") == ("127.0.0.1", 1)
    assert parse_server("127.0.0.1:65535") == ("127.0.0.1", 65535)


def test_a_resolution_failure_says_the_name_the_reason_and_each_question():
    failure = rfc3263.ResolutionFailed("example.test", "no address", [
        ("_sip._udp.example.test", "SRV", "no such name"), ("example.test", "A", "timeout")])
    assert str(failure) == ("cannot resolve example.test: no address "
                            "(_sip._udp.example.test SRV: no such name; example.test A: timeout)")
    assert (failure.name, failure.reason) == ("example.test", "no address")
    assert str(rfc3263.ResolutionFailed("example.test", "no address")) == \
        "cannot resolve example.test: no address"


def test_unusable_naptr_records_before_the_usable_ones_are_skipped(clock):
    # RFC 3263 4.1 / RFC 3403: whatever order the answer lists them in,
    # records the client may not follow are passed over, not an end.
    fake = FakeDNS()
    fake.naptr("example.test", 1, 1, "SIP+D2T", "_sip._udp.example.test", flags=b"u")
    fake.naptr("example.test", 1, 1, "E2U+sip", "_whatever.example.test")
    fake.naptr("example.test", 5, 1, "SIPS+D2T", "_sips._tcp.example.test")
    fake.add("example.test", dns.Record_NAPTR(2, 1, b"s", b"SIP+D2U", b"!^.*$!sip:x@y!",
                                              b"_sip._udp.rx.example.test"))
    # Same order: by preference (udp 10 before tcp 20), whatever the names.
    fake.naptr("example.test", 10, 20, "SIP+D2T", "_sip._tcp.example.test")
    fake.naptr("example.test", 10, 10, "SIP+D2U", "_sip._udp.example.test")
    fake.srv("_sip._udp.example.test", 0, 0, 5060, "u.example.test")
    fake.srv("_sip._tcp.example.test", 0, 0, 5060, "t.example.test")
    fake.srv("_sip._udp.rx.example.test", 0, 0, 5060, "rx.example.test")
    fake.a("u.example.test", "192.0.2.1").a("t.example.test", "192.0.2.2")
    fake.a("rx.example.test", "192.0.2.9")
    peers = result(make(fake, clock).resolve(uri("sip:bob@example.test")))
    assert peers == [Peer("udp", "192.0.2.1", 5060), Peer("tcp", "192.0.2.2", 5060)]
    assert ("_sip._udp.rx.example.test", SRV) not in fake.asked


def test_a_cname_before_the_records_is_passed_over(clock):
    fake = FakeDNS().srv("_sip._udp.example.test", 0, 0, 5070, "u.example.test")
    fake.records[("_sip._udp.example.test", SRV)].insert(0, dns.RRHeader(
        b"_sip._udp.example.test", dns.CNAME, payload=dns.Record_CNAME(b"other.example.test")))
    fake.a("u.example.test", "192.0.2.1")
    peers = result(make(fake, clock).resolve(uri("sip:bob@example.test"), ("udp",)))
    assert peers == [Peer("udp", "192.0.2.1", 5070)]


def test_udp_is_the_default_transport_whatever_the_node_lists_first(clock):
    peers = result(make(FakeDNS(), clock).resolve(uri("sip:192.0.2.1"), ["tcp", "udp"]))
    assert peers == [Peer("udp", "192.0.2.1", 5060)]
    peers = result(make(FakeDNS(), clock).resolve(uri("sip:192.0.2.1;transport=udp"), ["tcp", "udp"]))
    assert peers == [Peer("udp", "192.0.2.1", 5060)]


def test_a_sips_uri_needs_tcp_or_tls_on_the_node(clock):
    d = make(FakeDNS(), clock).resolve(uri("sips:bob@192.0.2.1"), ["udp", "sctp"])
    with pytest.raises(ResolutionFailed) as e:
        result(d)
    assert str(e.value) == "cannot resolve 192.0.2.1: none of the transports udp/sctp can carry a sips URI"
    peers = result(make(FakeDNS(), clock).resolve(uri("sips:bob@192.0.2.1"), ["udp", "tcp"]))
    assert peers == [Peer("tcp", "192.0.2.1", 5061)]


def test_an_ipv6_address_ending_in_a_letter_is_an_address():
    assert rfc3263._is_address("2001:db8::a") and rfc3263._is_address("fe80::1:abcd")


def test_a_one_second_ttl_is_cached_for_that_second(clock):
    fake = FakeDNS().a("example.test", "192.0.2.1", ttl=1)
    resolver = make(fake, clock)
    result(resolver.resolve(uri("sip:example.test:5060")))
    clock.advance(0.5)
    result(resolver.resolve(uri("sip:example.test:5060")))
    assert fake.asked.count(("example.test", A)) == 1
    clock.advance(0.6)
    result(resolver.resolve(uri("sip:example.test:5060")))
    assert fake.asked.count(("example.test", A)) == 2


def test_without_servers_the_system_resolver_reads_hosts_then_resolv_conf(clock):
    # As twisted.names.client.createResolver builds it: /etc/hosts first,
    # then the servers of /etc/resolv.conf, with our timeout and reactor.
    from twisted.names import hosts
    system = build_dns_resolver([], 3.0, clock)
    first, second = system.resolvers
    assert isinstance(first, hosts.Resolver) and first.file == b"/etc/hosts"
    assert isinstance(second, client.Resolver) and second.resolv == "/etc/resolv.conf"
    assert second.timeout == (1.0, 2.0) and second._reactor is clock
    configured = build_dns_resolver(["127.0.0.9:5399"], 3.0, clock)
    assert configured._reactor is clock


def test_from_config_gives_the_resolvers_the_reactor(clock):
    class Section:
        servers = ["127.0.0.9:5399"]
        timeout_s = 1.5
        negative_ttl_s = 7
        max_cache_entries = 5
    resolver = SIPResolver.from_config(Section, clock)
    assert resolver.reactor is clock and resolver.resolver._reactor is clock


def test_a_zero_ttl_answer_replaces_what_was_cached(clock):
    cache = RecordCache(clock)
    cache.put(("example.test", A), ("old",), 300)
    cache.put(("example.test", A), ("new",), 0)
    assert cache.get(("example.test", A)) is None and len(cache) == 0
