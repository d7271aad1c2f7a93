# -*- test-case-name: tests.test_pipeline -*-
"""
The front door both proxy modes share: RFC 3261 16.3 validation, 16.4
route pre-processing, then the request pipeline (policy stages, target
selection), and the one place an error becomes a response.  What differs
between the modes, how targets are forwarded, stays in L{stateful} and
L{stateless}.
"""

from twisted.logger import Logger
from twisted.python.failure import Failure

from sipcluster.proxy.pipeline import Respond, error_status
from sipcluster.sip.errors import SIPError


class ProxyCore:
    """
    @ivar forwarder: the L{Forwarder} (RFC 3261 16 steps, local answers).
    @ivar pipeline: the node's L{Pipeline}.
    @ivar forward: callable(context, targets) of the proxy mode, sending the
        request on once its targets are known.
    """

    # (An extension type in the compiled build: see core.pxd.)
    __slots__ = ("forwarder", "pipeline", "forward", "stats", "_valid_to", "_on_policy",
                 "_on_targets", "_on_failure")

    log = Logger()

    def __init__(self, forwarder, pipeline, forward):
        self.forwarder = forwarder
        self.pipeline = pipeline
        self.forward = forward
        self.stats = {"answered_errors": 0, "internal_errors": 0}
        self._valid_to = set()
        # The pipeline's callbacks, bound once rather than for each request.
        self._on_policy = self._policy_passed
        self._on_targets = self._targets_chosen
        self._on_failure = self.fail

    def receive(self, context):
        """Take a new request (not CANCEL, not an absorbed retransmission)."""
        request = context.request
        try:
            forwarder = self.forwarder
            forwarder.check(request)
            # The To URI names the callee to the registrar, the location
            # service and the rules: one that does not parse is refused
            # here rather than forwarded (RFC 3261 16.3 step 1).  Those seen
            # to parse are remembered: a call's later requests repeat them.
            to = request._address("to")   # (compiled: a C call on the typed request)
            text = to.uri_text
            if text not in self._valid_to:
                to.uri
                if len(self._valid_to) >= 20000:
                    self._valid_to.clear()
                self._valid_to.add(text)
            forwarder.preprocess_routes(request)
        except Exception as e:
            self.fail(context, e)
            return
        self.pipeline.run_request(context, self._on_policy, self._on_failure)

    def _policy_passed(self, context):
        if context.stateful and context.request.method == "INVITE":
            # RFC 3261 16.2: answer 100 before target selection (a store or
            # DNS may be slow) so the caller stops retransmitting.
            context.waiting()
        self.pipeline.select_targets(context, self._on_targets, self._on_failure)

    def _targets_chosen(self, context, targets):
        if not targets:
            self.fail(context, Respond(404))
            return
        try:
            self.forward(context, targets)
        except Exception as e:
            self.fail(context, e)

    def fail(self, context, error):
        """
        Answer the request of C{context} for C{error} (see
        L{error_status}); an ACK is never answered (RFC 3261 17).
        """
        status, reason, headers = error_status(error)
        if not isinstance(error, (Respond, SIPError)):
            self.stats["internal_errors"] += 1
            self.log.failure("processing {method} {call_id} failed",
                             Failure(error), method=context.request.method,
                             call_id=context.request.call_id)
        else:
            self.stats["answered_errors"] += 1
        if context.request.method == "ACK" or context.answered:
            return
        context.respond(self.forwarder.local_response(context.request, status, reason, headers))

