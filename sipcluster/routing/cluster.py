# -*- test-case-name: tests.test_proxy -*-
"""
The routing decisions a cluster adds, taken from what membership knows of
the other nodes (L{sipcluster.cluster.membership} holds the state, never
the decisions): contacts registered in our region first, flows held by
another node reached through it, and the active node a draining node sends
new callers to.
"""


class ClusterRouting:
    """
    @ivar membership: a L{ClusterMembership} (C{nodes}, C{record},
        C{node_id}).
    """

    def __init__(self, membership):
        self.membership = membership

    def region_rank(self, binding):
        """
        0 for a binding registered through a node of our region (or of
        unknown origin), 1 otherwise: forwarding prefers our region.
        """
        membership = self.membership
        node = membership.nodes.get(binding.node) if binding.node else None
        if node is None or binding.node == membership.node_id:
            return 0
        return 0 if node.get("region") == membership.record.get("region") else 1

    def flow_route(self, binding):
        """
        The Route toward the live node holding C{binding}'s flow when that
        is another node, else None (ours, or its node is gone: then we send
        to the flow's address ourselves, the best left to do).
        """
        membership = self.membership
        if not binding.node or binding.node == membership.node_id:
            return None
        address = _udp_address(membership.nodes.get(binding.node))
        return "<sip:%s;lr>" % address if address else None

    def active_node_uri(self, user=None):
        """
        The URI of the active node to send a caller to (a draining node's
        redirect): one of our region first, then the one carrying fewest
        dialogs; None when there is none.
        """
        membership = self.membership
        region = membership.record.get("region")
        candidates = []
        for node_id, record in membership.nodes.items():
            if node_id == membership.node_id or record.get("state") != "active":
                continue
            address = _udp_address(record)
            if address:
                rank = (record.get("region") != region, record.get("dialogs") or 0, node_id)
                candidates.append((rank, address))
        if not candidates:
            return None
        host, _, port = min(candidates)[1].rpartition(":")
        return "sip:%s%s:%s" % (user + "@" if user else "", host, port)


def _udp_address(record):
    """The host:port a node listens on for UDP, from its membership record."""
    for address in (record or {}).get("addresses", []):
        transport, _, hostport = address.partition(":")
        if transport == "udp":
            return hostport
    return None
