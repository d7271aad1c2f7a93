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


# -- on the wire: DNS messages in and out of the service's sockets --------------------


def serve(membership=None, zone="sip.example.test", ttl=7, regions=()):
    """A ClusterDNSService on in-memory sockets: (service, reactor)."""
    from sipcluster.routing.clusterdns import ClusterDNSService
    from tests.harness import NodeReactor
    reactor = NodeReactor()
    dns_zone = ClusterZone(membership or FakeMembership(nodes()), zone, ttl=ttl,
                           regions=parse_regions(regions))
    service = ClusterDNSService(reactor, dns_zone, ["127.0.0.1:5353", "[::1]:5354"])
    service.startService()
    return service, reactor


def ask(reactor, name, rtype, source=("192.0.2.9", 40000), rd=0, interface=("127.0.0.1", 5353)):
    """The reply (a dns.Message) to one query, as written back to C{source}."""
    query = dns.Message(id=4242, recDes=rd)
    query.queries = [dns.Query(name, rtype, dns.IN)]
    protocol = reactor.protocols[interface]
    sock = [s for s in reactor.sockets if (s.host, s.port) == interface][0]
    del sock.written[:]
    protocol.datagramReceived(query.toStr(), source)
    (data, addr), = sock.written
    assert addr == source
    reply = dns.Message()
    reply.fromStr(data)
    assert reply.id == 4242 and reply.answer and reply.auth
    return reply


def test_the_service_listens_on_udp_and_tcp_at_each_address():
    service, reactor = serve()
    assert sorted(reactor.protocols) == [("127.0.0.1", 5353), ("::1", 5354)]
    assert sorted((port, interface) for port, _, _, interface in reactor.tcpServers) == [
        (5353, "127.0.0.1"), (5354, "::1")]
    assert ask(reactor, "sip.example.test", dns.A, interface=("::1", 5354)).rCode == dns.OK
    service.stopService()
    assert service.ports == []


def test_naptr_records_name_the_srv_of_each_transport_in_order():
    # RFC 3263 4.1: UDP (order 10) before TCP (order 20), flag "s".
    service, reactor = serve()
    reply = ask(reactor, "sip.example.test", dns.NAPTR)
    assert reply.rCode == dns.OK
    naptrs = sorted((r.payload.order, r.payload.preference, r.payload.flags.string,
                     r.payload.service.string, r.payload.regexp.string,
                     r.payload.replacement.name, r.ttl) for r in reply.answers)
    assert naptrs == [(10, 10, b"s", b"SIP+D2U", b"", b"_sip._udp.sip.example.test", 7),
                      (20, 10, b"s", b"SIP+D2T", b"", b"_sip._tcp.sip.example.test", 7)]


def test_only_transports_some_node_has_get_a_naptr():
    only_udp = {"a": {"addresses": ["udp:10.0.0.1:5060"], "state": "active"}}
    service, reactor = serve(FakeMembership(only_udp))
    reply = ask(reactor, "sip.example.test", dns.NAPTR)
    assert [r.payload.service.string for r in reply.answers] == [b"SIP+D2U"]


def test_srv_records_weight_port_target_and_ttl():
    service, reactor = serve()
    reply = ask(reactor, "_sip._udp.sip.example.test", dns.SRV)
    srvs = sorted((r.payload.priority, r.payload.weight, r.payload.port, r.payload.target.name,
                   r.ttl) for r in reply.answers)
    assert srvs == [(10, 10, 5060, b"a.sip.example.test", 7), (10, 10, 5070, b"b.sip.example.test", 7)]
    # The targets' addresses come along (RFC 2782).
    assert sorted((r.name.name, r.type, r.ttl) for r in reply.additional) == [
        (b"a.sip.example.test", dns.A, 7), (b"b.sip.example.test", dns.AAAA, 7)]


def test_the_zone_apex_has_soa_ns_and_every_active_address():
    service, reactor = serve()
    reply = ask(reactor, "sip.example.test", dns.ALL_RECORDS)
    by_type = {}
    for r in reply.answers:
        by_type.setdefault(r.type, []).append(r)
    soa, = by_type[dns.SOA]
    assert (soa.payload.mname.name, soa.payload.rname.name) == (
        b"a.sip.example.test", b"hostmaster.sip.example.test")
    assert (soa.payload.serial, soa.payload.refresh, soa.payload.retry, soa.payload.expire,
            soa.payload.minimum, soa.ttl) == (1, 60, 30, 600, 7, 7)
    assert sorted(r.payload.name.name for r in by_type[dns.NS]) == [
        b"a.sip.example.test", b"b.sip.example.test"]
    assert all(r.ttl == 7 for r in by_type[dns.NS])
    assert [r.payload.dottedQuad() for r in by_type[dns.A]] == ["10.0.0.1"]
    assert len(by_type[dns.AAAA]) == 1 and by_type[dns.AAAA][0].ttl == 7


