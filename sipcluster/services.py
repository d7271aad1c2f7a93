# -*- test-case-name: tests.test_node,tests.test_tap -*-
"""
Small services a node is composed of (twisted.application.service): the
start and stop of a component that is not a service itself, a follower of
the cluster store that keeps trying while the store is away, a repeating
duty on the reactor's clock, and a MultiService that stops its children
one at a time, last started first.
"""

from twisted.application import service
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger


class Lifecycle(service.Service):
    """Runs C{start()} when started and C{stop()} (which may return a Deferred) when stopped."""

    def __init__(self, name, start=None, stop=None):
        self.name = name
        self._start = start
        self._stop = stop

    def startService(self):
        service.Service.startService(self)
        if self._start is not None:
            self._start()

    def stopService(self):
        service.Service.stopService(self)
        if self._stop is not None:
            return self._stop()


class Following(service.Service):
    """
    Follows part of the cluster store: C{start()} returns a Deferred that
    fails while the store cannot be reached, and is tried again every
    C{retry} seconds until it succeeds, so a node comes up without etcd
    and catches up when it returns.  C{stop()} ends the following.
    """

    log = Logger()

    def __init__(self, name, start, stop, clock, retry=2.0, ready=None):
        self.name = name
        self._start = start
        self._stop = stop
        self.clock = clock
        self.retry = retry
        # Optional callable: True when nothing is left to start.
        self._ready = ready
        self._later = None

    def startService(self):
        service.Service.startService(self)
        self._try()

    def _try(self):
        self._later = None
        if not self.running or (self._ready is not None and self._ready()):
            return
        self._start().addErrback(self._failed)

    def _failed(self, failure):
        self.log.warn("{name}: cannot follow the store yet: {why}", name=self.name,
                      why=failure.getErrorMessage())
        if self.running:
            self._later = self.clock.callLater(self.retry, self._try)

    def stopService(self):
        service.Service.stopService(self)
        if self._later is not None and self._later.active():
            self._later.cancel()
        self._later = None
        self._stop()


class Repeating(service.Service):
    """Calls C{duty()} every C{interval} seconds on C{clock}, first after one interval."""

    def __init__(self, name, interval, duty, clock):
        self.name = name
        self.interval = interval
        self._loop = LoopingCall(duty)
        self._loop.clock = clock

    def startService(self):
        service.Service.startService(self)
        self._loop.start(self.interval, now=False).addErrback(
            lambda f: Logger().failure("{name} failed", f, name=self.name))

    def stopService(self):
        service.Service.stopService(self)
        if self._loop.running:
            self._loop.stop()


class OrderedServices(service.MultiService):
    """
    A MultiService whose children stop one after the other, in the reverse
    of the order they started, each once the one started after it has
    stopped: the SIP listeners close before the store they write to.
    """

    @defer.inlineCallbacks
    def stopService(self):
        service.Service.stopService(self)
        for child in reversed(list(self)):
            try:
                yield defer.maybeDeferred(child.stopService)
            except Exception:
                Logger().failure("stopping {name} failed", name=child.name)
