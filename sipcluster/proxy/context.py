# -*- test-case-name: tests.test_proxy -*-
"""
The response context of a stateful proxy (RFC 3261 16.7 - 16.10): the
branches one request was forked to, which responses go upstream at once,
the choice of the best final response, Timer C, and CANCEL.
"""

from sipcluster.proxy.forwarding import Reject

# RFC 3261 16.7 step 7: challenges of every 401/407 are gathered into the
# response sent upstream.
CHALLENGE_HEADERS = ("www-authenticate", "proxy-authenticate")


class Branch:
    """One forwarded copy of the request: its client transaction and outcome."""

    __slots__ = ("target", "tx", "response", "done", "timer_c", "index")

    def __init__(self, target, index):
        self.target = target
        self.index = index
        self.tx = None
        self.response = None
        self.done = False
        self.timer_c = None


class ResponseContext:
    """
    @ivar server_tx: the server transaction of the request being proxied.
    @ivar groups: target groups still to try, each a list of targets of
        equal q (parallel forking inside a group, sequential between).
    """

    def __init__(self, proxy, server_tx, request, groups, inbound_transport):
        self.proxy = proxy
        self.server_tx = server_tx
        self.request = request
        self.groups = list(groups)
        self.inbound = inbound_transport
        self.branches = []
        self.final_sent = False
        self.cancelled = False
        self.no_new_branches = False
        self.is_invite = request.method == "INVITE"
        self.started = proxy.clock.seconds()
        self._starting = 0

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
                self.proxy.forward_branch(self, branch)
        finally:
            self._starting -= 1
        self._check_done()

    def branch_started(self, branch, tx):
        branch.tx = tx
        if self.is_invite and not branch.done:
            branch.timer_c = self.proxy.clock.callLater(self.proxy.timers.timer_c, self._timer_c, branch)
        if self.cancelled:
            tx.cancel()

    def branch_failed(self, branch, status, reason=None):
        """A branch ended without a response (no route, 408, 503...)."""
        if branch.done:
            return
        response = self.proxy.forwarder.local_response(self.request, status, reason)
        self._complete(branch, response)
        self._check_done()

    # -- client transaction owner -------------------------------------------------

    def response_received(self, tx, response):
        branch = self._branch_of(tx)
        if branch is None:
            return
        status = response.status
        if status < 200:
            if status == 100:
                return
            if branch.timer_c is not None and branch.timer_c.active():
                # RFC 3261 16.7 step 2: a provisional restarts Timer C.
                branch.timer_c.reset(self.proxy.timers.timer_c)
            if not self.final_sent:
                self._forward(response)
            return
        if status < 300:
            # RFC 3261 16.7 step 5: every 2xx goes upstream at once, even
            # after another one; then the other branches are cancelled.
            first = not branch.done
            if first:
                self._complete(branch, response)
            self._final_sent()
            self._forward(response)
            if first:
                self._observe(response)
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
            self.branch_failed(branch, 408)

    def transport_failed(self, tx):
        branch = self._branch_of(tx)
        if branch is not None:
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
        if branch.timer_c is not None and branch.timer_c.active():
            branch.timer_c.cancel()
        branch.timer_c = None

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
        if self._starting or self.final_sent:
            return
        if any(not b.done for b in self.branches):
            return
        if self.groups and not self.no_new_branches:
            self._next_group()
            return
        self._send_best()

    def _send_best(self):
        responses = [b.response for b in self.branches if b.response is not None]
        best = choose_best(responses)
        if best is None or (self.cancelled and best.status == 408):
            best = self.proxy.forwarder.local_response(self.request, 487 if self.cancelled else 408)
        elif best.status == 503:
            # RFC 3261 16.7 step 6: a 503 upstream would make the caller
            # give up on us rather than the callee.
            best = self.proxy.forwarder.local_response(self.request, 500, extra=[
                (name, value) for name in ("retry-after",) for value in best.values(name)])
        if best.status in (401, 407):
            best = best.copy()
            gather_challenges(best, responses)
        self._final_sent()
        self._forward(best)
        self._observe(best)

    def _final_sent(self):
        self.final_sent = True
        self.proxy.setups.discard(self.server_tx.key)

    def _observe(self, response):
        """Tell the dialog observers what this final response means."""
        request = self.request
        initial = self.is_invite and request.to_tag is None
        if initial and response.status >= 300:
            self.proxy.call_failed(request, response, self.started)
            return
        for observer in self.proxy.dialog_observers:
            try:
                if initial and 200 <= response.status < 300:
                    observer.dialog_confirmed(request, response)
                elif request.method == "BYE":
                    observer.dialog_ended(request, response)
            except Exception:
                self.proxy.log.failure("dialog observer failed")

    def _forward(self, response):
        if self.server_tx.state == "terminated":
            return
        if response.has("via") and self.proxy.owns_via(response.top_via):
            response = response.copy()
            response.pop_via()
        if not response.has("via"):
            # RFC 3261 16.7 step 3: no Via left, it was meant for us.  Send
            # our own answer instead so the caller is not left waiting.
            response = self.proxy.forwarder.local_response(
                self.request, response.status, response.reason)
        self.proxy.send_upstream(self.server_tx, response)

    def reject(self, error):
        if isinstance(error, Reject) and not self.final_sent:
            self._final_sent()
            self.proxy.send_upstream(self.server_tx, self.proxy.forwarder.local_response(
                self.request, error.status, error.reason, error.extra))


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
