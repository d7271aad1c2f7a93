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

Any reactor works for a node; this one is cheaper.  Linux only, like epoll.
"""

import errno

from twisted.internet import epollreactor
from twisted.python import log

from sipcluster.transport.udp import SIPPort


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
                    dispatch(selectable, fd, event)
                except KeyboardInterrupt:
                    raise
                except BaseException:
                    log.err(None, "dispatching an event of %r" % (selectable,))
            else:
                log.callWithLogger(selectable, dispatch, selectable, fd, event)

    doIteration = doPoll


def install():
    """Install a L{SIPReactor} as the global reactor (an IReactorInstaller)."""
    from twisted.internet.main import installReactor
    reactor = SIPReactor()
    installReactor(reactor)
    return reactor
