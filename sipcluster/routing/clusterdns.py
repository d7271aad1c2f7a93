# -*- test-case-name: tests.cluster.test_cluster_dns -*-
"""
The cluster's own name, served by every node (as Consul's DNS interface
serves its services): an authoritative twisted.names zone for
C{cluster.name} whose records list the live, active nodes, from what
membership knows, so that phones and peers resolving the name the RFC 3263
way (NAPTR, SRV, A/AAAA) reach a node that is up, and in-dialog requests
record-routed with the name survive the death of the node that took the
call.

For zone C{Z} (node records as in membership: addresses, region, state):

  - C{Z NAPTR}: one per transport some node has (SIP+D2U, SIP+D2T),
    pointing at the SRV names (RFC 3263 4.1);
  - C{_sip._udp.Z SRV}, C{_sip._tcp.Z SRV}: one per active node, priority 10
    for nodes of the asking client's region and 20 for the others (RFC
    2782), target C{<node-id>.Z};
  - C{<node-id>.Z A/AAAA}, and C{Z A/AAAA}: every active node's addresses;
  - C{Z SOA} and C{Z NS} (one name per active node), so the zone can be
    delegated from a real one;

all with the TTL C{cluster.dns_ttl_s}.  A draining or dead node leaves the
answers as soon as membership sees it (its lease, cluster.node_ttl_s), so
within one TTL after that at any resolver.  A node cut off from etcd keeps
answering from what it last saw, and says so in its log.
"""

import ipaddress

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.names import dns, server

# Which region a DNS client is in: its source address, by the
# cluster.dns_regions prefixes.


def parse_regions(items):
    """[(network, region)] from "region=cidr" strings (cluster.dns_regions)."""
    out = []
    for item in items:
        region, _, cidr = item.partition("=")
        out.append((ipaddress.ip_network(cidr.strip(), strict=False), region.strip()))
    return out


def _label(node_id):
    """A DNS label for a node id (letters, digits, hyphens)."""
    text = "".join(c if c.isalnum() or c == "-" else "-" for c in node_id.lower())
    return text.strip("-")[:63] or "node"


class ClusterZone:
    """
    The records of the cluster's zone, computed per query from
    C{membership.nodes}.

    @ivar zone: the zone name, lower-case, without the trailing dot.
    """

    log = Logger()

    def __init__(self, membership, zone, ttl=5, regions=()):
        self.membership = membership
        self.zone = zone.lower().rstrip(".")
        self.ttl = ttl
        self.regions = list(regions)
        self.queries = 0
        self._stale_logged = False

    # -- which nodes ------------------------------------------------------------

    def region_of(self, host):
        """The region of a client at C{host}, or None when the node cannot tell."""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
        for network, region in self.regions:
            if address.version == network.version and address in network:
                return region
        return None

    def active_nodes(self, region=None):
        """
        [(node_id, record)] of the live, active nodes: those of C{region}
        first, then by id (stable answers).
        """
        membership = self.membership
        if not membership.connected and not self._stale_logged:
            self._stale_logged = True
            self.log.warn("DNS zone {zone}: etcd unreachable, answering with the nodes last seen",
                          zone=self.zone)
        elif membership.connected:
            self._stale_logged = False
        nodes = [(node_id, record) for node_id, record in membership.nodes.items()
                 if record.get("state", "active") == "active"]
        nodes.sort(key=lambda item: (region is not None and item[1].get("region") != region, item[0]))
        return nodes

    # -- answering ------------------------------------------------------------------

    def lookup(self, query, region=None):
        """
        A Deferred firing with (answers, authority, additional) for
        C{query} (a L{dns.Query}), or failing with DomainError (not our
        zone) or AuthoritativeDomainError (no such name in it).
        """
        self.queries += 1
        name = query.name.name.decode("ascii", "replace").lower().rstrip(".")
        zone = self.zone
        if name != zone and not name.endswith("." + zone):
            return defer.fail(dns.DomainError(name))
        records = self._records(name, region)
        if records is None:
            return defer.fail(dns.AuthoritativeDomainError(name))
        wanted = [r for r in records if query.type in (r.type, dns.ALL_RECORDS)]
        additional = []
        if query.type in (dns.SRV, dns.NS):
            # RFC 2782: the addresses of the targets, saving a round trip.
            targets = {r.payload.target.name.decode() for r in wanted}
            for target in sorted(targets):
                additional += [r for r in (self._records(target, region) or [])
                               if r.type in (dns.A, dns.AAAA)]
        authority = [] if wanted else [self._soa()]
        return defer.succeed((wanted, authority, additional))

    def _rr(self, name, payload):
        return dns.RRHeader(name, payload.TYPE, dns.IN, self.ttl, payload, auth=True)

    def _soa(self):
        zone = self.zone
        return self._rr(zone, dns.Record_SOA(
            mname=self._ns_name(self.active_nodes()), rname="hostmaster." + zone, serial=1,
            refresh=60, retry=30, expire=600, minimum=self.ttl, ttl=self.ttl))

    def _ns_name(self, nodes):
        return "%s.%s" % (_label(nodes[0][0]), self.zone) if nodes else self.zone

    def _records(self, name, region):
        """Every record of C{name} in the zone, or None when it has none at all."""
        zone = self.zone
        nodes = self.active_nodes(region)
        by_transport = {"udp": [], "tcp": []}
        hosts = {}
        for node_id, record in nodes:
            label = _label(node_id)
            for address in record.get("addresses", []):
                transport, _, hostport = address.partition(":")
                host, _, port = hostport.rpartition(":")
                host = host.strip("[]")
                if transport in by_transport and port.isdigit():
                    by_transport[transport].append((node_id, record, label, int(port)))
                    hosts.setdefault(label, [])
                    if host not in hosts[label]:
                        hosts[label].append(host)
        if name == zone:
            out = [self._soa()]
            out += [self._rr(zone, dns.Record_NS("%s.%s" % (_label(n), zone), ttl=self.ttl))
                    for n, _ in nodes]
            for order, (transport, service) in enumerate((("udp", b"SIP+D2U"), ("tcp", b"SIP+D2T"))):
                if by_transport[transport]:
                    out.append(self._rr(zone, dns.Record_NAPTR(
                        10 * (order + 1), 10, b"s", service, b"",
                        "_sip._%s.%s" % (transport, zone), ttl=self.ttl)))
            for label in hosts:
                out += self._addresses(zone, hosts[label])
            return out
        if region is not None and not any(r.get("region") == region for _, r in nodes):
            region = None  # none of the client's region: no preference
        for transport in by_transport:
            if name == "_sip._%s.%s" % (transport, zone):
                return [self._rr(name, dns.Record_SRV(
                    10 if region is None or record.get("region") == region else 20, 10, port,
                    "%s.%s" % (label, zone), ttl=self.ttl))
                    for node_id, record, label, port in by_transport[transport]]
        label = name[:-len(zone) - 1]
        if label in hosts:
            return self._addresses(name, hosts[label])
        return None

    def _addresses(self, name, hosts):
        out = []
        for host in hosts:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                continue
            payload = dns.Record_A(host, ttl=self.ttl) if address.version == 4 else \
                dns.Record_AAAA(host, ttl=self.ttl)
            out.append(self._rr(name, payload))
        return out


