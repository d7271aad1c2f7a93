# -*- test-case-name: tests.test_node -*-
"""
A sipcluster node: the transport, transaction and proxy layers wired
together from a L{sipcluster.config.Config}, as an L{IService}.
"""

import gc
import os

from twisted.application import service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from sipcluster.accounting import CDRFile
from sipcluster.cluster.dialogs import DialogLimit, DialogRegistry
from sipcluster.cluster.drain import DrainGate
from sipcluster.cluster.etcd import EtcdStore
from sipcluster.cluster.membership import ClusterMembership
from sipcluster.cluster.store import MemoryStore
from sipcluster.location.etcd import EtcdLocationService
from sipcluster.location.memory import MemoryLocationService
from sipcluster.nat.keepalive import KeepaliveService
from sipcluster.nat.stun import StunServer
from sipcluster.proxy.forwarding import Forwarder
from sipcluster.proxy.stateful import StatefulProxy
from sipcluster.proxy.stateless import StatelessProxy
from sipcluster.registrar.registrar import Registrar
from sipcluster.transaction.layer import TransactionLayer
from sipcluster.transaction.timers import TimerValues
from sipcluster.transport.layer import TransportLayer


def tune_gc():
    """
    Make CPython's cyclic collector cheap for a server holding thousands of
    live transactions: move what exists at start-up out of its reach
    (gc.freeze) and collect the young generation less often.  With the
    default thresholds a full collection walks every live transaction every
    few hundred messages, which costs more than handling them.  Plain
    reference counting still frees each message the moment it is done.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50000, 20, 100)


class SIPNodeService(service.MultiService):
    """
    Owns the layers of one node.  Built in L{__init__}, listening from
    L{startService}; L{stopService} closes every socket.
    """

    log = Logger()
    name = "sip"

    def __init__(self, config, reactor, resolver=None, location=None, worker=None):
        self.config = config
        self.reactor = reactor
        self.worker = worker
        workers = config.node.workers
        self.transport = TransportLayer(
            reactor, config.sip.listen, config.sip.advertise,
            max_message_size=config.sip.max_message_size,
            idle_timeout=config.tcp.idle_timeout_s,
            max_connections=config.tcp.max_connections,
            server_header=config.sip.server_header,
            reuse_port=workers > 1 or worker is not None,
            private_port=(workers > 1 or worker is not None) and config.node.mode == "stateful",
            # TCP stays with the first process; workers share the UDP port.
            listen_tcp=worker is None)
        service.MultiService.__init__(self)
        if config.nat.stun:
            self.transport.stun = StunServer(self.transport.stats)
        self.etcd = None
        self.membership = None
        if location is None and config.store.backend == "etcd":
            self.etcd = EtcdStore(reactor, config.store.etcd_endpoints, config.store.timeout_s)
            location = EtcdLocationService(self.etcd, reactor, config.store.prefix)
            self.membership = ClusterMembership(
                self.etcd, reactor, config.store.prefix, config.node.id, {
                    "addresses": [str(a) for a in config.sip.listen],
                    "region": config.cluster.region, "state": "active",
                    "mode": config.node.mode}, ttl=config.cluster.node_ttl_s)
        self.location = location or MemoryLocationService(reactor)
        self.forwarder = Forwarder(
            self.transport, self.location, config.sip.domains,
            record_route=config.sip.record_route, resolver=resolver,
            server_header=config.sip.server_header)
        self.timers = TimerValues.from_config(config.timers)
        if config.node.mode == "stateless":
            self.transactions = None
            self.proxy = StatelessProxy(self.transport, self.forwarder)
        else:
            self.transactions = TransactionLayer(self.transport, reactor, self.timers)
            self.proxy = StatefulProxy(self.transactions, self.forwarder, reactor, self.timers)
        if self.membership is not None:
            self.forwarder.rank_binding = self.membership.region_rank
            self.forwarder.flow_route = self.membership.flow_route
        if config.cluster.name:
            self.transport.set_cluster_name(config.cluster.name)
        self.drain = None
        self.dialogs = None
        self.cdr_file = None
        # Dialogs are followed in the cluster's store; a single node keeps
        # them in a memory store when something needs them (a dialog limit,
        # CDRs), sparing its calls the cost otherwise.
        self.store = self.etcd
        accounting = config.accounting
        if self.store is None and (config.cluster.max_dialogs or accounting.cdr_file
                                   or accounting.failed_calls):
            self.store = MemoryStore(reactor)
        if self.store is not None and self.transactions is not None:
            self.dialogs = DialogRegistry(self.store, reactor, config.store.prefix, config.node.id,
                                          config.cluster.dialog_max_s)
            self.proxy.dialog_observers.append(self.dialogs)
            if self.membership is not None:
                self.membership.listeners.append(self.dialogs.membership_event(self.membership))
            if config.cluster.max_dialogs:
                self.proxy.admission.append(DialogLimit(self.dialogs, self.proxy,
                                                        config.cluster.max_dialogs))
            self.dialogs.account_failed = accounting.failed_calls
            if accounting.cdr_file:
                self.cdr_file = CDRFile(accounting.cdr_file, reactor)
                self.dialogs.on_end.append(self.cdr_file)
        if self.etcd is not None:
            self.drain = DrainGate(self.etcd, self.membership, config.store.prefix, config.node.id,
                                   config.cluster.drain_action, config.cluster.drain_retry_after_s)
            self.proxy.admission.append(self.drain)
        self.registrar = None
        if config.registrar.enabled:
            r = config.registrar
            self.registrar = Registrar(
                self.location, self.forwarder, reactor, r.default_expires, r.min_expires,
                r.max_expires, r.nat_detect, node_id=config.node.id)
            self.proxy.local_methods["REGISTER"] = self.registrar.handle
        if config.nat.keepalive_interval_s:
            KeepaliveService(
                self.location, self.transport, self.transactions, reactor,
                config.nat.keepalive_interval_s, config.nat.keepalive_method,
                config.nat.keepalive_remove, domain=config.sip.domains[0] if config.sip.domains else "localhost",
            ).setServiceParent(self)
        if self.membership is not None and config.cluster.leader_hook:
            self.membership.listeners.append(LeaderHook(reactor, config.cluster.leader_hook, config.node.id))
        self._sweep = LoopingCall(self._housekeeping)
        self._publish = LoopingCall(self._publish_load)
        self._publish.clock = reactor
        self._sweep.clock = reactor

    def startService(self):
        tune_gc()
        if self.cdr_file is not None:
            self.cdr_file.open()
        if self.store is not None:
            # The gRPC client must be created after twistd forked.
            self.store.start()
        if self.etcd is not None:
            self.location.start().addErrback(self._location_load_failed)
            self.membership.setServiceParent(self)
            self.drain.start().addErrback(self._drain_watch_failed)
        if self.dialogs is not None:
            self.dialogs.start().addErrback(self._dialogs_watch_failed)
        self.transport.listen()
        service.MultiService.startService(self)
        self._sweep.start(30, now=False)
        if self.membership is not None:
            self._publish.start(5, now=False)
        self.log.info("sipcluster node {id} ({mode}) listening on {listen}",
                      id=self.config.node.id, mode=self.config.node.mode,
                      listen=", ".join(str(a) for a in self.config.sip.listen))
        if self.config.cluster.max_dialogs and self.dialogs is not None:
            self.log.info("call admission: at most {limit} dialogs on this node",
                          limit=self.config.cluster.max_dialogs)

    def _location_load_failed(self, failure):
        # etcd away at start: keep serving from an empty cache, and load
        # again shortly (the node must come up without etcd).
        self.log.warn("cannot load registrations from etcd yet: {why}", why=failure.getErrorMessage())
        if self.running:
            self.reactor.callLater(2, lambda: self.location.ready or self.location.start().addErrback(
                self._location_load_failed))

    def _dialogs_watch_failed(self, failure):
        if self.running:
            self.reactor.callLater(2, lambda: self.dialogs.start().addErrback(self._dialogs_watch_failed))

    def _drain_watch_failed(self, failure):
        if self.running:
            self.reactor.callLater(2, lambda: self.drain.start().addErrback(self._drain_watch_failed))

    def stopService(self):
        d = service.MultiService.stopService(self)
        for loop in (self._sweep, self._publish):
            if loop.running:
                loop.stop()
        d.addCallback(lambda _: self.transport.stop())
        if self.dialogs is not None:
            self.dialogs.stop()
        if self.etcd is not None:
            self.location.stop()
            self.drain.stop()
        if self.store is not None:
            d.addBoth(lambda _: self.store.stop())
        if self.cdr_file is not None:
            d.addBoth(lambda _: self.cdr_file.close())
        return d

    def load(self):
        """What this node publishes as its load: transactions in progress."""
        if self.transactions is None:
            return 0
        return len(self.transactions.servers) + len(self.transactions.clients)

    def _publish_load(self):
        load = self.load()
        dialogs = self.dialogs.count(self.config.node.id) if self.dialogs is not None else 0
        record = self.membership.record
        if record.get("load") != load or record.get("dialogs") != dialogs:
            return self.membership.update(load=load, dialogs=dialogs).addErrback(lambda f: None)

    def _housekeeping(self):
        self._sweep_location()
        if self.dialogs is not None:
            self.dialogs.expire()

    def _sweep_location(self):
        sweep = getattr(self.location, "sweep", None)
        if sweep is None:
            return
        if self.membership is not None:
            # Cleaning expired bindings out of etcd is one node's job.
            sweep(purge=self.membership.is_leader)
        else:
            sweep()


class LeaderHook:
    """
    Runs cluster.leader_hook with "acquire" when this node becomes leader
    and "release" when it stops being leader: the place to move a floating
    address (ip addr add/del, a cloud API call...).
    """

    log = Logger()

    def __init__(self, reactor, command, node_id):
        self.reactor = reactor
        self.command = command
        self.node_id = node_id
        self.leading = False

    def __call__(self, event, node_id, record):
        if event != "leader":
            return
        leading = node_id == self.node_id
        if leading != self.leading:
            self.leading = leading
            self.run("acquire" if leading else "release")

    def run(self, action):
        from twisted.internet import utils
        self.log.info("leader hook: {command} {action}", command=self.command, action=action)
        d = utils.getProcessValue(self.command, (action,), env=os.environ, reactor=self.reactor)
        d.addCallback(lambda code: code and self.log.warn(
            "leader hook {command} {action} exited with {code}", command=self.command,
            action=action, code=code))
        d.addErrback(lambda f: self.log.failure("leader hook failed", f))
        return d
