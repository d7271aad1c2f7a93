# -*- test-case-name: tests.test_proxy -*-
"""
Target selection from the location service (RFC 3261 16.5): a request for
an address-of-record of our domains goes to its registered contacts,
highest q first, over the flow a contact registered through when it must
(RFC 5626, NAT), and through the node holding that flow when it is another
node of the cluster.
"""

from sipcluster.location.interface import aor_key
from sipcluster.proxy.forwarding import Target, parse_alias
from sipcluster.proxy.pipeline import TARGETS, Respond, Stage
from sipcluster.sip.uri import SipURI


class LocationTargets(Stage):
    """
    @ivar location: an L{ILocationService}.
    @ivar cluster: a L{ClusterRouting} (region ranks, flows on other
        nodes), or None on a single node.
    """

    name = "location"
    points = (TARGETS,)

    def __init__(self, location, forwarder, cluster=None):
        self.location = location
        self.forwarder = forwarder
        self.cluster = cluster

    def targets(self, context):
        request = context.request
        uri = request.uri
        has_route = request.has("route")
        if not has_route and isinstance(uri, SipURI):
            alias = uri.param("alias")
            if alias:
                # Another node routed this here to reach a flow we hold
                # (see _flow_target): send it over that flow, without the
                # alias.
                received = parse_alias(alias)
                if received is not None:
                    return [Target(uri.without_params("alias"), received=received)]
        if has_route or not self.forwarder.is_our_domain(uri):
            return None
        aor = aor_key(uri)
        if aor is None:
            raise Respond(404)
        bindings = self.location.lookup(aor)
        if not bindings:
            raise Respond(404)
        cluster = self.cluster
        if cluster is None:
            targets = [Target(b.contact, b.q, b.path, b.received) for b in bindings]
        else:
            targets = [self._flow_target(b, cluster) for b in bindings]
        targets.sort(key=lambda t: (-t.q, t.rank))
        return targets

    @staticmethod
    def _flow_target(binding, cluster):
        """
        The target for a binding.  A flow (NAT source, outbound connection)
        lives on the node the binding registered through: from another node
        the request goes there, with the flow's address in an alias
        parameter of the Request-URI (as Kamailio's nathelper does).
        """
        rank = cluster.region_rank(binding)
        route = cluster.flow_route(binding) if binding.received else None
        if route is None:
            return Target(binding.contact, binding.q, binding.path, binding.received, rank)
        transport, host, port = binding.received
        uri = binding.contact.with_params(alias="%s~%d~%s" % (host, port, transport))
        return Target(uri, binding.q, [route] + list(binding.path), None, rank)
