# -*- test-case-name: tests.test_tap -*-
"""
Extra worker processes of one node.  Each is a copy of the node started with
C{--worker N}; they share the UDP listen port through SO_REUSEPORT, and each
stateful worker writes a private port of its own into the Via it adds so
that responses return to the worker holding the transaction.
"""

import os
import signal
import sys

from twisted.application import service
from twisted.internet import protocol
from twisted.logger import Logger


def without_options(argv, names):
    """C{argv} without the options C{names}, in "--x v" or "--x=v" form."""
    out = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in names:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


class _WorkerProtocol(protocol.ProcessProtocol):
    log = Logger()

    def __init__(self, pool, index):
        self.pool = pool
        self.index = index

    def outReceived(self, data):
        # The worker logs to its standard output; its lines join ours.
        for line in data.decode("utf-8", "replace").splitlines():
            if line.strip():
                self.log.info("worker {index}: {line}", index=self.index, line=line)

    errReceived = outReceived

    def processEnded(self, reason):
        self.pool.ended(self)


def reactor_option(reactor):
    """
    The twistd option that gives a worker the reactor its parent runs on,
    when that is the node's own (L{sipcluster.reactor}); else none (twistd's
    default, as the parent had).
    """
    try:
        from sipcluster.reactor import SIPReactor
    except ImportError:  # no epoll here: the parent runs on another
        return []
    return ["--reactor=sipepoll"] if isinstance(reactor, SIPReactor) else []


class WorkerPool(service.Service):
    """Starts C{count} workers and restarts any that dies while running."""

    log = Logger()

    def __init__(self, reactor, count, argv):
        self.reactor = reactor
        self.count = count
        self.argv = without_options(argv, ("--worker", "--workers"))
        self.processes = {}

    def _spawn(self, index):
        # The twistd installed beside this interpreter (python -m twisted
        # would be "twist", another runner).
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        args = [twistd, "-n", "--pidfile="] + reactor_option(self.reactor) + \
            ["sipcluster"] + self.argv + ["--worker", str(index)]
        proto = _WorkerProtocol(self, index)
        self.processes[index] = self.reactor.spawnProcess(proto, twistd, args, env=os.environ)

    def startService(self):
        service.Service.startService(self)
        for index in range(1, self.count + 1):
            self._spawn(index)

    def ended(self, proto):
        self.processes.pop(proto.index, None)
        if self.running:
            self.log.warn("worker {index} ended; restarting", index=proto.index)
            self.reactor.callLater(1, self._spawn, proto.index)

    def stopService(self):
        service.Service.stopService(self)
        for transport in list(self.processes.values()):
            try:
                transport.signalProcess(signal.SIGTERM)
            except Exception:
                pass
