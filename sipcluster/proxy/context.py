# -*- test-case-name: tests.test_proxy -*-
"""
The response context of a stateful proxy (RFC 3261 16.7 - 16.10): the
branches one request was forked to, which responses go upstream at once,
the choice of the best final response, Timer C, and CANCEL.
"""

from twisted.internet import defer
from zope.interface import classImplements

from sipcluster.transaction.interfaces import IClientTransactionOwner

# RFC 3261 16.7 step 7: challenges of every 401/407 are gathered into the
# response sent upstream.
CHALLENGE_HEADERS = ("www-authenticate", "proxy-authenticate")


class Branch:
    """One forwarded copy of the request: its client transaction and outcome."""

    __slots__ = ("target", "tx", "response", "done", "timer_c", "timer_fr", "index")

    def __init__(self, target, index):
        self.target = target
        self.index = index
        self.tx = None
        self.response = None
        self.done = False
        self.timer_c = None
        # The target's own timeout (Target.timeout): until any response.
        self.timer_fr = None


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


class ResponseContext:
    """
    The client-transaction owner of every branch of one request.

    @ivar proxy: what the context asks of its proxy: C{start_branch(rc,
        branch)}, C{local_response(request, status, reason, headers)},
        C{send_upstream(rc, response)}, C{final_sent(rc, response)} and
        its C{pipeline} (failure stages).
    @ivar context: the L{RequestContext} of the request being proxied.
    @ivar groups: target groups still to try, each a list of targets of
        equal q (parallel forking inside a group, sequential between).
    """

    # (An extension type in the compiled build: see context.pxd.)
    __slots__ = ("proxy", "context", "request", "groups", "timer_heap", "timer_c", "branches",
                 "final_sent", "cancelled", "no_new_branches", "is_invite", "_starting",
                 "_asking")

    def __init__(self, proxy, context, groups, timer_heap, timer_c):
        self.proxy = proxy
        self.context = context
        self.request = context.request
        self.groups = list(groups)
        # Timer C and the targets' own timeouts run on the transactions'
        # L{TimerHeap}, not as a reactor DelayedCall each.
        self.timer_heap = timer_heap
        self.timer_c = timer_c
        self.branches = []
        self.final_sent = False
        self.cancelled = False
        self.no_new_branches = False
        self.is_invite = self.request.method == "INVITE"
        self._starting = 0
        self._asking = False

    # -- branches --------------------------------------------------------------

    def start(self):
        self._next_group()

    def _next_group(self):
        group = self.groups.pop(0)
        self._starting += 1
        try:
            for target in group:
                branch = Branch(target, len(self.branches))
                self.branches.append(branch)
                self.proxy.start_branch(self, branch)
        finally:
            self._starting -= 1
        self._check_done()

    def branch_started(self, branch, tx, owner):
        """C{branch} was sent in C{tx}, which reports to C{owner} (this context or a NextAddress)."""
        branch.tx = tx
        if tx.state == "terminated" and tx.final is None:
            # The first send failed inside start_client (a UDP socket
            # error), before this branch knew its transaction: the
            # transport_failed it reported found no branch.  Its owner
            # (which the ended transaction no longer holds) hears of it
            # again: a NextAddress tries the next address.
            owner.transport_failed(tx)
            return
        if self.is_invite and not branch.done:
            branch.timer_c = self.timer_heap.call_later(self.timer_c, self._timer_c, branch)
        if branch.target.timeout and not branch.done:
            branch.timer_fr = self.timer_heap.call_later(branch.target.timeout, self._timer_fr,
                                                         branch)
        if self.cancelled:
            tx.cancel()

    def branch_failed(self, branch, status, reason=None):
        """A branch ended without a response (no route, 408, 503...)."""
        if branch.done:
            return
        response = self.proxy.local_response(self.request, status, reason)
        self._complete(branch, response)
        self._check_done()

    # -- client transaction owner -------------------------------------------------

    def response_received(self, tx, response):
        branch = self._branch_of(tx)
        if branch is None:
            return
        status = response.status
        if branch.timer_fr is not None:
            # Any answer, a 100 included, shows the next hop is there:
            # from now on its transaction's timers and Timer C decide.
            self.timer_heap.cancel(branch.timer_fr)
            branch.timer_fr = None
        if status < 200:
            if status == 100 or branch.done:
                return
            if branch.timer_c is not None and self.timer_heap.active(branch.timer_c):
                # RFC 3261 16.7 step 2: a provisional restarts Timer C.
                self.timer_heap.cancel(branch.timer_c)
                branch.timer_c = self.timer_heap.call_later(self.timer_c, self._timer_c, branch)
            if not self.final_sent:
                self.proxy.send_upstream(self, response)
            return
        if status < 300:
            # RFC 3261 16.7 step 5: every 2xx goes upstream at once, even
            # after another one; then the other branches are cancelled.
            first = not branch.done
            if first:
                self._complete(branch, response)
            self.final_sent = True
            self.proxy.send_upstream(self, response)
            self.proxy.final_sent(self, response if first else None)
            self.no_new_branches = True
            self._cancel_pending()
            return
        if branch.done:
            return
        self._complete(branch, response)
        if status >= 600:
            # 16.7 step 5: cancel the rest, fork no more; the 6xx wins.
            self.no_new_branches = True
            self._cancel_pending()
        self._check_done()

    def timed_out(self, tx):
        branch = self._branch_of(tx)
        if branch is not None:
            self._tell_failed(branch, 408)
            self.branch_failed(branch, 408)

    def transport_failed(self, tx):
        branch = self._branch_of(tx)
        if branch is not None:
            self._tell_failed(branch, 503)
            # RFC 3261 16.7 step 1 / 8.1.3.1: a transport error is a 503.
            self.branch_failed(branch, 503, "Service Unavailable (transport error)")

    def _branch_of(self, tx):
        for branch in self.branches:
            if branch.tx is tx:
                return branch
        return None

    def _complete(self, branch, response):
        branch.done = True
        branch.response = response
        # (Stopping a timer that fired or stopped does nothing.)
        if branch.timer_c is not None:
            self.timer_heap.cancel(branch.timer_c)
            branch.timer_c = None
        if branch.timer_fr is not None:
            self.timer_heap.cancel(branch.timer_fr)
            branch.timer_fr = None

    def _tell_failed(self, branch, status):
        on_failed = branch.target.on_failed
        if on_failed is not None and not branch.done:
            try:
                on_failed(branch.target, status)
            except Exception:
                self.proxy.log.failure("on_failed of {target} failed", target=branch.target)

    # -- the target's own timeout (tm's fr_timer) ---------------------------------

    def _timer_fr(self, branch):
        """
        The branch's target timed out before any response: fail it with
        408 now (so failure stages may try another target while the caller
        still waits) rather than after Timer B/F's 64*T1.  An INVITE's
        client transaction is asked to cancel, which it does if a
        provisional response still comes (RFC 3261 9.1: no CANCEL before
        one) and stops retransmitting; any other request's transaction is
        ended.
        """
        branch.timer_fr = None
        if branch.done:
            return
        tx = branch.tx
        if tx is not None:
            if self.is_invite and hasattr(tx, "cancel"):
                # No more retransmissions (as tm stops them on fr_timer);
                # Timer B still ends the transaction.
                tx.cancel_timer("A")
                tx.cancel()
            else:
                tx.terminate()
        self._tell_failed(branch, 408)
        self.branch_failed(branch, 408, "Request Timeout (no answer from next hop)")

    # -- Timer C, CANCEL --------------------------------------------------------

    def _timer_c(self, branch):
        branch.timer_c = None
        if branch.done:
            return
        if branch.tx is not None and branch.tx.provisional:
            # 16.8: cancel it; its 487 completes the branch.
            branch.tx.cancel()
        else:
            if branch.tx is not None:
                branch.tx.terminate()
            self.branch_failed(branch, 408)

    def cancel(self):
        """A CANCEL for our request arrived (16.10): cancel every branch."""
        self.cancelled = True
        self.no_new_branches = True
        self.groups = []
        self._cancel_pending()
        self._check_done()

    def _cancel_pending(self):
        for branch in self.branches:
            if not branch.done and branch.tx is not None and hasattr(branch.tx, "cancel"):
                branch.tx.cancel()

    # -- choosing and sending the final response -------------------------------

    def _check_done(self):
        if self._starting or self.final_sent or self._asking:
            return
        for branch in self.branches:
            if not branch.done:
                return
        if self.groups and not self.no_new_branches:
            self._next_group()
            return
        if not self.no_new_branches and self.proxy.pipeline.failure:
            self._ask_failure_stages()
            return
        self._send_best()

    def _ask_failure_stages(self):
        """
        Every branch failed: the failure stages may name new targets
        (serial failover) before the best response goes upstream.
        """
        responses = [b.response for b in self.branches if b.response is not None]
        self._asking = True
        try:
            result = self.proxy.pipeline.run_failure(self.context, responses)
        except Exception:
            self.proxy.log.failure("failure stage failed")
            result = None
        if isinstance(result, defer.Deferred):
            result.addErrback(lambda f: self.proxy.log.failure("failure stage failed", f))
            result.addCallback(self._failure_answered)
        else:
            self._failure_answered(result)

    def _failure_answered(self, targets):
        self._asking = False
        if self.final_sent:
            return
        if targets and not self.no_new_branches:
            self.groups = group_by_q(targets)
            self._next_group()
            return
        self._send_best()

    def _send_best(self):
        responses = [b.response for b in self.branches if b.response is not None]
        best = choose_best(responses)
        if best is None or (self.cancelled and best.status == 408):
            best = self.proxy.local_response(self.request, 487 if self.cancelled else 408)
        elif best.status == 503:
            # RFC 3261 16.7 step 6: a 503 upstream would make the caller
            # give up on us rather than the callee.
            best = self.proxy.local_response(self.request, 500, None, [
                (name, value) for name in ("retry-after",) for value in best.values(name)])
        if best.status in (401, 407):
            best = best.copy()
            gather_challenges(best, responses)
        self.final_sent = True
        self.proxy.send_upstream(self, best)
        self.proxy.final_sent(self, best)


# (Declared here rather than by @implementer, which an extension type cannot
# take as a decorator; zope.interface records it all the same.)
classImplements(ResponseContext, IClientTransactionOwner)


def choose_best(responses):
    """
    The best final response (RFC 3261 16.7 step 6): any 6xx, else the
    lowest class; within 4xx, a specific answer is preferred over 408.
    """
    finals = [r for r in responses if r.status >= 200]
    if not finals:
        return None
    sixes = [r for r in finals if r.status >= 600]
    if sixes:
        return sixes[0]

    def rank(response):
        status = response.status
        return (status // 100, status == 408, status)
    return min(finals, key=rank)


def gather_challenges(best, responses):
    """Put every 401/407 challenge into C{best} (RFC 3261 16.7 step 7)."""
    for name in CHALLENGE_HEADERS:
        values = []
        for response in responses:
            if response.status in (401, 407):
                for value in _raw_values(response, name):
                    if value not in values:
                        values.append(value)
        if values:
            best.remove(name)
            for value in values:
                best.add(name, value)


def _raw_values(response, name):
    # Challenges contain commas inside their parameters: take whole lines.
    return [value for key, value in response.items() if key.lower() == name]
