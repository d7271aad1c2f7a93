# -*- test-case-name: tests.test_pipeline -*-
"""
The first and last target selection stages: requests addressed to the
node itself (OPTIONS to the node is answered, RFC 3261 11; a method it
does not know is 501; anything else for it is 404), and the Request-URI as written, the default next hop of
RFC 3261 16.5 when no other stage chose.
"""

from sipcluster.proxy.forwarding import ALLOW, Target
from sipcluster.proxy.pipeline import TARGETS, Respond, Stage


KNOWN_METHODS = frozenset(m.strip() for m in ALLOW.split(","))


class LocalRequests(Stage):
    """Requests for this node (no user part, our domain or address, no Route)."""

    name = "local"
    points = (TARGETS,)

    def __init__(self, forwarder):
        self.forwarder = forwarder

    def targets(self, context):
        request = context.request
        if not self.forwarder.addressed_to_us(request):
            return None
        if request.method == "OPTIONS":
            context.respond(self.forwarder.options_response(request))
            return []
        if request.method not in KNOWN_METHODS:
            # RFC 3261 21.5.2: a method this server does not know.
            raise Respond(501, headers=[("Allow", ALLOW)])
        # A known method, but nothing here takes it (the node is no UA).
        raise Respond(404)


class RequestURITarget(Stage):
    """The Request-URI (or the Route set, RFC 3261 16.6) as the one target."""

    name = "request-uri"
    points = (TARGETS,)

    def targets(self, context):
        return [Target(context.request.uri)]
