# -*- test-case-name: tests.test_transaction -*-
"""
Client transactions (RFC 3261 17.1, RFC 6026 7.2): they retransmit a
request over unreliable transports, time out, generate the ACK for non-2xx
INVITE responses, and send CANCEL when asked (RFC 3261 9.1).
"""

from twisted.python.failure import Failure

from sipcluster.sip.message import Request
from sipcluster.transaction.base import Transaction


def _hop_request(invite, method, to):
    """
    A request that goes with C{invite} on the same hop: its Request-URI,
    top Via (same branch), From, Call-ID, CSeq number and Route set (RFC
    3261 17.1.1.3 for ACK, 9.1 for CANCEL).
    """
    request = Request(method, invite.uri)
    request.add("Via", str(invite.top_via))
    request.add("Max-Forwards", 70)
    request.add("From", invite.header("from"))
    request.add("To", to)
    request.add("Call-ID", invite.call_id)
    request.add("CSeq", "%d %s" % (invite.cseq.number, method))
    for value in invite.values("route"):
        request.add("Route", value)
    request.add("Content-Length", 0)
    return request


def build_ack(invite, response):
    """The ACK for a non-2xx final response: the To of the response."""
    return _hop_request(invite, "ACK", response.header("to"))


def build_cancel(invite):
    """A CANCEL for C{invite}."""
    return _hop_request(invite, "CANCEL", invite.header("to"))


class ClientTransaction(Transaction):
    """
    @ivar peer: where the request goes.
    @ivar owner: gets C{response_received(tx, response)},
        C{timed_out(tx)} and C{transport_failed(tx)}.

    A final response lets go of what only the states before it need,
    rather than holding it through the 5 to 32 seconds the transaction
    then waits in Completed or Accepted: the request and its bytes (kept
    for retransmissions and a CANCEL), and the owner where nothing more is
    told to it (a non-INVITE's later responses, and a non-2xx INVITE's,
    are absorbed).  A non-2xx INVITE keeps the bytes of its ACK instead,
    sent again for each retransmission of the response.  At 800 calls a
    second, a stateful node holds some 25,000 calls through that time.
    """

    __slots__ = ("peer", "owner", "final", "_data", "_interval")

    def __init__(self, layer, key, request, peer, owner):
        Transaction.__init__(self, layer, key, request, peer.reliable)
        self.peer = peer
        self.owner = owner
        self.final = None
        self._data = None
        self._interval = None   # Timer A's or E's

    def _transmit(self):
        if self._data is None:
            self._data = self.request.to_bytes()
        sent = self.transport.send_data_now(self._data, self.peer)
        if sent is not True:
            # A TransportError (UDP, at once) or a Deferred (a stream).
            if isinstance(sent, Exception):
                self._send_failed(Failure(sent))
            else:
                sent.addErrback(self._send_failed)

    def _send_failed(self, failure):
        # RFC 3261 17.1.4: a transport error is reported to the TU, which
        # treats it as a 503.
        if self.state not in ("terminated",) and self.final is None:
            owner = self.owner
            self.terminate()
            owner.transport_failed(self)

    def terminate(self):
        """
        End the transaction and let go of its owner.  The owner holds this
        transaction too (a branch of a proxy's response context): kept, the
        pair would be a reference cycle that only the cyclic collector
        frees, with the messages it holds, long after the call.  Whatever
        tells the owner of the end takes the owner before calling this.
        """
        Transaction.terminate(self)
        self.owner = None


