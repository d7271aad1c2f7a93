# -*- test-case-name: tests.test_transaction -*-
"""What client and server transactions share: state, timers, termination."""

from twisted.logger import Logger


def _fire(tx, name):
    """
    Timer C{name} of C{tx} came up.  (A module function, so that the heap
    holds a tuple per timer, not a bound method and its callback's.)
    """
    tx._timers.pop(name, None)
    tx.timer_fired(name)


class Transaction:
    """
    A transaction with named states and named timers, on its layer's
    L{TimerHeap} (and so on the layer's clock).

    @ivar layer: the L{TransactionLayer}, which owns the matching tables
        and the transport.
    @ivar key: the key this transaction is matched by.
    @ivar transport: the layer's L{TransportLayer}, which sends for it.
    @ivar timers: the layer's L{TimerValues}.
    """

    # (An extension type in the compiled build: see base.pxd.)
    __slots__ = ("layer", "transport", "key", "request", "reliable", "state", "timers", "_timers",
                 "_heap")

    log = Logger()

    def __init__(self, layer, key, request, reliable):
        self.layer = layer
        self.key = key
        self.request = request
        self.reliable = reliable
        self.state = None
        # The layer's transport, timer durations and heap, every timer of
        # this transaction runs on (C fields compiled: a send, or a timer
        # armed, calls the transport layer or reads a duration in C).
        self.transport = layer.transport
        self.timers = layer.timers
        self._timers = {}
        self._heap = layer.timer_heap

    def start_timer(self, name, delay):
        """
        Arm timer C{name} (RFC 3261's letter for it) to come up in C{delay}
        seconds, replacing it if it runs: then L{timer_fired} is called
        with the name.
        """
        if self.state == "terminated":
            # A send that failed at once ends the transaction (RFC 3261
            # 17.1.4) before the caller arms Timer A, B, E or F: they would
            # stay scheduled for 64*T1 on a transaction nobody holds.
            return
        self.cancel_timer(name)
        self._timers[name] = self._heap.schedule(delay, _fire, (self, name))

    def timer_fired(self, name):
        """Timer C{name} came up: each kind of transaction says what that does."""
        raise NotImplementedError("timer %r of %s" % (name, type(self).__name__))

    def cancel_timer(self, name):
        handle = self._timers.pop(name, None)
        if handle is not None:
            self._heap.cancel(handle)

    def timer_running(self, name):
        return name in self._timers

    def terminate(self):
        if self.state == "terminated":
            return
        self.state = "terminated"
        for name in list(self._timers):
            self.cancel_timer(name)
        self.layer.remove(self)
