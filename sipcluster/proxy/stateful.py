# -*- test-case-name: tests.test_proxy -*-
"""
A transaction-stateful proxy (RFC 3261 16): the transaction user on top of
the transaction layer.  Each request gets a response context that forks it
to its targets; CANCEL, ACK for 2xx and stray responses are handled per
16.10, 16.6 and 16.7.
"""

import hashlib

from twisted.logger import Logger

from sipcluster.proxy.context import ResponseContext
from sipcluster.proxy.forwarding import Reject, Target, stateless_branch_suffix
from sipcluster.sip.errors import SIPError


def group_by_q(targets):
    """
    Targets in groups tried one after the other: equal q in parallel,
    highest q first (RFC 3261 16.6); within a q, preferred ranks (our
    region) before the others.
    """
    groups = []
    for target in sorted(targets, key=lambda t: (-t.q, t.rank)):
        if groups and (groups[-1][0].q, groups[-1][0].rank) == (target.q, target.rank):
            groups[-1].append(target)
        else:
            groups.append([target])
    return groups


class StatefulProxy:
    """
    @ivar local_methods: handlers for requests addressed to this node
        (method -> callable(server_tx)); the registrar plugs in here.
    """

    log = Logger()

    def __init__(self, transactions, forwarder, clock, timers):
        self.transactions = transactions
        self.forwarder = forwarder
        self.clock = clock
        self.timers = timers
        self.contexts = {}
        self.local_methods = {}
        # Callables(request) raising Reject to refuse a request before it
        # is routed (draining, and later admission control).
        self.admission = []
        # Objects told of dialogs: dialog_confirmed(request, response) when
        # a 2xx to an initial INVITE goes upstream, dialog_ended(request,
        # response) when a final response to a BYE does, and
        # call_failed(request, response, started) when an initial INVITE is
        # finally answered otherwise (here or downstream).
        self.dialog_observers = []
        # Server transaction keys of initial INVITEs not yet answered with a
        # final response: the calls being set up (call admission counts them).
        self.setups = set()
        transactions.tu = self

    @property
    def transport(self):
        return self.transactions.transport

    # -- transaction user -------------------------------------------------------

    def request_received(self, server_tx):
        request = server_tx.request
        try:
            self._route(server_tx, request)
        except Reject as r:
            self.respond(server_tx, r.status, r.reason, r.extra)
        except SIPError as e:
            self.respond(server_tx, e.status, e.reason)

    def _route(self, server_tx, request):
        forwarder = self.forwarder
        forwarder.check(request)
        handler = self.local_methods.get(request.method)
        if handler is not None and forwarder.is_our_domain(request.uri) and not request.has("route"):
            handler(server_tx)
            return
        if forwarder.addressed_to_us(request):
            if request.method == "OPTIONS":
                server_tx.respond(forwarder.options_response(request))
            else:
                raise Reject(404)
            return
        for check in self.admission:
            check(request)
        if request.method == "INVITE":
            # RFC 3261 16.2: answer 100 at once so the caller stops
            # retransmitting while we fork.
            server_tx.respond(forwarder.local_response(request, 100))
        forwarder.preprocess_routes(request)
        targets = forwarder.targets(request)
        context = ResponseContext(self, server_tx, request, group_by_q(targets),
                                  server_tx.source.transport)
        self.contexts[server_tx.key] = context
        if context.is_invite and request.to_tag is None:
            self.setups.add(server_tx.key)
        server_tx.on_terminated = self._server_terminated
        context.start()

    def _server_terminated(self, server_tx):
        self.contexts.pop(server_tx.key, None)
        self.setups.discard(server_tx.key)

    def cancel_received(self, cancel_tx, invite_tx):
        if invite_tx is None:
            # RFC 3261 16.10: with no context we cannot match it to any
            # branch we sent; the next hop would not match it either.
            self.respond(cancel_tx, 481)
            return
        self.respond(cancel_tx, 200)
        context = self.contexts.get(invite_tx.key)
        if context is not None:
            context.cancel()
        elif invite_tx.state == "proceeding":
            invite_tx.respond(self.forwarder.local_response(invite_tx.request, 487))

    def ack_received(self, ack, source):
        """An ACK for a 2xx: forwarded end to end, statelessly (16.6, 13.2.2.4)."""
        forward_stateless(self.forwarder, ack, source, self.log)

    def stray_response(self, response, source):
        """A response with no client transaction: forwarded by its Via (16.7, 16.11)."""
        forward_response_stateless(self.forwarder, response)

    # -- for the response context ------------------------------------------------

    def forward_branch(self, context, branch):
        request = context.request
        seed = "%r/%d" % (context.server_tx.key, branch.index)
        suffix = hashlib.md5(seed.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        try:
            out, next_uri, transport = self.forwarder.prepare(
                request, branch.target, suffix, context.inbound)
        except SIPError as e:
            context.branch_failed(branch, e.status, e.reason)
            return
        d = self.forwarder.resolve(next_uri, transport, branch.target.received)

        def send(peer):
            if context.cancelled and request.method == "INVITE":
                context.branch_failed(branch, 487)
                return
            tx = self.transactions.start_client(out, peer, context)
            context.branch_started(branch, tx)

        def failed(failure):
            error = failure.value
            if isinstance(error, Reject):
                context.branch_failed(branch, error.status, error.reason)
            else:
                self.log.failure("forwarding failed", failure)
                context.branch_failed(branch, 500)
        d.addCallback(send).addErrback(failed)

    def send_upstream(self, server_tx, response):
        server_tx.respond(response)

    def owns_via(self, via):
        return self.transport.is_local(via.host, via.port or 5060)

    def respond(self, server_tx, status, reason=None, extra=()):
        request = server_tx.request
        response = self.forwarder.local_response(request, status, reason, extra)
        server_tx.respond(response)
        if status >= 300 and request.method == "INVITE" and request.to_tag is None:
            self.call_failed(request, response, self.clock.seconds())

    def call_failed(self, request, response, started):
        for observer in self.dialog_observers:
            try:
                observer.call_failed(request, response, started)
            except Exception:
                self.log.failure("dialog observer failed")


def forward_stateless(forwarder, request, source, log):
    """
    Forward C{request} without state (RFC 3261 16.11): one target, a branch
    derived from the request, no retransmission.  Errors are answered (not
    for ACK) or dropped.
    """
    try:
        forwarder.check(request)
        if forwarder.addressed_to_us(request):
            raise Reject(404)
        forwarder.preprocess_routes(request)
        target = forwarder.targets(request)[0]
        suffix = stateless_branch_suffix(request, target.uri)
        out, next_uri, transport = forwarder.prepare(request, target, suffix, source.transport)
    except (Reject, SIPError) as e:
        if request.method != "ACK":
            forwarder.transport.send_response(
                forwarder.local_response(request, e.status, e.reason, getattr(e, "extra", ())), source)
        return None
    d = forwarder.resolve(next_uri, transport, target.received)
    d.addCallback(lambda peer: forwarder.transport.send_request(out, peer))
    d.addErrback(lambda f: log.info("stateless forward failed: {why}", why=f.getErrorMessage()))
    return d


def forward_response_stateless(forwarder, response):
    """Pop our Via and send the response to the next one (RFC 3261 16.11)."""
    top = response.top_via
    if not forwarder.transport.is_local(top.host, top.port or 5060):
        forwarder.transport.stats["dropped"] += 1
        return
    response.pop_via()
    # send_response drops it if no Via is left (it was meant for us).
    forwarder.transport.send_response(response)


__all__ = ["StatefulProxy", "Target", "group_by_q", "forward_stateless",
           "forward_response_stateless"]