class ClientInviteTransaction(ClientTransaction):
    """States: calling, proceeding, accepted, completed, terminated."""

    __slots__ = ("cancel_requested", "cancel_sent", "provisional", "_ack")

    def __init__(self, layer, key, request, peer, owner):
        ClientTransaction.__init__(self, layer, key, request, peer, owner)
        self.state = "calling"
        self.cancel_requested = False
        self.cancel_sent = False
        self.provisional = False
        self._ack = None  # the bytes of the ACK for a non-2xx final response

    def start(self):
        self._transmit()
        if not self.reliable:
            self._interval = self.timers.t1
            self.start_timer("A", self._interval)
        self.start_timer("B", self.timers.timeout)

    def timer_fired(self, name):
        if name == "A":
            self._timer_a()
        elif name == "B":
            self._timer_b()
        elif name == "M" or name == "D":
            self.terminate()
        elif name == "cancelled":
            self._cancel_unanswered()
        else:
            ClientTransaction.timer_fired(self, name)

    def _timer_a(self):
        if self.state != "calling":
            return
        self._transmit()
        self._interval *= 2
        self.start_timer("A", self._interval)

    def _timer_b(self):
        if self.state == "calling":
            owner = self.owner
            self.terminate()
            owner.timed_out(self)

    def receive_response(self, response):
        status = response.status
        state = self.state
        if state in ("calling", "proceeding"):
            if status < 200:
                self.state = "proceeding"
                self.provisional = True
                self.cancel_timer("A")
                self.cancel_timer("B")
                if self.cancel_requested and not self.cancel_sent:
                    self._send_cancel()
                self.owner.response_received(self, response)
            elif status < 300:
                self.final = response
                self._data = None  # sent for the last time
                self.state = "accepted"
                self.cancel_timer("A")
                self.cancel_timer("B")
                self.start_timer("M", self.timers.timeout)
                self.owner.response_received(self, response)
                # Accepted passes 2xx on to the owner (RFC 6026 7.2); the
                # ACK for a 2xx is the caller's own, not ours.
                self.request = None
            else:
                self.final = response
                self.state = "completed"
                self.cancel_timer("A")
                self.cancel_timer("B")
                self._data = None
                self._ack = build_ack(self.request, response).to_bytes()
                self._send_ack()
                self.start_timer("D", 0 if self.reliable else self.timers.timer_d)
                owner = self.owner
                self.request = self.owner = None
                owner.response_received(self, response)
        elif state == "accepted":
            if 200 <= status < 300:
                # RFC 6026 7.2: retransmitted or forked 2xx go to the TU.
                self.owner.response_received(self, response)
        elif state == "completed":
            if status >= 300:
                self._send_ack()

    def _send_ack(self):
        """The ACK for the non-2xx final response, again for each retransmission of it."""
        self.transport.send_data(self._ack, self.peer).addErrback(_ignore)

    def cancel(self):
        """
        Cancel this INVITE: now if a provisional response came, otherwise as
        soon as one does (RFC 3261 9.1).
        """
        if self.cancel_requested or self.state not in ("calling", "proceeding"):
            return
        self.cancel_requested = True
        if self.provisional:
            self._send_cancel()

    def _send_cancel(self):
        self.cancel_sent = True
        self.layer.start_client(build_cancel(self.request), self.peer, _IgnoreResponses)
        # RFC 3261 9.1: no final response 64*T1 after the CANCEL, and the
        # INVITE is given up (the TU hears of it as a timeout).
        self.start_timer("cancelled", self.timers.timeout)

    def _cancel_unanswered(self):
        if self.state in ("calling", "proceeding"):
            owner = self.owner
            self.terminate()
            owner.timed_out(self)


def _ignore(failure):
    """A lost ACK is sent again with the next retransmission of the response."""


class _IgnoreResponsesOwner:
    """The responses to a CANCEL we send matter to nobody (RFC 3261 9.1)."""

    def response_received(self, tx, response):
        pass

    def timed_out(self, tx):
        pass

    def transport_failed(self, tx):
        pass


_IgnoreResponses = _IgnoreResponsesOwner()


class ClientNonInviteTransaction(ClientTransaction):
    """States: trying, proceeding, completed, terminated."""

    __slots__ = ()

    def __init__(self, layer, key, request, peer, owner):
        ClientTransaction.__init__(self, layer, key, request, peer, owner)
        self.state = "trying"

    def start(self):
        self._transmit()
        if not self.reliable:
            self._interval = self.timers.t1
            self.start_timer("E", self._interval)
        self.start_timer("F", self.timers.timeout)

    def timer_fired(self, name):
        if name == "E":
            self._timer_e()
        elif name == "F":
            self._timer_f()
        elif name == "K":
            self.terminate()
        else:
            ClientTransaction.timer_fired(self, name)

    def _timer_e(self):
        if self.state not in ("trying", "proceeding"):
            return
        self._transmit()
        if self.state == "trying":
            self._interval = min(2 * self._interval, self.timers.t2)
        else:
            self._interval = self.timers.t2
        self.start_timer("E", self._interval)

    def _timer_f(self):
        if self.state in ("trying", "proceeding"):
            owner = self.owner
            self.terminate()
            owner.timed_out(self)

    def receive_response(self, response):
        if self.state not in ("trying", "proceeding"):
            return
        if response.status < 200:
            self.state = "proceeding"
            self.owner.response_received(self, response)
            return
        self.final = response
        self._data = None  # sent for the last time
        self.state = "completed"
        self.cancel_timer("E")
        self.cancel_timer("F")
        self.start_timer("K", 0 if self.reliable else self.timers.t4)
        # Completed absorbs the retransmissions of the response (RFC 3261
        # 17.1.2.2): nothing more for the owner, nor of the request.
        owner = self.owner
        self.request = self.owner = None
        owner.response_received(self, response)