def test_a_name_not_in_the_zone_is_nxdomain_with_the_soa():
    # RFC 2308: negative answers carry the SOA so they are cached.
    service, reactor = serve()
    reply = ask(reactor, "nobody.sip.example.test", dns.A)
    assert reply.rCode == dns.ENAME and reply.answers == []
    soa, = reply.authority
    assert soa.type == dns.SOA and soa.payload.minimum == 7


def test_a_name_of_another_zone_is_refused():
    service, reactor = serve()
    reply = ask(reactor, "www.example.org", dns.A, rd=1)
    assert reply.rCode == dns.EREFUSED and reply.answers == [] and reply.authority == []


def test_an_existing_name_without_that_type_is_nodata_with_the_soa():
    service, reactor = serve()
    reply = ask(reactor, "a.sip.example.test", dns.MX)
    assert reply.rCode == dns.OK and reply.answers == []
    assert [r.type for r in reply.authority] == [dns.SOA]


def test_names_are_matched_without_case_or_trailing_dot():
    service, reactor = serve()
    for name in ("A.SIP.Example.Test", "a.sip.example.test."):
        reply = ask(reactor, name, dns.A)
        assert [r.payload.dottedQuad() for r in reply.answers] == ["10.0.0.1"]
    assert ask(reactor, "xsip.example.test", dns.A).rCode == dns.EREFUSED


def test_the_asking_clients_region_decides_srv_priorities():
    service, reactor = serve(regions=["us=192.0.2.0/24", "eu=10.0.0.0/8"])
    reply = ask(reactor, "_sip._udp.sip.example.test", dns.SRV, source=("192.0.2.9", 40000))
    assert sorted((r.payload.priority, r.payload.target.name) for r in reply.answers) == [
        (10, b"b.sip.example.test"), (20, b"a.sip.example.test")]
    reply = ask(reactor, "_sip._udp.sip.example.test", dns.SRV, source=("10.1.2.3", 40000))
    assert sorted((r.payload.priority, r.payload.target.name) for r in reply.answers) == [
        (10, b"a.sip.example.test"), (20, b"b.sip.example.test")]


def test_node_ids_become_dns_labels():
    odd = {"Node_1.eu": {"addresses": ["udp:10.0.0.1:5060"], "state": "active"},
           "--": {"addresses": ["udp:10.0.0.2:5060"], "state": "active"},
           "x" * 70: {"addresses": ["udp:10.0.0.3:5060"], "state": "active"}}
    service, reactor = serve(FakeMembership(odd))
    reply = ask(reactor, "_sip._udp.sip.example.test", dns.SRV)
    assert sorted(r.payload.target.name for r in reply.answers) == sorted([
        b"node-1-eu.sip.example.test", b"node.sip.example.test",
        b"x" * 63 + b".sip.example.test"])
    assert [r.payload.dottedQuad() for r in ask(reactor, "node-1-eu.sip.example.test", dns.A).answers] == ["10.0.0.1"]


def test_nodes_without_state_count_as_active_and_bad_addresses_are_skipped():
    records = {"a": {"addresses": ["udp:10.0.0.1:5060", "udp:10.0.0.9:x", "sctp:10.0.0.8:5060",
                                   "udp:not-an-address:5060"]},
               "b": {"addresses": ["udp:10.0.0.2:5060"], "state": "draining"}}
    service, reactor = serve(FakeMembership(records))
    reply = ask(reactor, "sip.example.test", dns.A)
    assert [r.payload.dottedQuad() for r in reply.answers] == ["10.0.0.1"]
    reply = ask(reactor, "_sip._udp.sip.example.test", dns.SRV)
    assert [r.payload.port for r in reply.answers] == [5060, 5060]


def test_with_no_active_node_the_soa_names_the_zone_itself():
    service, reactor = serve(FakeMembership({}))
    reply = ask(reactor, "sip.example.test", dns.SOA)
    soa, = reply.answers
    assert soa.payload.mname.name == b"sip.example.test"


