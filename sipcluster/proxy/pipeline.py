# -*- test-case-name: tests.test_pipeline -*-
"""
The request pipeline: the named points every request passes through on its
way across a node, and the stages that plug into them.  Both proxy modes
walk the same pipeline; it is where every feature (the registrar, admission,
routing rules, authentication, SDP and media handling...) hooks in, like
Kamailio's route blocks.

The points, in order:

  - C{request}: after RFC 3261 16.3 validation and 16.4 route
    pre-processing.  Policy stages (access lists, authentication, rate
    limits, call admission) run here.
  - C{targets}: target selection.  Each stage in turn may answer the
    request (the registrar), return the target set, or pass (C{None}) to the
    next one; the last is the Request-URI as written (RFC 3261 16.5).
  - C{branch}: once per forwarded copy, to edit what leaves (SDP, topology
    hiding, media anchoring).
  - C{response}: every response on its way upstream.
  - C{failure}: a stateful request whose branches all failed; a stage may
    return new targets (serial failover) before the best response is sent.
  - C{dialog}: dialogs confirmed and ended, call attempts that failed.

A stage continues (returns None), answers the request by raising
L{Respond}, or returns a Deferred: the pipeline goes on when it fires (an
errback with L{Respond} answers, any other failure answers 500).  This is
twisted.names' ResolverChain rule: a stage's "not mine" hands the request
on, anything else stops the walk.
"""

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import classImplements

from sipcluster.sip.errors import SIPError

REQUEST = "request"
TARGETS = "targets"
BRANCH = "branch"
RESPONSE = "response"
FAILURE = "failure"
DIALOG = "dialog"
POINTS = (REQUEST, TARGETS, BRANCH, RESPONSE, FAILURE, DIALOG)

# The stage interfaces live in an uncompiled module (zope.interface reads
# their methods as plain functions); they are named here too.
from sipcluster.proxy.interfaces import (  # noqa: E402
    IBranchStage, IDialogStage, IFailureStage, IRequestStage, IResponseStage, IStage,
    ITargetStage)

POINT_INTERFACES = {
    REQUEST: IRequestStage, TARGETS: ITargetStage, BRANCH: IBranchStage,
    RESPONSE: IResponseStage, FAILURE: IFailureStage, DIALOG: IDialogStage,
}


class Respond(Exception):
    """
    Processing of a request stops here: answer it with C{status},
    C{reason} (None for the standard phrase) and extra C{headers}, a list
    of (name, value).
    """

    def __init__(self, status, reason=None, headers=()):
        Exception.__init__(self, status, reason)
        self.status = status
        self.reason = reason
        self.headers = list(headers)


def error_status(error):
    """
    (status, reason, headers) of the answer to C{error}, the one place an
    error becomes a response: L{Respond} says it itself; a L{SIPError} from
    the message layer (a header that did not parse when a stage read it)
    carries its status; anything else is our bug, answered 500.
    """
    if isinstance(error, Respond):
        return error.status, error.reason, error.headers
    if isinstance(error, SIPError):
        return error.status, error.reason, []
    return 500, "Server Internal Error", []


class Stage:
    """
    A base for stages: the declarations with their usual values.
    Subclasses set C{name} and C{points} and define the methods of those
    points; they are declared to implement the interface of each point
    (verifyObject checks they do).
    """

    name = "stage"
    points = ()
    needs_transactions = False
    config_key = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        classImplements(cls, *[POINT_INTERFACES[point] for point in cls.points
                               if point in POINT_INTERFACES])


class StageNotAllowed(Exception):
    """A stage that needs transactions was added to a stateless pipeline."""

    def __init__(self, stage):
        Exception.__init__(self, stage)
        self.stage = stage


# -- the context of one request ----------------------------------------------

class RequestContext:
    """
    One request's passage through the pipeline (for the response context
    of RFC 3261 16.7, see L{sipcluster.proxy.context}).

    @ivar request: the L{Request}, after route pre-processing.
    @ivar source: the L{Source} it came from.
    @ivar stateful: whether the node is stateful (an ACK for a 2xx is
        forwarded without a transaction even there).
    @ivar server_tx: the server transaction holding the request, or None.
    @ivar started: when it arrived, by the reactor's clock.
    @ivar vars: notes stages leave for later ones (an authenticated user,
        an emergency flag), like Kamailio's AVPs.
    @ivar targets: the target set once chosen.
    @ivar answered: whether a final response was sent by the pipeline.
    """

    __slots__ = ("request", "source", "stateful", "server_tx", "started", "_vars",
                 "targets", "answered", "_answer", "_trying")

    def __init__(self, request, source, answer, server_tx=None, started=0.0, trying=None,
                 stateful=None):
        self.request = request
        self.source = source
        self.server_tx = server_tx
        self.stateful = server_tx is not None if stateful is None else stateful
        self.started = started
        self._vars = None
        self.targets = None
        self.answered = False
        self._answer = answer
        self._trying = trying

    @property
    def vars(self):
        if self._vars is None:
            self._vars = {}
        return self._vars

    def waiting(self):
        """
        A stage is waiting on something (a store, a RADIUS server): an
        INVITE is answered 100 now so the caller stops retransmitting (RFC
        3261 16.2), once.
        """
        if self._trying is not None:
            trying, self._trying = self._trying, None
            trying(self)

    def respond(self, response):
        """Send C{response} (one of our own) to the request's sender."""
        if response.status >= 200:
            if self.answered:
                return
            self.answered = True
        self._answer(self, response)

    def __repr__(self):
        return "<RequestContext %s %s>" % (self.request.method, self.request.call_id)


