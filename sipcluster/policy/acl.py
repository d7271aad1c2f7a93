# -*- test-case-name: tests.test_acl -*-
"""
IP access lists: a C{request} stage refusing or dropping requests from
denied source networks, and marking those from trusted peers (trunks,
gateways, other proxies) so that authentication lets them pass
(C{context.vars["trusted"]}).  Sources are matched by the address the
packet came from, never by anything written in the message.
"""

import ipaddress

from twisted.logger import Logger

from sipcluster.proxy.pipeline import REQUEST, Respond, Stage
from sipcluster.schema import ConfigSection, Key
from sipcluster.sip.grammar import remember


def network_list(values):
    """Validate CIDR networks (IPv4 or IPv6; a bare address is one host), kept as written."""
    for i, text in enumerate(values):
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError('item %d ("%s"): expected a network such as "192.0.2.0/24", '
                             '"2001:db8::/32" or an address' % (i, text)) from None
    return list(values)


CONFIG = ConfigSection("acl", {
    "allow": Key(list, [], "Source networks (CIDR, IPv4 or IPv6) requests are accepted from; empty: every source not denied.",
                 check=network_list),
    "deny": Key(list, [], "Source networks refused, checked before allow and trusted (a denied address inside an allowed network is refused).",
                check=network_list),
    "trusted": Key(list, [], "Trusted peers (trunks, gateways, other proxies) by source network: accepted, and never challenged for authentication.",
                   check=network_list),
    "deny_action": Key(str, "reject", "What a refused source gets: reject (403 Forbidden) or drop (no answer at all, what you want against scanners).",
                       choices=("reject", "drop")),
})


class Networks:
    """A set of IPv4 and IPv6 networks, matched against one address."""

    def __init__(self, texts):
        self.networks = [ipaddress.ip_network(t, strict=False) for t in texts]

    def __bool__(self):
        return bool(self.networks)

    def __contains__(self, address):
        for network in self.networks:
            if address.version == network.version and address in network:
                return True
        return False


def source_address(host):
    """
    The IP address of a packet source, IPv4-mapped IPv6 addresses
    (::ffff:192.0.2.1, seen on dual-stack sockets) as the IPv4 address
    they carry; None when C{host} is not an address.
    """
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class Dropped(Respond):
    """
    The request is dropped without an answer: the pipeline's context is
    marked answered first, so L{ProxyCore.fail} sends nothing.
    """

    def __init__(self):
        Respond.__init__(self, 403, "Forbidden (dropped)")


class AccessList(Stage):
    """
    The C{request} stage of C{[acl]}: deny, then trusted, then allow.

    @ivar stats: counters, "rejected", "dropped", "trusted".
    """

    log = Logger()
    name = "acl"
    points = (REQUEST,)

    # Verdicts remembered by source text (the lists never change for one
    # AccessList): ipaddress is Python, and parsing the address and
    # matching it against each network cost more than the rest of a
    # request's pipeline.  Bounded: emptied when full, so a scan from
    # many addresses costs what it did.
    VERDICTS_SIZE = 4096

    def __init__(self, allow=(), deny=(), trusted=(), deny_action="reject"):
        self.allow = Networks(allow)
        self.deny = Networks(deny)
        self.trusted = Networks(trusted)
        self.deny_action = deny_action
        self.stats = {"rejected": 0, "dropped": 0, "trusted": 0}
        self._verdicts = {}

    def verdict(self, host):
        """"deny", "trusted" or "allow" for a request from C{host}."""
        verdict = self._verdicts.get(host)
        if verdict is None:
            verdict = remember(self._verdicts, host, self._verdict(host), self.VERDICTS_SIZE)
        return verdict

    def _verdict(self, host):
        address = source_address(host)
        if address is None:
            return "deny"
        if address in self.deny:
            return "deny"
        if address in self.trusted:
            return "trusted"
        if self.allow and address not in self.allow:
            return "deny"
        return "allow"

    def on_request(self, context):
        verdict = self.verdict(context.source.host)
        if verdict == "allow":
            return None
        if verdict == "trusted":
            self.stats["trusted"] += 1
            context.vars["trusted"] = True
            return None
        if self.deny_action == "drop" or context.request.method == "ACK":
            self.stats["dropped"] += 1
            self.drop(context)
            raise Dropped()
        self.stats["rejected"] += 1
        raise Respond(403, "Forbidden (source not allowed)")

    def drop(self, context):
        """
        Answer nothing.  The server transaction goes at once rather than
        waiting for a response that will never come; a retransmission
        makes a new one, dropped the same way.
        """
        context.answered = True
        if context.server_tx is not None:
            context.server_tx.terminate()