class ClusterDNSFactory(server.DNSServerFactory):
    """
    A DNS server answering from a L{ClusterZone} only, which also tells the
    zone where the query came from (twisted.names' resolvers are not
    told), so that the client's region comes first.
    """

    def __init__(self, zone):
        server.DNSServerFactory.__init__(self)
        self.zone = zone

    def handleQuery(self, message, protocol, address):
        query = message.queries[0]
        host = address[0] if address else protocol.transport.getPeer().host
        d = self.zone.lookup(query, self.zone.region_of(host))
        d.addCallback(self.gotResolverResponse, protocol, message, address)
        d.addErrback(self.gotResolverError, protocol, message, address)
        return d

    def gotResolverError(self, failure, protocol, message, address):
        if failure.check(dns.AuthoritativeDomainError):
            # A name of our zone that does not exist: NXDOMAIN with our SOA
            # (RFC 2308), so that resolvers cache the absence for a TTL.
            response = self._responseFromMessage(
                message=message, rCode=dns.ENAME, authority=[self.zone._soa()])
            self.sendReply(protocol, response, address)
            return
        if failure.check(dns.DomainError):
            # Not our zone: we are no recursive resolver.
            response = self._responseFromMessage(message=message, rCode=dns.EREFUSED)
            self.sendReply(protocol, response, address)
            return
        return server.DNSServerFactory.gotResolverError(self, failure, protocol, message, address)

    def _responseFromMessage(self, message, rCode=dns.OK, answers=None, authority=None,
                             additional=None):
        response = server.DNSServerFactory._responseFromMessage(
            self, message, rCode, answers, authority, additional)
        response.auth = True
        return response


class ClusterDNSService(service.Service):
    """
    Listens for DNS on C{addresses} ("host:port" each), UDP and TCP.

    @param reactor: IReactorUDP and IReactorTCP.
    """

    name = "cluster-dns"
    log = Logger()

    def __init__(self, reactor, zone, addresses):
        self.reactor = reactor
        self.zone = zone
        self.addresses = list(addresses)
        self.factory = ClusterDNSFactory(zone)
        self.factory.noisy = False
        self.ports = []

    def startService(self):
        service.Service.startService(self)
        for address in self.addresses:
            host, _, port = address.rpartition(":")
            host = host.strip("[]")
            udp = dns.DNSDatagramProtocol(self.factory)
            udp.noisy = False
            self.ports.append(self.reactor.listenUDP(int(port), udp, interface=host))
            self.ports.append(self.reactor.listenTCP(int(port), self.factory, interface=host))
        self.log.info("DNS for zone {zone} on {addresses}", zone=self.zone.zone,
                      addresses=", ".join(self.addresses))

    def stopService(self):
        service.Service.stopService(self)
        ports, self.ports = self.ports, []
        return defer.DeferredList([defer.maybeDeferred(p.stopListening) for p in ports])
