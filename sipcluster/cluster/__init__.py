"""
The cluster: nodes coordinated through etcd.  L{etcd} is the only module
that talks to etcd.
"""

import ipaddress

from sipcluster.schema import ConfigSection, CrossKeyError, Key, show


def _dns_addresses(values):
    for text in values:
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError('expected "host:port" items, e.g. "127.0.0.2:5353", got %s' % show(text))
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise ValueError("expected a numeric host to listen on, got %s" % show(text)) from None
    return list(values)


def _dns_regions(values):
    for text in values:
        region, eq, cidr = text.partition("=")
        try:
            ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError:
            eq = ""
        if not eq or not region.strip():
            raise ValueError('expected "region=cidr" items, e.g. "eu=10.1.0.0/16", got %s' % show(text))
    return list(values)


def _check(values, sections):
    """The cluster's DNS zone is cluster.name, and its records come from membership (etcd)."""
    if values["dns_listen"]:
        if not values["name"]:
            raise CrossKeyError("cluster.dns_listen", "needs cluster.name (the zone to serve)")
        if sections["store"]["backend"] != "etcd":
            raise CrossKeyError("cluster.dns_listen", 'needs store.backend = "etcd" (the records '
                                                      "list the cluster's live nodes)")

CONFIG = ConfigSection("cluster", {
    "name": Key(str, "", "Shared host[:port] written in Record-Route so in-dialog requests may reach any node (DNS or an anycast/floating address must lead there); empty: this node's address."),
    "region": Key(str, "default", "Region of this node, published to the cluster."),
    "drain_action": Key(str, "reject", "What a draining node does with a new INVITE: reject (503 + Retry-After) or redirect (302 to an active node: of this region first, then the one with fewest dialogs).",
                        choices=("reject", "redirect")),
    "drain_retry_after_s": Key(int, 30, "Retry-After of the 503 a draining node sends.", minimum=0),
    "leader_hook": Key(str, "", "Command run with argument acquire or release when this node gains or loses leadership (to move a floating address); empty for none."),
    "dialog_max_s": Key(int, 14400, "Longest call, in seconds: a dialog whose BYE was not seen by then ends as expired (with a CDR) and leaves the store.",
                        minimum=60),
    "max_dialogs": Key(int, 0, "Call admission: most dialogs this node carries at once (its own, those adopted from dead nodes, and INVITEs being set up); a new INVITE over it gets 503. 0: no limit. Needs node.mode = stateful.",
                       minimum=0),
    "node_ttl_s": Key(int, 3, "Lease of this node's membership record: a dead node leaves the cluster this long after its last refresh.",
                      minimum=1, maximum=300),
    "dns_listen": Key(list, [], 'Serve the cluster\'s name as a DNS zone (NAPTR, SRV, A/AAAA of the live, active nodes) on these "host:port" addresses, UDP and TCP; the zone is cluster.name. Empty: no DNS server.',
                      check=_dns_addresses),
    "dns_ttl_s": Key(int, 5, "TTL of the zone's records: a node that dies or drains leaves resolvers' answers within this long after it leaves the cluster.",
                     minimum=1, maximum=3600),
    "dns_regions": Key(list, [], 'Which region a DNS client is in, by its address: "region=cidr" items; the nodes of its region come first in the answers.',
                       check=_dns_regions),
}, check=_check)