# -- the pipeline --------------------------------------------------------------

class Pipeline:
    """
    The stages of one node, per point, in the order they were added.

    @ivar stateful: whether the node keeps transactions; a stage that needs
        them cannot be added otherwise.
    """

    # (An extension type in the compiled build: see pipeline.pxd.)
    __slots__ = ("stateful", "stages", "request", "targets", "branch", "response", "failure",
                 "dialog")

    log = Logger()

    def __init__(self, stateful=True):
        self.stateful = stateful
        self.stages = []
        for point in POINTS:
            setattr(self, point, [])

    def add(self, stage, before=None):
        """
        Add C{stage} at every point it declares (before the stage named
        C{before}, else last).

        @raise StageNotAllowed: it needs transactions and this pipeline has
            none.
        """
        if stage.needs_transactions and not self.stateful:
            raise StageNotAllowed(stage)
        for point in stage.points:
            if point not in POINTS:
                raise ValueError("stage %s: unknown pipeline point %r" % (stage.name, point))
            stages = getattr(self, point)
            index = len(stages)
            if before is not None:
                for i, other in enumerate(stages):
                    if other.name == before:
                        index = i
                        break
            stages.insert(index, stage)
        self.stages.append(stage)
        return stage

    def named(self, name):
        """The stage called C{name}, or None."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        return None

    # -- walking ---------------------------------------------------------------

    def run_request(self, context, done, failed, index=0):
        """
        Walk the C{request} stages from C{index}; then C{done(context)}.
        Any error (L{Respond} included) goes to C{failed(context, error)}.
        """
        stages = self.request
        if not stages:
            done(context)
            return
        try:
            while index < len(stages):
                result = stages[index].on_request(context)
                index += 1
                if result is not None:
                    context.waiting()
                    result.addCallbacks(self._request_resumed, _stage_failed,
                                        callbackArgs=(context, done, failed, index),
                                        errbackArgs=(context, failed))
                    return
        except Exception as e:
            failed(context, e)
            return
        done(context)

    # (Deferred callbacks as methods, not lambdas: a function holding a
    # lambda pays for its closure on every call, even when none is made.)

    def _request_resumed(self, _, context, done, failed, index):
        self.run_request(context, done, failed, index)

    def select_targets(self, context, done, failed, index=0):
        """
        Ask the C{targets} stages in turn; C{done(context, targets)} with the
        first answer that is not None (an empty list when none of them had
        one).  A stage that answered the request ends the walk silently.
        """
        stages = self.targets
        result = None
        try:
            while index < len(stages):
                result = stages[index].targets(context)
                index += 1
                if result is None:
                    if context.answered:
                        break
                    continue
                # (A list is the usual answer; isinstance on Deferred, an
                # abc, costs more than the rest of this loop.)
                if result.__class__ is not list and isinstance(result, defer.Deferred):
                    result.addCallbacks(self._targets_resumed, _stage_failed,
                                        callbackArgs=(context, done, failed, index),
                                        errbackArgs=(context, failed))
                    return
                break
        except Exception as e:
            failed(context, e)
            return
        self._targets_chosen(context, result, done, failed, index)

    def _targets_resumed(self, result, context, done, failed, index):
        self._targets_chosen(context, result, done, failed, index)

    def _targets_chosen(self, context, result, done, failed, index):
        if context.answered:
            return
        if result is None:
            if index < len(self.targets):
                return self.select_targets(context, done, failed, index)
            result = []
        context.targets = result
        done(context, result)

    def run_branch(self, context, request, target):
        """
        The C{branch} stages on one outgoing copy: a Deferred firing when
        they are all done (at once when none waits), failing with the first
        error.
        """
        for i, stage in enumerate(self.branch):
            try:
                result = stage.branch(context, request, target)
            except Exception:
                return defer.fail(Failure())
            if result is not None:
                rest = self.branch[i + 1:]
                return result.addCallback(lambda _: self._branch_rest(rest, context, request, target))
        return defer.succeed(None)

    def _branch_rest(self, stages, context, request, target):
        d = defer.succeed(None)
        for stage in stages:
            d.addCallback(lambda _, s=stage: s.branch(context, request, target))
        return d

    def run_response(self, context, response):
        """The C{response} stages on a response going upstream."""
        for stage in self.response:
            try:
                stage.response(context, response)
            except Exception:
                self.log.failure("response stage {stage} failed", stage=stage.name)

    def run_failure(self, context, responses):
        """
        New targets from the first C{failure} stage that has some: a list,
        None, or a Deferred of either.
        """
        return self._failure_from(0, context, responses)

    def _failure_from(self, index, context, responses):
        stages = self.failure
        while index < len(stages):
            result = stages[index].failure(context, responses)
            index += 1
            if isinstance(result, defer.Deferred):
                return result.addCallback(
                    lambda r: r if r else self._failure_from(index, context, responses))
            if result:
                return result
        return None

    def dialog_event(self, event, *args):
        """Tell every C{dialog} stage; one failing does not stop the others."""
        for stage in self.dialog:
            try:
                getattr(stage, event)(*args)
            except Exception:
                self.log.failure("dialog stage {stage} failed on {event}", stage=stage.name,
                                 event=event)


def _stage_failed(failure, context, failed):
    """A stage's Deferred failed: C{failed(context, error)} (L{Respond} answers)."""
    failed(context, failure.value)
