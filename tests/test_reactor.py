"""
The node's reactor (sipcluster.reactor, twistd --reactor=sipepoll): the SIP
UDP listeners' events dispatched without log.callWithLogger, everything
else as Twisted dispatches it; what the wrapper guards is still guarded.
"""

import errno
import socket

import pytest
from twisted.internet import udp
from twisted.internet.protocol import DatagramProtocol
from twisted.python import log

from sipcluster import reactor as module
from sipcluster.reactor import SIPReactor
from sipcluster.transport.udp import SIPPort
from sipcluster.workers import reactor_option

HOST = "127.0.5.9"


class Collector(DatagramProtocol):
    def __init__(self):
        self.got = []

    def datagramReceived(self, data, addr):
        self.got.append(data)


@pytest.fixture
def reactor():
    r = SIPReactor()
    yield r
    for selectable in list(r._selectables.values()):
        if selectable is not r.waker:
            selectable.connectionLost(None)
    r.removeAll()
    r._poller.close()


def _port(reactor, cls):
    proto = Collector()
    port = cls(0, proto, HOST, reactor=reactor)
    port.startListening()
    return port, proto


def _send(port, data):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, (HOST, port.getHost().port))


@pytest.fixture
def wrapped(monkeypatch):
    """The selectables log.callWithLogger was asked to dispatch."""
    seen = []
    real = module.log.callWithLogger

    def record(selectable, func, *args):
        seen.append(selectable)
        return real(selectable, func, *args)
    monkeypatch.setattr(module.log, "callWithLogger", record)
    return seen


def test_a_sip_listener_is_dispatched_plainly_any_other_port_wrapped(reactor, wrapped):
    sip, sip_proto = _port(reactor, SIPPort)
    other, other_proto = _port(reactor, udp.Port)
    _send(sip, b"OPTIONS")
    _send(other, b"other")
    for _ in range(5):
        reactor.doPoll(0.2)
        if sip_proto.got and other_proto.got:
            break
    assert (sip_proto.got, other_proto.got) == ([b"OPTIONS"], [b"other"])
    assert wrapped == [other]


def test_an_error_dispatching_a_listener_is_logged_and_the_others_still_run(reactor, monkeypatch):
    first, first_proto = _port(reactor, SIPPort)
    second, second_proto = _port(reactor, SIPPort)
    real = reactor._read_sip

    def read(selectable):
        if selectable is first:
            raise RuntimeError("broken")
        return real(selectable)
    monkeypatch.setattr(reactor, "_read_sip", read)
    _send(first, b"one")
    _send(second, b"two")
    events = []
    log.addObserver(events.append)
    try:
        for _ in range(5):
            reactor.doPoll(0.2)
            if second_proto.got:
                break
    finally:
        log.removeObserver(events.append)
    assert second_proto.got == [b"two"]
    failures = [e for e in events if e.get("isError")]
    assert len(failures) == 1 and failures[0]["failure"].check(RuntimeError)
    assert failures[0]["why"].startswith("dispatching an event of")


def test_a_keyboard_interrupt_is_not_swallowed(reactor, monkeypatch):
    port, _ = _port(reactor, SIPPort)

    def read(selectable):
        raise KeyboardInterrupt()
    monkeypatch.setattr(reactor, "_read_sip", read)
    _send(port, b"x")
    with pytest.raises(KeyboardInterrupt):
        for _ in range(5):
            reactor.doPoll(0.2)


class _Events:
    """The reactor's poller, its next poll answering the given (fd, event) pairs."""

    def __init__(self, poller, events):
        self.poller = poller
        self.events = events

    def poll(self, timeout, most):
        events, self.events = self.events, []
        return events

    def __getattr__(self, name):
        return getattr(self.poller, name)


@pytest.mark.parametrize("fault", ["raises", "no descriptor"])
def test_a_listener_whose_read_fails_is_disconnected_as_twisted_does(reactor, monkeypatch, fault):
    """A read event alone is handled without _doReadOrWrite, the same way:
    an exception from doRead (or a descriptor gone) logged and the port
    disconnected, on the SIP listener as on Twisted's own port."""
    from twisted.internet import epollreactor, posixbase
    outcomes = []
    for cls in (SIPPort, udp.Port):
        port, _ = _port(reactor, cls)
        fd = port.fileno()
        lost = []
        monkeypatch.setattr(port, "connectionLost", lambda reason, lost=lost: lost.append(reason))
        if fault == "raises":
            def broken():
                raise RuntimeError("broken")
            monkeypatch.setattr(port, "doRead", broken)
        else:
            monkeypatch.setattr(port, "fileno", lambda: -1)
        real = reactor._poller
        events = []
        log.addObserver(events.append)
        try:
            reactor._poller = _Events(real, [(fd, epollreactor.EPOLLIN)])
            reactor.doPoll(0)
        finally:
            reactor._poller = real
            log.removeObserver(events.append)
        (reason,) = lost
        errors = [e["failure"].value for e in events if e.get("isError")]
        outcomes.append((type(reason.value), [type(e) for e in errors]))
        if fault != "raises":
            assert reason.value is posixbase._NO_FILEDESC
        monkeypatch.undo()
        port.socket.close()
    assert outcomes[0] == outcomes[1]
    assert outcomes[0] == ((RuntimeError, [RuntimeError]) if fault == "raises" else
                           (type(posixbase._NO_FILEDESC), []))