def test_etcd_back_and_lost_again_is_said_again():
    membership = FakeMembership(nodes())
    zone = ClusterZone(membership, "sip.example.test")
    seen = []
    globalLogPublisher.addObserver(seen.append)
    try:
        for connected in (False, True, False):
            membership.connected = connected
            answer(zone, "sip.example.test", dns.A)
    finally:
        globalLogPublisher.removeObserver(seen.append)
    warnings = [e for e in seen if "etcd unreachable" in e.get("log_format", "")]
    assert len(warnings) == 2 and warnings[0]["zone"] == "sip.example.test"


def test_a_positive_answer_has_no_authority_section():
    service, reactor = serve()
    reply = ask(reactor, "sip.example.test", dns.A)
    assert reply.answers and reply.authority == []


def test_answers_list_the_clients_region_first_then_by_node_id():
    three = {"c": {"addresses": ["udp:10.0.0.3:5060"], "region": "us", "state": "active"},
             "a": {"addresses": ["udp:10.0.0.1:5060"], "region": "eu", "state": "active"},
             "b": {"addresses": ["udp:10.0.0.2:5060"], "region": "us", "state": "active"}}
    service, reactor = serve(FakeMembership(three), regions=["us=192.0.2.0/24", "eu=10.0.0.0/8"])
    us = ask(reactor, "sip.example.test", dns.A, source=("192.0.2.9", 40000))
    assert [r.payload.dottedQuad() for r in us.answers] == ["10.0.0.2", "10.0.0.3", "10.0.0.1"]
    eu = ask(reactor, "_sip._udp.sip.example.test", dns.SRV, source=("10.9.9.9", 40000))
    assert [r.payload.target.name for r in eu.answers] == [
        b"a.sip.example.test", b"b.sip.example.test", b"c.sip.example.test"]
    anywhere = ask(reactor, "sip.example.test", dns.A, source=("172.16.0.1", 40000))
    assert [r.payload.dottedQuad() for r in anywhere.answers] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_the_service_answers_over_tcp_too():
    # RFC 1035 4.2.2 / RFC 7766: the same answers over a TCP connection,
    # the client's region taken from the connection's peer.
    import struct

    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport
    service, reactor = serve(regions=["us=192.0.2.0/24"])
    factory = [f for port, f, _, interface in reactor.tcpServers
               if (interface, port) == ("127.0.0.1", 5353)][0]
    transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 5353),
                                peerAddress=IPv4Address("TCP", "192.0.2.9", 40001))
    protocol = factory.buildProtocol(IPv4Address("TCP", "192.0.2.9", 40001))
    protocol.makeConnection(transport)
    query = dns.Message(id=7, recDes=0)
    query.queries = [dns.Query("_sip._udp.sip.example.test", dns.SRV, dns.IN)]
    data = query.toStr()
    protocol.dataReceived(struct.pack("!H", len(data)) + data)
    out = transport.value()
    (length,) = struct.unpack("!H", out[:2])
    reply = dns.Message()
    reply.fromStr(out[2:2 + length])
    assert reply.id == 7 and reply.auth and reply.rCode == dns.OK
    assert sorted((r.payload.priority, r.payload.target.name) for r in reply.answers) == [
        (10, b"b.sip.example.test"), (20, b"a.sip.example.test")]


def test_a_name_that_is_not_ascii_is_no_name_of_ours():
    service, reactor = serve()
    reply = ask(reactor, b"caf\xc3\xa9.sip.example.test", dns.A)
    assert reply.rCode == dns.ENAME


def test_records_without_addresses_or_with_a_name_for_a_host_are_skipped():
    records = {"a": {"addresses": ["udp:gw.example.net:5060", "udp:10.0.0.1:5060"], "state": "active"},
               "b": {"state": "active"}}
    service, reactor = serve(FakeMembership(records))
    reply = ask(reactor, "a.sip.example.test", dns.A)
    assert [r.payload.dottedQuad() for r in reply.answers] == ["10.0.0.1"]
    assert ask(reactor, "b.sip.example.test", dns.A).rCode == dns.ENAME


def test_region_prefixes_may_have_host_bits():
    regions = parse_regions([" eu = 10.1.2.3/8 ", "us=2001:db8::1/32"])
    assert [(str(network), region) for network, region in regions] == [
        ("10.0.0.0/8", "eu"), ("2001:db8::/32", "us")]
