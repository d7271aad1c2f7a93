# -*- test-case-name: tests.test_reactor -*-
"""
The reactor a node runs on (C{twistd --reactor=sipepoll}, as ops/run and
the systemd unit start it): Twisted's epoll reactor, except that the events
of the SIP UDP listeners (L{SIPPort}) are dispatched without a log context
of their own.

Twisted wraps every event in C{log.callWithLogger}, which asks the
selectable for its log prefix and runs the event inside a new context (a
dictionary copied and pushed on the thread's context stack) so that
legacy C{log.msg} calls made meanwhile carry it.  For a UDP listener that
costs about 17,800 instructions per wake-up, more than reading and writing
the datagram, and nothing in a node logs through that context (its events
carry their own namespace).  A listener's events get the same protection
the wrapper gives: an exception escaping the dispatch is logged, and the
loop goes on.  Every other selectable (TCP, the etcd client's waker, the
HTTP API) is dispatched as Twisted dispatches it.

A listener's read event alone (its usual one) is also handled without
C{_doReadOrWrite}, whose tests for the other events are Python run at
every wake-up; what it does for a read (the descriptor checked, C{doRead},
an exception logged and the port disconnected) is done the same way.

The loop around the poll is Twisted's, compiled: C{mainLoop} enters its
failure handler once for a run of iterations rather than at each, and
C{runUntilCurrent} and C{timeout} answer in C when no timed call is due
and none is new, the usual case at a wake-up for a datagram; whenever
anything is to be done they are Twisted's own.

Any reactor works for a node; this one is cheaper.  Linux only, like epoll.
"""

import errno
import sys

from twisted.internet import epollreactor, posixbase
from twisted.logger import Logger, LogLevel
from twisted.python import log

from sipcluster.transport.udp import SIPPort

# The event a listener gets when a datagram waits, and nothing else.
_READ_ONLY = epollreactor.EPOLLIN
_Base = epollreactor.EPollReactor
# Where ReactorBase.mainLoop logs an exception escaping an iteration.
_log = Logger(namespace="twisted.internet.base")
# The longest timeout ReactorBase.timeout gives (epoll_wait's int of ms).
_LONGEST = 2147483


class SIPReactor(epollreactor.EPollReactor):
    """L{epollreactor.EPollReactor}, the SIP listeners' events without a log context."""

    def doPoll(self, timeout):
        if timeout is None:
            timeout = -1  # wait until an event
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        dispatch = self._doReadOrWrite
        selectables = self._selectables
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue  # removed by an earlier event of this poll
            if selectable.__class__ is SIPPort:
                try:
                    if event == _READ_ONLY:
                        self._read_sip(selectable)
                    else:
                        dispatch(selectable, fd, event)
                except KeyboardInterrupt:
                    raise
                except BaseException:
                    log.err(None, "dispatching an event of %r" % (selectable,))
            else:
                log.callWithLogger(selectable, dispatch, selectable, fd, event)

    doIteration = doPoll

    def mainLoop(self):
        """
        ReactorBase.mainLoop, its failure handler entered once for a run of
        iterations (a try around an inner loop, as Twisted's loop was
        written before 24.7): an exception escaping one, whatever it is, is
        logged as Twisted 24.7 and later log it (critical, "Unexpected
        error in main loop"), and the loop goes on with the next.
        """
        while self._started:
            try:
                while self._started:
                    self.runUntilCurrent()
                    t2 = self.timeout()
                    t = self.running and t2
                    self.doIteration(t)
            except BaseException:
                _log.failure("Unexpected error in main loop", level=LogLevel.critical)
        _log.info("Main loop terminated.")

    def runUntilCurrent(self):
        """
        ReactorBase.runUntilCurrent, returning at once when it would do
        nothing: no call from a thread queued, no timed call new or due, no
        shutdown to fire, not enough cancelled calls to clean up (more than
        50 and more than half the heap).
        """
        pending = self._pendingTimedCalls
        cancellations = self._cancellations
        if (not self.threadCallQueue and not self._newTimedCalls and not self._justStopped
                and (cancellations <= 50 or cancellations <= len(pending) >> 1)
                and (not pending or pending[0].time > self.seconds())):
            return None
        return _Base.runUntilCurrent(self)

    def timeout(self):
        """ReactorBase.timeout, answered here when no timed call is new."""
        if self._newTimedCalls:
            return _Base.timeout(self)
        pending = self._pendingTimedCalls
        if not pending:
            return None
        return max(0, min(_LONGEST, pending[0].time - self.seconds()))

    def _read_sip(self, port):
        """
        What C{_doReadOrWrite} does for a read event alone (the usual
        event of a UDP listener), without its tests for the others: the
        descriptor checked, C{doRead}, an exception logged and, as for
        any selectable, the port disconnected by it.  Twisted's is Python
        run at every wake-up: a tenth of an idle loop's iteration.
        """
        in_read = False
        try:
            if port.fileno() == -1:
                why = posixbase._NO_FILEDESC
            else:
                why = port.doRead()
                in_read = True
        except BaseException:
            why = sys.exc_info()[1]
            log.err()
        if why:
            self._disconnectSelectable(port, why, in_read)


def install():
    """Install a L{SIPReactor} as the global reactor (an IReactorInstaller)."""
    from twisted.internet.main import installReactor
    reactor = SIPReactor()
    installReactor(reactor)
    return reactor