def test_only_a_read_event_alone_takes_the_short_way(reactor, monkeypatch):
    from twisted.internet import epollreactor
    port, proto = _port(reactor, SIPPort)
    seen = []
    real = reactor._doReadOrWrite
    monkeypatch.setattr(reactor, "_doReadOrWrite",
                        lambda s, fd, event: seen.append(event) or real(s, fd, event))
    _send(port, b"one")
    for _ in range(5):
        reactor.doPoll(0.2)
        if proto.got:
            break
    assert proto.got == [b"one"] and seen == []
    both = epollreactor.EPOLLIN | epollreactor.EPOLLERR
    _send(port, b"two")
    real_poller = reactor._poller
    try:
        reactor._poller = _Events(real_poller, [(port.fileno(), both)])
        reactor.doPoll(0)
    finally:
        reactor._poller = real_poller
    assert seen == [both] and proto.got == [b"one", b"two"]


def test_an_interrupted_poll_returns_and_any_other_error_is_raised(reactor):
    class Poller:
        def __init__(self, error):
            self.error = error

        def poll(self, timeout, most):
            self.asked = (timeout, most)
            raise OSError(self.error, "poll")
    interrupted = Poller(errno.EINTR)
    real = reactor._poller
    try:
        reactor._poller = interrupted
        assert reactor.doPoll(None) is None
        assert interrupted.asked[0] == -1
        reactor._poller = Poller(errno.EBADF)
        with pytest.raises(OSError):
            reactor.doPoll(0)
    finally:
        reactor._poller = real


def test_workers_are_given_the_reactor_of_their_parent(reactor):
    assert reactor_option(reactor) == ["--reactor=sipepoll"]
    from twisted.internet.testing import MemoryReactorClock
    assert reactor_option(MemoryReactorClock()) == []


# -- the loop around the poll: Twisted's, answering in C when nothing is due --

class _Now:
    """A reactor's clock, set by the test."""

    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clocked(reactor, monkeypatch):
    now = _Now()
    monkeypatch.setattr(reactor, "seconds", now)
    return reactor, now


def test_run_until_current_runs_what_is_due_and_nothing_else(clocked):
    reactor, now = clocked
    ran = []
    reactor.callLater(5, ran.append, "later")
    reactor.callLater(1, ran.append, "soon")
    reactor.runUntilCurrent()          # both new: inserted, neither due
    assert ran == [] and not reactor._newTimedCalls and len(reactor._pendingTimedCalls) == 2
    reactor.runUntilCurrent()          # the fast path: nothing new, nothing due
    assert ran == []
    now.now += 1
    reactor.runUntilCurrent()
    assert ran == ["soon"]
    now.now += 4
    reactor.runUntilCurrent()
    assert ran == ["soon", "later"] and reactor._pendingTimedCalls == []


def test_run_until_current_runs_calls_from_threads_and_fires_shutdown(clocked):
    reactor, now = clocked
    ran = []
    reactor.callLater(60, ran.append, "timer")
    reactor.runUntilCurrent()
    reactor.threadCallQueue.append((ran.append, ("thread",), {}))
    reactor.runUntilCurrent()
    assert ran == ["thread"] and reactor.threadCallQueue == []
    reactor.addSystemEventTrigger("during", "shutdown", ran.append, "shutdown")
    reactor._justStopped = True
    reactor.runUntilCurrent()
    assert ran == ["thread", "shutdown"] and not reactor._justStopped


def test_run_until_current_still_clears_out_cancelled_calls(clocked):
    """Twisted rebuilds the heap once more than 50 calls (and half of it)
    are cancelled: not skipped by the fast path."""
    reactor, now = clocked
    calls = [reactor.callLater(10 + i, lambda: None) for i in range(60)]
    reactor.runUntilCurrent()
    for call in calls:
        call.cancel()
    assert reactor._cancellations == 60
    reactor.runUntilCurrent()
    assert reactor._cancellations == 0 and reactor._pendingTimedCalls == []


