# -*- test-case-name: tests.cluster.test_drain -*-
"""
Draining a node: it takes no new dialogs while it finishes the ones it has.

C{sipcluster drain NODE} writes C{<prefix>/drain/<node>}; the node watches
that key, publishes state "draining" in its membership record, and refuses
dialog-creating requests (an INVITE without To tag): 503 with Retry-After,
or a 302 to the active node the cluster's routing chooses
(L{sipcluster.routing.cluster}), as configured.  In-dialog
requests, CANCEL and ACK pass, so running calls end normally.
"""

from twisted.logger import Logger

from sipcluster.cluster.store import StoreFollower
from sipcluster.proxy.pipeline import REQUEST, Respond, Stage


def drain_key(prefix, node_id):
    return "%s/drain/%s" % (prefix.rstrip("/"), node_id)


class DrainGate(Stage, StoreFollower):
    """
    An admission stage of the request pipeline, following the node's drain
    key (L{start}, L{stop}).

    @ivar action: "reject" (503 + Retry-After) or "redirect" (302 to an
        active node, 503 when there is none).
    @ivar redirect_to: callable(user) giving the URI of the node to
        redirect to, or None.
    """

    log = Logger()
    name = "drain"
    points = (REQUEST,)

    def __init__(self, store, membership, prefix, node_id, action="reject", retry_after=30,
                 redirect_to=None):
        self.redirect_to = redirect_to
        self.store = store
        self.membership = membership
        self.key = drain_key(prefix, node_id)
        self.node_id = node_id
        self.action = action
        self.retry_after = retry_after
        self.draining = False
        self.refused = 0

    def start(self):
        return self._follow(self.key)


    def _resync(self, items, revision):
        self._set(any(key == self.key for key, _, _ in items))

    def _events(self, events):
        for kind, key, _, _ in events:
            if key == self.key:
                self._set(kind == "put")

    def _set(self, draining):
        if draining == self.draining:
            return
        self.draining = draining
        self.log.info("node {node} {state}", node=self.node_id,
                      state="draining: no new dialogs" if draining else "active again")
        if self.membership is not None:
            self.membership.update(state="draining" if draining else "active").addErrback(lambda f: None)

    def on_request(self, context):
        request = context.request
        if not self.draining or request.method != "INVITE" or request.to_tag is not None:
            return None
        if context.vars.get("emergency"):
            # Marked by sipcluster.routing.emergency: a draining node still
            # takes emergency calls.
            return None
        self.refused += 1
        if self.action == "redirect" and self.redirect_to is not None:
            target = self.redirect_to(getattr(request.uri, "user", None))
            if target is not None:
                raise Respond(302, "Moved Temporarily (node draining)", [("Contact", "<%s>" % target)])
        raise Respond(503, "Service Unavailable (node draining)",
                      [("Retry-After", str(self.retry_after))])
