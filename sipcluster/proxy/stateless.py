# -*- test-case-name: tests.test_proxy -*-
"""
A stateless proxy (RFC 3261 16.11): the transport layer's receiver with no
transactions.  Requests walk the same pipeline as on a stateful node, then
go to one target with a branch derived from the request, so
retransmissions, CANCEL and ACK follow the same path; responses go back by
their Via.  The stateful proxy forwards ACKs for 2xx the same way.
"""

from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import classImplements

from sipcluster.proxy.core import ProxyCore
from sipcluster.proxy.forwarding import stateless_branch_suffix
from sipcluster.proxy.pipeline import RequestContext, Respond
from sipcluster.transport.interfaces import ITransportReceiver


class StatelessProxy:
    """
    @ivar core: the L{ProxyCore} every request goes through.
    """

    # (An extension type in the compiled build: see stateless.pxd.)
    __slots__ = ("transport", "forwarder", "pipeline", "clock", "core")

    log = Logger()

    def __init__(self, transport, forwarder, pipeline, clock):
        self.transport = transport
        self.forwarder = forwarder
        self.pipeline = pipeline
        self.clock = clock
        self.core = ProxyCore(forwarder, pipeline, self.forward)
        transport.receiver = self

    def request_received(self, request, source):
        self.core.receive(RequestContext(request, source, self._answer, stateful=False,
                                         started=self.clock.seconds()))

    def _answer(self, context, response):
        if context.request.method != "ACK":
            self.transport.send_response_now(response, context.source)

    def forward(self, context, targets):
        forward_stateless(self.forwarder, self.pipeline, context, targets[0], self)

    def response_received(self, response, source):
        forward_response_stateless(self.forwarder, self.pipeline, response)


# (Declared here rather than by @implementer, which an extension type cannot
# take as a decorator; zope.interface records it all the same.)
classImplements(StatelessProxy, ITransportReceiver)


def forward_stateless(forwarder, pipeline, context, target, proxy):
    """
    Forward the request of C{context} to C{target} without state (RFC 3261
    16.11): a branch derived from the request, no retransmission.  Errors
    are answered (never an ACK) or dropped, and logged by C{proxy.log}
    (asked for only then: a class's Logger is made anew at each access).
    """
    request = context.request
    suffix = stateless_branch_suffix(request, target.uri)
    source = context.source
    out, next_uri, transport = forwarder.prepare(request, target, suffix, source.transport,
                                                 ":" in source.host)
    if not pipeline.branch:
        # The usual case, without a Deferred: nothing edits the copy and
        # the next hop is an address.  (Errors raised here are answered by
        # the pipeline's caller.)
        peer = forwarder.numeric_peer(next_uri, transport, target.received)
        peers = [peer] if peer is not None else forwarder.cached_peers(next_uri)
        if peers:
            sent = _send(peers, forwarder, out, context, True)
            if sent is not True:
                # A TransportError (UDP, at once) or a Deferred (a stream).
                if isinstance(sent, Exception):
                    _failed(Failure(sent), forwarder, context, proxy)
                else:
                    sent.addErrback(_failed, forwarder, context, proxy)
            return
        d = forwarder.resolve(next_uri, transport, target.received)
    else:
        d = pipeline.run_branch(context, out, target)
        d.addCallback(_resolve, forwarder, next_uri, transport, target.received)
    d.addCallback(_send, forwarder, out, context).addErrback(_failed, forwarder, context, proxy)


def _resolve(_, forwarder, next_uri, transport, received):
    # A callback, not a lambda: forward_stateless would pay for the
    # closure on every call.
    return forwarder.resolve(next_uri, transport, received)


def _send(peers, forwarder, out, context, now=False):
    # Without state there is no trying the next address (RFC 3263 4.3 is
    # for transactions): the first one.  C{now}: as send_request_now
    # answers (the usual case needs no Deferred), else a Deferred.
    peer = peers[0]
    source = context.source
    # (Positional arguments: a C call, which takes no keywords.)
    out = forwarder.for_peer(out, peer, None, (source.transport, source.host))
    if forwarder.transport.is_local(peer.host, peer.port):
        # The next hop is this node: the request would only come back
        # until Max-Forwards runs out (16.3 step 4 finds it only when the
        # copy is unchanged).
        raise Respond(482, "Loop Detected (next hop is this node)")
    if now:
        return forwarder.transport.send_request_now(out, peer)
    return forwarder.transport.send_request(out, peer)


def _failed(failure, forwarder, context, proxy):
    error = failure.value
    request = context.request
    if isinstance(error, Respond) and request.method != "ACK":
        context.respond(forwarder.local_response(request, error.status, error.reason,
                                                 error.headers))
    else:
        proxy.log.info("stateless forward failed: {why}", why=failure.getErrorMessage())


def forward_response_stateless(forwarder, pipeline, response):
    """Pop our Via and send the response to the next one (RFC 3261 16.11)."""
    top = response._top_via()   # (compiled: a C call, as in the forwarder)
    if not forwarder.transport.is_local(top.host, top.port or 5060):
        forwarder.transport.stats["dropped"] += 1
        return
    response.pop_via()
    if pipeline.response:
        pipeline.run_response(None, response)
    # send_response_now drops it if no Via is left (it was meant for us).
    forwarder.transport.send_response_now(response)