@pytest.mark.parametrize("delays, advance, new", [
    ((), 0, False), ((3,), 0, False), ((3, 1), 0.5, False), ((3,), 10, False),
    ((3,), 0, True), ((3e7,), 0, False), ((1, 3), 0, "cancel the first")])
def test_timeout_is_twisted_s(clocked, delays, advance, new):
    from twisted.internet.base import ReactorBase
    reactor, now = clocked
    calls = [reactor.callLater(delay, lambda: None) for delay in delays]
    if new is not True:
        reactor.runUntilCurrent() if new is False else reactor._insertNewDelayedCalls()
    if new == "cancel the first":
        calls[0].cancel()   # a cancelled call on top of the heap
    now.now += advance
    assert reactor.timeout() == ReactorBase.timeout(reactor)


def _state(reactor):
    return ([(c.time, c.cancelled, c.called) for c in reactor._pendingTimedCalls],
            reactor._cancellations, list(reactor._newTimedCalls))


def _twins(monkeypatch, build):
    """Two SIP reactors in the same state: one runs SIPReactor's, one Twisted's."""
    twins = []
    for _ in range(2):
        r = SIPReactor()
        now = _Now()
        monkeypatch.setattr(r, "seconds", now)
        ran = []
        build(r, now, ran)
        twins.append((r, now, ran))
    return twins


@pytest.mark.parametrize("case", ["delayed past its time", "reset later", "due and cancelled on top",
                                  "60 of 200 cancelled", "nothing due"])
def test_run_until_current_leaves_the_state_twisted_s_leaves(monkeypatch, case):
    from twisted.internet.base import ReactorBase

    def build(r, now, ran):
        calls = [r.callLater(1 + i, ran.append, i) for i in range(200 if "200" in case else 3)]
        r.runUntilCurrent()
        if case == "delayed past its time":
            calls[0].delay(5)
        elif case == "reset later":
            calls[0].reset(10)
        elif case == "due and cancelled on top":
            calls[0].cancel()
        elif case == "60 of 200 cancelled":
            for call in calls[100:160]:
                call.cancel()
        r._insertNewDelayedCalls()
        now.now += 0.5 if case in ("nothing due", "60 of 200 cancelled") else 1.5

    (ours, _, ours_ran), (theirs, _, theirs_ran) = _twins(monkeypatch, build)
    saved = module._Base
    try:
        if case in ("nothing due", "60 of 200 cancelled"):
            # The fast path's cases: Twisted's own is not even called.
            class NotCalled:
                def runUntilCurrent(self):
                    raise AssertionError("the slow way taken")
            module._Base = NotCalled
        try:
            ours.runUntilCurrent()
        finally:
            module._Base = saved
        ReactorBase.runUntilCurrent(theirs)
        assert _state(ours) == _state(theirs) and ours_ran == theirs_ran
        if case == "60 of 200 cancelled":
            assert ours._cancellations == 60 and len(ours._pendingTimedCalls) == 200
    finally:
        for r in (ours, theirs):
            r.removeAll()
            r._poller.close()


def test_main_loop_logs_what_an_iteration_raises_and_goes_on(reactor, monkeypatch):
    from twisted.logger import LogLevel, globalLogPublisher
    events = []
    globalLogPublisher.addObserver(events.append)
    iterations = []

    def iteration(timeout):
        iterations.append(timeout)
        if len(iterations) == 1:
            raise ValueError("one bad iteration")
        if len(iterations) == 2:
            raise KeyboardInterrupt()   # logged and swallowed, as Twisted's handler does
        if len(iterations) == 4:
            reactor._started = False

    monkeypatch.setattr(reactor, "doIteration", iteration)
    reactor._started = True
    try:
        reactor.mainLoop()
    finally:
        globalLogPublisher.removeObserver(events.append)
    # Not running (stopping, or never started): no timeout, as Twisted's
    # "self.running and t2" gives.
    assert iterations == [False] * 4
    failures = [e for e in events if e.get("log_failure") is not None]
    assert [(e["log_format"], e["log_level"], e["log_namespace"], type(e["log_failure"].value))
            for e in failures] == [
        ("Unexpected error in main loop", LogLevel.critical, "twisted.internet.base", ValueError),
        ("Unexpected error in main loop", LogLevel.critical, "twisted.internet.base", KeyboardInterrupt)]
    assert any(e.get("log_format") == "Main loop terminated." for e in events)


def test_main_loop_waits_for_the_next_timer_while_running(clocked, monkeypatch):
    reactor, now = clocked
    reactor.callLater(2.5, lambda: None)
    waited = []

    def iteration(timeout):
        waited.append(timeout)
        reactor._started = False
    monkeypatch.setattr(reactor, "doIteration", iteration)
    reactor._started = reactor.running = True
    try:
        reactor.mainLoop()
    finally:
        reactor.running = False
    assert waited == [2.5]
