"""The cluster's DNS zone in-process: records from membership, regions, etcd lost."""

from twisted.logger import globalLogPublisher
from twisted.names import dns

from sipcluster.routing.clusterdns import ClusterZone, parse_regions


class FakeMembership:
    connected = True

    def __init__(self, nodes):
        self.nodes = nodes


def nodes():
    return {"a": {"addresses": ["udp:10.0.0.1:5060", "tcp:10.0.0.1:5060"], "region": "eu",
                  "state": "active"},
            "b": {"addresses": ["udp:[2001:db8::2]:5070"], "region": "us", "state": "active"},
            "c": {"addresses": ["udp:10.0.0.3:5060"], "region": "eu", "state": "draining"}}


def answer(zone, name, rtype, region=None):
    result = []
    zone.lookup(dns.Query(name, rtype, dns.IN), region).addBoth(result.append)
    return result[0]


def test_records_of_the_active_nodes():
    zone = ClusterZone(FakeMembership(nodes()), "Sip.Example.Test.", ttl=7)
    answers, authority, additional = answer(zone, "_sip._udp.sip.example.test", dns.SRV)
    assert sorted((r.payload.priority, r.payload.port, r.payload.target.name) for r in answers) == [
        (10, 5060, b"a.sip.example.test"), (10, 5070, b"b.sip.example.test")]
    assert sorted(r.type for r in additional) == [dns.A, dns.AAAA]
    answers, _, _ = answer(zone, "sip.example.test", dns.A)
    assert [r.payload.dottedQuad() for r in answers] == ["10.0.0.1"]  # c drains
    answers, _, _ = answer(zone, "b.sip.example.test", dns.AAAA)
    assert [r.payload._address for r in answers] and all(r.ttl == 7 for r in answers)
    # tcp: only node a has it
    answers, _, _ = answer(zone, "_sip._tcp.sip.example.test", dns.SRV)
    assert [r.payload.target.name for r in answers] == [b"a.sip.example.test"]
    # A name of the zone with no record of that type: NODATA with the SOA.
    answers, authority, _ = answer(zone, "a.sip.example.test", dns.MX)
    assert answers == [] and authority[0].type == dns.SOA
    assert answer(zone, "x.sip.example.test", dns.A).check(dns.AuthoritativeDomainError)
    assert answer(zone, "example.org", dns.A).check(dns.DomainError)


def test_the_clients_region_comes_first():
    zone = ClusterZone(FakeMembership(nodes()), "sip.example.test",
                       regions=parse_regions(["us=192.0.2.0/24", "eu=10.0.0.0/8"]))
    assert zone.region_of("192.0.2.9") == "us" and zone.region_of("172.16.0.1") is None
    answers, _, _ = answer(zone, "_sip._udp.sip.example.test", dns.SRV, region="us")
    assert sorted((r.payload.priority, r.payload.target.name) for r in answers) == [
        (10, b"b.sip.example.test"), (20, b"a.sip.example.test")]
    # No node of the client's region: no preference.
    answers, _, _ = answer(zone, "_sip._udp.sip.example.test", dns.SRV, region="asia")
    assert {r.payload.priority for r in answers} == {10}


def test_etcd_lost_answers_with_what_was_last_seen_and_says_so_once():
    membership = FakeMembership(nodes())
    zone = ClusterZone(membership, "sip.example.test")
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        membership.connected = False
        for _ in range(3):
            answers, _, _ = answer(zone, "sip.example.test", dns.A)
            assert [r.payload.dottedQuad() for r in answers] == ["10.0.0.1"]
    finally:
        globalLogPublisher.removeObserver(seen.append)
    warnings = [e for e in seen if "etcd unreachable" in e.get("log_format", "")]
    assert len(warnings) == 1
