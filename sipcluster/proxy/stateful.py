# -*- test-case-name: tests.test_proxy -*-
"""
A transaction-stateful proxy (RFC 3261 16): the transaction user on top of
the transaction layer.  Each request walks the pipeline (L{ProxyCore}),
then gets a response context that forks it to its targets; CANCEL, ACK for
2xx and stray responses are handled per 16.10, 16.6 and 16.7.
"""

from twisted.logger import Logger
from zope.interface import classImplements, implementer

from sipcluster.proxy.context import ResponseContext, group_by_q
from sipcluster.proxy.core import ProxyCore
from sipcluster.proxy.forwarding import short_hash
from sipcluster.proxy.pipeline import RequestContext, Respond, error_status
from sipcluster.proxy.stateless import forward_response_stateless, forward_stateless
from sipcluster.transaction.interfaces import IClientTransactionOwner, ITransactionUser
from sipcluster.transaction.layer import key_text


class StatefulProxy:
    """
    @ivar core: the L{ProxyCore} every request goes through.
    @ivar contexts: server transaction key -> L{ResponseContext} of the
        requests being forwarded.
    @ivar setups: server transaction keys of initial INVITEs not yet
        answered with a final response: the calls being set up (call
        admission counts them).
    """

    # (An extension type in the compiled build: see stateful.pxd.)
    __slots__ = ("transactions", "forwarder", "clock", "timers", "pipeline", "core", "contexts",
                 "setups", "_on_answer", "_on_trying")

    log = Logger()

    def __init__(self, transactions, forwarder, clock, timers, pipeline):
        self.transactions = transactions
        self.forwarder = forwarder
        self.clock = clock
        self.timers = timers
        self.pipeline = pipeline
        self.core = ProxyCore(forwarder, pipeline, self.forward)
        self.contexts = {}
        self.setups = set()
        # What each request context calls back, bound once.
        self._on_answer = self._answer
        self._on_trying = self._trying
        transactions.tu = self

    @property
    def transport(self):
        return self.transactions.transport

    # -- transaction user -------------------------------------------------------

    def request_received(self, server_tx):
        self.core.receive(RequestContext(
            server_tx.request, server_tx.source, self._on_answer, server_tx,
            self.clock.seconds(), self._on_trying))

    def _trying(self, context):
        context.server_tx.respond(self.forwarder.local_response(context.request, 100))

    def _answer(self, context, response):
        """A response of our own to the request of C{context}."""
        if context.server_tx is None:
            return  # an ACK: never answered
        context.server_tx.respond(response)
        request = context.request
        if response.status >= 300 and self.pipeline.dialog and request.method == "INVITE" and \
                request.to_tag is None:
            self.pipeline.dialog_event("call_failed", request, response, context.started)

    def forward(self, context, targets):
        """The pipeline chose C{targets}: fork to them (16.6), or forward an ACK."""
        if context.server_tx is None:
            forward_stateless(self.forwarder, self.pipeline, context, targets[0], self)
            return
        server_tx = context.server_tx
        if server_tx.state not in ("trying", "proceeding"):
            # Answered while a stage waited (a CANCEL's 487, 16.10).
            return
        rc = ResponseContext(self, context, group_by_q(targets), self.transactions.timer_heap,
                             self.timers.timer_c)
        self.contexts[server_tx.key] = rc
        if rc.is_invite and context.request.to_tag is None:
            self.setups.add(server_tx.key)
        server_tx.on_terminated = self._server_terminated
        rc.start()

    def _server_terminated(self, server_tx):
        self.contexts.pop(server_tx.key, None)
        self.setups.discard(server_tx.key)

    def cancel_received(self, cancel_tx, invite_tx):
        if invite_tx is None:
            # RFC 3261 16.10: with no context we cannot match it to any
            # branch we sent; the next hop would not match it either.
            cancel_tx.respond(self.forwarder.local_response(cancel_tx.request, 481))
            return
        cancel_tx.respond(self.forwarder.local_response(cancel_tx.request, 200))
        rc = self.contexts.get(invite_tx.key)
        if rc is not None:
            rc.cancel()
        elif invite_tx.state == "proceeding":
            invite = invite_tx.request  # (a final response lets go of it)
            response = self.forwarder.local_response(invite, 487)
            invite_tx.respond(response)
            self.setups.discard(invite_tx.key)
            if invite.to_tag is None:
                self.pipeline.dialog_event("call_failed", invite, response,
                                           self.clock.seconds())

    def ack_received(self, ack, source):
        """An ACK for a 2xx: forwarded end to end, statelessly (16.6, 13.2.2.4)."""
        self.core.receive(RequestContext(ack, source, self._on_answer, None, self.clock.seconds(),
                                         stateful=True))

    def stray_response(self, response, source):
        """A response with no client transaction: forwarded by its Via (16.7, 16.11)."""
        forward_response_stateless(self.forwarder, self.pipeline, response)

    # -- for the response context ------------------------------------------------

    def start_branch(self, rc, branch):
        """Prepare, edit (branch stages), resolve and send one branch of C{rc}."""
        context = rc.context
        request = context.request
        seed = "%s/%s" % (key_text(context.server_tx.key), branch.index)
        suffix = short_hash(seed, 8)
        try:
            source = context.source
            out, next_uri, transport = self.forwarder.prepare(
                request, branch.target, suffix, source.transport, ":" in source.host)
        except Exception as e:
            rc.branch_failed(branch, *error_status(e)[:2])
            return
        target = branch.target
        if not self.pipeline.branch:
            # The usual case, without a Deferred: nothing edits the copy
            # and the next hop is an address, or a name the resolver's
            # cache knows.
            try:
                peer = self.forwarder.numeric_peer(next_uri, transport, target.received)
                peers = [peer] if peer is not None else self.forwarder.cached_peers(next_uri)
                if peers:
                    self._send_branch(rc, branch, out, peers)
                    return
            except Exception as e:
                self._branch_error(rc, branch, e)
                return
            d = self.forwarder.resolve(next_uri, transport, target.received)
        else:
            d = self.pipeline.run_branch(context, out, target)
            d.addCallback(self._resolve_branch, next_uri, transport, target.received)
        d.addCallback(self._peers_found, rc, branch, out)
        d.addErrback(self._branch_failure, rc, branch)

    # (Deferred callbacks as methods, not lambdas: a function holding a
    # lambda pays for its closure on every call, even when none is made.)

    def _resolve_branch(self, _, next_uri, transport, received):
        return self.forwarder.resolve(next_uri, transport, received)

    def _peers_found(self, peers, rc, branch, out):
        self._send_branch(rc, branch, out, peers)

    def _branch_failure(self, failure, rc, branch):
        self._branch_error(rc, branch, failure.value, failure)

    def _send_branch(self, rc, branch, out, peers):
        """Send C{out} to the first of C{peers}; the others are its RFC 3263 4.3 fallbacks."""
        if rc.cancelled and rc.is_invite:
            rc.branch_failed(branch, 487)
            return
        peer = peers[0]
        if self.forwarder.transport.is_local(peer.host, peer.port):
            # The next hop is this node: the copy would come back to us
            # until Max-Forwards runs out.
            raise Respond(482, "Loop Detected (next hop is this node)")
        source = rc.context.source
        # (Positional arguments: a C call, which takes no keywords.)
        out = self.forwarder.for_peer(out, peer, None, (source.transport, source.host))
        owner = rc if len(peers) == 1 else NextAddress(self, rc, branch, out, peers[1:])
        tx = self.transactions.start_client(out, peer, owner)
        rc.branch_started(branch, tx, owner)

    def _branch_error(self, rc, branch, error, failure=None):
        if not isinstance(error, Respond):
            self.log.failure("forwarding failed", failure)
        status, reason, _ = error_status(error)
        rc.branch_failed(branch, status, reason)

    def local_response(self, request, status, reason=None, headers=()):
        return self.forwarder.local_response(request, status, reason, headers)

    def send_upstream(self, rc, response):
        """
        Relay C{response} to the caller: without our Via (16.7 step 3),
        through the response stages.
        """
        server_tx = rc.context.server_tx
        if server_tx.state == "terminated":
            return
        if response.has("via") and self._owns_via(response._top_via()):
            response = response.copy()
            response.pop_via()
        if not response.has("via"):
            # RFC 3261 16.7 step 3: no Via left, it was meant for us.  Send
            # our own answer instead so the caller is not left waiting.
            response = self.forwarder.local_response(rc.context.request, response.status,
                                                     response.reason)
        elif self.pipeline.response:
            self.pipeline.run_response(rc.context, response)
        server_tx.respond(response)

    def _owns_via(self, via):
        return self.forwarder.transport.is_local(via.host, via.port or 5060)

    def final_sent(self, rc, response):
        """
        The final response C{rc} chose went upstream (C{response} None for
        a later 2xx of another branch): what it means for the call.
        """
        context = rc.context
        key = context.server_tx.key
        self.setups.discard(key)
        if response is None:
            return
        if not rc.is_invite or response.status >= 300:
            # Nothing more goes upstream through C{rc}: its server
            # transaction absorbs retransmissions alone for 32 s.  Only an
            # INVITE answered 2xx keeps it, for the 2xx of other forks and
            # their retransmissions (RFC 3261 16.7 step 5, RFC 6026).
            self.contexts.pop(key, None)
        if not self.pipeline.dialog:
            return
        request = context.request
        initial = rc.is_invite and request.to_tag is None
        if initial and response.status >= 300:
            self.pipeline.dialog_event("call_failed", request, response, context.started)
        elif initial and response.status < 300:
            self.pipeline.dialog_event("dialog_confirmed", request, response)
        elif request.method == "BYE":
            self.pipeline.dialog_event("dialog_ended", request, response)


