# -*- test-case-name: tests.cluster.test_drain -*-
"""
Draining a node: it takes no new dialogs while it finishes the ones it has.

C{sipcluster drain NODE} writes C{<prefix>/drain/<node>}; the node watches
that key, publishes state "draining" in its membership record, and refuses
dialog-creating requests (an INVITE without To tag): 503 with Retry-After,
or a 302 to an active node of the cluster (of our region first, then the
least busy), as configured.  In-dialog
requests, CANCEL and ACK pass, so running calls end normally.
"""

from twisted.logger import Logger

from sipcluster.proxy.forwarding import Reject


def drain_key(prefix, node_id):
    return "%s/drain/%s" % (prefix.rstrip("/"), node_id)


class DrainGate:
    """
    An admission check for the proxy, following the node's drain key.

    @ivar action: "reject" (503 + Retry-After) or "redirect" (302 to an
        active node, 503 when there is none).
    """

    log = Logger()

    def __init__(self, store, membership, prefix, node_id, action="reject", retry_after=30):
        self.store = store
        self.membership = membership
        self.key = drain_key(prefix, node_id)
        self.node_id = node_id
        self.action = action
        self.retry_after = retry_after
        self.draining = False
        self.refused = 0
        self._watch = None

    def start(self):
        d = self.store.follow(self.key, self._events, self._resync)
        return d.addCallback(lambda watch: setattr(self, "_watch", watch))

    def stop(self):
        if self._watch is not None:
            self._watch.stop()

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

    def __call__(self, request):
        if not self.draining or request.method != "INVITE" or request.to_tag is not None:
            return
        self.refused += 1
        if self.action == "redirect":
            target = self._active_node_uri(request)
            if target is not None:
                raise Reject(302, "Moved Temporarily (node draining)", [("Contact", "<%s>" % target)])
        raise Reject(503, "Service Unavailable (node draining)",
                     [("Retry-After", str(self.retry_after))])

    def _active_node_uri(self, request):
        """
        The URI of the active node to send a caller to: one of our region
        first, then the one carrying fewest dialogs.
        """
        user = getattr(request.uri, "user", None)
        membership = self.membership
        if membership is None:
            return None
        region = membership.record.get("region")
        candidates = []
        for node_id, record in membership.nodes.items():
            if node_id == self.node_id or record.get("state") != "active":
                continue
            for address in record.get("addresses", []):
                transport, _, hostport = address.partition(":")
                if transport == "udp":
                    rank = (record.get("region") != region, record.get("dialogs") or 0, node_id)
                    candidates.append((rank, hostport))
                    break
        if not candidates:
            return None
        host, _, port = min(candidates)[1].rpartition(":")
        return "sip:%s%s:%s" % (user + "@" if user else "", host, port)
