# -*- test-case-name: tests.test_routing_reload -*-
"""
Reloading the routing configuration (rules, destination sets, the hook)
of a running node on SIGHUP, like Kamailio's dispatcher.reload: the whole
file is validated again; a faulty one keeps the old configuration and logs
one line naming file and key.  Transactions and calls in progress are not
touched: a request already on its way through a set finishes with the set
it started with, and a destination still in the new set keeps its health,
its calls and its turn.  Other sections need a restart.
"""

import signal

from twisted.application import service
from twisted.logger import Logger

from sipcluster.routing.hook import RoutingHook, load_hook


def merge_sets(old_sets, new_sets):
    """
    C{new_sets} with the L{Destination} objects of C{old_sets} reused for
    the destinations (same URI) a set keeps: their state (up, counters,
    active calls, last probe) survives, and the call counter, which holds
    them, stays right.
    """
    for name, dset in new_sets.items():
        old = old_sets.get(name)
        if old is None:
            continue
        by_uri = {str(d.uri): d for d in old.destinations}
        kept = []
        for fresh in dset.destinations:
            previous = by_uri.get(str(fresh.uri))
            if previous is None:
                kept.append(fresh)
                continue
            previous.weight = fresh.weight
            previous.priority = fresh.priority
            previous.max_load = fresh.max_load
            previous.set = dset
            kept.append(previous)
        dset.destinations = kept
        dset._next = old._next % len(kept) if kept else 0
    return new_sets


class RoutingReload(service.Service):
    """
    Reloads the routing section of the node's file: on SIGHUP (when the
    reactor can take a call from a signal handler, IReactorThreads) or
    when C{reload()} is called.

    @ivar node: the L{SIPNode} whose routing is replaced.
    @ivar path: its configuration file.
    """

    log = Logger()
    name = "routing-reload"

    def __init__(self, node, path, reactor):
        self.node = node
        self.path = path
        self.reactor = reactor
        self.reloads = 0
        self.failures = 0
        self._previous = None
        # A WorkerPool (node.workers > 1) whose processes get the signal too.
        self.workers = None

    def startService(self):
        service.Service.startService(self)
        if hasattr(self.reactor, "callFromThread"):
            self._previous = signal.signal(signal.SIGHUP, self._signalled)

    def stopService(self):
        service.Service.stopService(self)
        if self._previous is not None:
            signal.signal(signal.SIGHUP, self._previous)
            self._previous = None

    def _signalled(self, signum, frame):
        # Out of the signal handler, into the reactor.
        self.reactor.callFromThread(self.reload)
        if self.workers is not None:
            self.reactor.callFromThread(self._signal_workers)

    def _signal_workers(self):
        for process in list(self.workers.processes.values()):
            try:
                process.signalProcess("HUP")
            except Exception:
                pass  # (one that just ended is being restarted with the file as it is)

    def reload(self):
        """Read the file again and apply its routing; True when applied."""
        # (Imported here: sipcluster.config composes the node's sections.)
        from sipcluster import config as configuration
        node = self.node
        try:
            # The running mode, so that the checks are those it started with.
            fresh = configuration.load(self.path, {"node.mode": node.config.node.mode})
            hook = load_hook(fresh.routing.hook) if fresh.routing.hook else None
        except (configuration.ConfigError, ValueError) as e:
            self.failures += 1
            self.log.error("routing reload failed, the old configuration stays: {error}",
                           error=str(e))
            return False
        routing = fresh.routing
        stage = node.routing
        old_sets = node.destinations or {}
        sets = merge_sets(old_sets, routing.sets)
        calls = next((d.calls for d in old_sets.values()), None)
        for dset in sets.values():
            dset.calls = calls
            dset.loads = node.destination_loads
        stage.rules = routing.rules
        stage.sets = sets
        stage.hook = (RoutingHook(hook, self.reactor, routing.hook_timeout_s, sets, routing.hook)
                      if hook is not None else None)
        emergency = node.pipeline.named("emergency-routing")
        if emergency is not None and routing.emergency_set in sets:
            emergency.set = sets[routing.emergency_set]
        node.destinations = sets
        node.config.routing = routing
        if node.destination_view is not None:
            node.destination_view.sets = sets
        if node.probes is not None:
            node.probes.replace([dset for dset in sets.values() if dset.probe_interval])
        self.reloads += 1
        self.log.info("routing reloaded from {path}: {rules} rules, {sets} sets",
                      path=self.path, rules=len(routing.rules), sets=len(sets))
        return True
