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
    real = reactor._doReadOrWrite

    def dispatch(selectable, fd, event):
        if selectable is first:
            raise RuntimeError("broken")
        return real(selectable, fd, event)
    monkeypatch.setattr(reactor, "_doReadOrWrite", dispatch)
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

    def dispatch(selectable, fd, event):
        raise KeyboardInterrupt()
    monkeypatch.setattr(reactor, "_doReadOrWrite", dispatch)
    _send(port, b"x")
    with pytest.raises(KeyboardInterrupt):
        for _ in range(5):
            reactor.doPoll(0.2)


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
