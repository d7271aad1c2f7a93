# -*- test-case-name: tests.test_transaction -*-
"""
Server transactions (RFC 3261 17.2, RFC 6026 7.1): they absorb request
retransmissions, re-send the last response, and retransmit final INVITE
responses over unreliable transports until the ACK arrives.
"""

from sipcluster.transaction.base import Transaction


class ServerTransaction(Transaction):
    """
    @ivar source: where the request came from; responses go back by it.
    @ivar last_response: the response most recently sent, for re-sending
        (none in an INVITE's Accepted, which re-sends nothing).
    @ivar request: the request, until a final response is sent: the
        states after that (up to 32 s of them) re-send the response or
        absorb retransmissions, and need the request no more.
    @ivar peer: where the responses go over UDP, found from the first
        one's top Via (RFC 3261 18.2.2), which every later one repeats (the
        UAS copies it, 8.2.6.2): as Kamailio's tm keeps a transaction's
        reply destination.  A later response whose top Via was rewritten
        still goes there, where 18.2.2 read alone would follow the new one.
    """

    __slots__ = ("source", "last_response", "on_terminated", "_interval", "peer")

    def __init__(self, layer, key, request, source):
        Transaction.__init__(self, layer, key, request, source.transport != "udp")
        self.source = source
        self.last_response = None
        self.on_terminated = None
        self._interval = None   # Timer G's, for an INVITE
        self.peer = None

    def _send(self, response):
        self.last_response = response
        if response.status >= 200:
            self.request = None
        self._deliver(response)

    def _deliver(self, response):
        """Send C{response}, first or again, where the transaction's responses go."""
        peer = self.peer
        if peer is None and not self.reliable:
            # Over UDP.  Kept only when found from a Via: a response with
            # none usable goes back to the source, and the next one is
            # looked at again.  (Over a connection the responses take it,
            # and the Via is read only when it has closed.)
            peer = self.peer = self.transport.response_peer(response)
        self.transport.send_response_now(response, self.source, False, peer)

    def terminate(self):
        Transaction.terminate(self)
        if self.on_terminated is not None:
            callback, self.on_terminated = self.on_terminated, None
            callback(self)


class ServerInviteTransaction(ServerTransaction):
    """States: proceeding, accepted, completed, confirmed, terminated."""

    __slots__ = ()

    def __init__(self, layer, key, request, source):
        ServerTransaction.__init__(self, layer, key, request, source)
        self.state = "proceeding"

    def respond(self, response):
        """Send a response the transaction user chose."""
        status = response.status
        if self.state == "proceeding":
            self._send(response)
            if 200 <= status < 300:
                # RFC 6026 7.1: wait in Accepted for 2xx retransmissions of
                # other forks and stray ACKs instead of terminating.  It
                # re-sends nothing of its own (the TU's 2xx are passed on
                # as they come): the response is not kept.
                self.state = "accepted"
                self.last_response = None
                self.start_timer("L", self.timers.timeout)
            elif status >= 300:
                self.state = "completed"
                if not self.reliable:
                    self._interval = self.timers.t1
                    self.start_timer("G", self._interval)
                self.start_timer("H", self.timers.timeout)
        elif self.state == "accepted" and 200 <= status < 300:
            # RFC 6026 7.1: 2xx from the TU in Accepted are passed on.
            self._deliver(response)

    def receive_request(self, request):
        """A retransmission of the INVITE."""
        if self.state in ("proceeding", "completed") and self.last_response is not None:
            self._deliver(self.last_response)

    def receive_ack(self, ack):
        """An ACK matching this transaction; True when it was absorbed."""
        if self.state == "completed":
            self.state = "confirmed"
            self.cancel_timer("G")
            self.cancel_timer("H")
            self.start_timer("I", 0 if self.reliable else self.timers.t4)
            return True
        return self.state == "confirmed"

    def timer_fired(self, name):
        if name == "G":
            self._timer_g()
        elif name == "H":
            self._timer_h()
        elif name == "I" or name == "L":
            self.terminate()
        else:
            ServerTransaction.timer_fired(self, name)

    def _timer_g(self):
        if self.state != "completed":
            return
        self._deliver(self.last_response)
        self._interval = min(2 * self._interval, self.timers.t2)
        self.start_timer("G", self._interval)

    def _timer_h(self):
        # No ACK ever came (RFC 3261 17.2.1): give up.
        self.layer.stats["ack_timeouts"] += 1
        self.terminate()


class ServerNonInviteTransaction(ServerTransaction):
    """States: trying, proceeding, completed, terminated."""

    __slots__ = ()

    def __init__(self, layer, key, request, source):
        ServerTransaction.__init__(self, layer, key, request, source)
        self.state = "trying"

    def respond(self, response):
        if self.state not in ("trying", "proceeding"):
            return
        self._send(response)
        if response.status < 200:
            self.state = "proceeding"
        else:
            self.state = "completed"
            self.start_timer("J", 0 if self.reliable else self.timers.timeout)

    def timer_fired(self, name):
        if name == "J":
            self.terminate()
        else:
            ServerTransaction.timer_fired(self, name)

    def receive_request(self, request):
        if self.state in ("proceeding", "completed"):
            self._deliver(self.last_response)