# (Declared here rather than by @implementer, which an extension type cannot
# take as a decorator; zope.interface records it all the same.)
classImplements(StatefulProxy, ITransactionUser)


@implementer(IClientTransactionOwner)
class NextAddress:
    """
    The owner of a branch's client transaction while the next hop has
    further addresses (RFC 3263 4.3): a timeout, a transport error or a 503
    from one address sends the request to the next, in a new transaction
    (a new branch), before the response context hears of a failure; the
    caller never sees the 503 of an address that was not the last.
    """

    def __init__(self, proxy, rc, branch, out, peers):
        self.proxy = proxy
        self.rc = rc
        self.branch = branch
        self.out = out
        self.peers = list(peers)
        self.tried = 1

    def response_received(self, tx, response):
        if response.status == 503 and self._next(tx):
            return
        self.rc.response_received(tx, response)

    def timed_out(self, tx):
        if not self._next(tx):
            self.rc.timed_out(tx)

    def transport_failed(self, tx):
        if not self._next(tx):
            self.rc.transport_failed(tx)

    def _next(self, tx):
        """Try the next address; False when none is left (or it is too late)."""
        rc, branch = self.rc, self.branch
        if not self.peers or branch.tx is not tx or branch.done or rc.final_sent:
            return False
        if rc.cancelled:
            rc.branch_failed(branch, 487)
            return True
        peer = self.peers.pop(0)
        self.tried += 1
        # A new transaction: the same request with a new branch.
        source = rc.context.source
        out = self.proxy.forwarder.for_peer(self.out, peer, "%s.%d" % (
            self.out.top_via.branch, self.tried), (source.transport, source.host))
        branch.tx = tx = self.proxy.transactions.start_client(out, peer, self)
        if tx.state == "terminated" and tx.final is None:
            # Its first send failed inside start_client, unheard (as in
            # ResponseContext.branch_started): on to the next address.
            self.transport_failed(tx)
        return True


__all__ = ["StatefulProxy", "NextAddress"]
