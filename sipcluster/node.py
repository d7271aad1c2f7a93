# -*- test-case-name: tests.test_node,tests.test_tap -*-
"""
A sipcluster node: L{build_node} composes the transport, transaction and
proxy layers, the request pipeline and its stages, and the cluster's
services from a L{sipcluster.config.Config}, as child services of one
L{SIPNode}.  Composition only: what each piece does lives in its module.

The node's own configuration sections ([node], [sip], [log]) are declared
here; every feature module declares its own.
"""

import gc
import os

from twisted.logger import (
    FilteringLogObserver, LogLevel, LogLevelFilterPredicate, Logger, globalLogPublisher)

from sipcluster import compiled
from sipcluster.accounting import CDRFile
from sipcluster.cluster.dialogs import DialogLimit, DialogRegistry
from sipcluster.cluster.drain import DrainGate
from sipcluster.cluster.etcd import EtcdStore
from sipcluster.cluster.membership import ClusterMembership
from sipcluster.cluster.store import MemoryStore
from sipcluster.location.etcd import EtcdLocationService
from sipcluster.location.memory import MemoryLocationService
from sipcluster.nat.keepalive import KeepaliveService
from sipcluster.policy.acl import AccessList
from sipcluster.policy.auth import (
    ClusterSecret, DigestAuthentication, requires_authentication, rule_requires)
from sipcluster.policy.radius import (
    AccountingSpool, RadiusAccounting, RadiusClient, RadiusDigest, parse_server)
from sipcluster.policy.users import FileUsers, StoreUsers
from sipcluster.proxy.forwarding import Forwarder
from sipcluster.proxy.pipeline import Pipeline, StageNotAllowed
from sipcluster.proxy.stateful import StatefulProxy
from sipcluster.proxy.stateless import StatelessProxy
from sipcluster.registrar.registrar import Registrar
from sipcluster.routing.cluster import ClusterRouting
from sipcluster.routing.clusterdns import ClusterDNSService, ClusterZone, parse_regions
from sipcluster.routing.destinations import (
    CallCounter, ClusterLoads, DestinationFailover, PublishedView)
from sipcluster.routing.emergency import EmergencyMark, EmergencyRouting
from sipcluster.routing.hook import RoutingHook, load_hook
from sipcluster.routing.local import LocalRequests, RequestURITarget
from sipcluster.routing.location import LocationTargets
from sipcluster.routing.probes import DestinationProbes
from sipcluster.routing.reload import RoutingReload
from sipcluster.routing.rfc3263 import SIPResolver
from sipcluster.routing.rules import RoutingRules
from sipcluster.schema import ConfigError, ConfigSection, Key, domain_list, listen_list
from sipcluster.services import Following, Lifecycle, OrderedServices, Repeating
from sipcluster.transaction.layer import TransactionLayer
from sipcluster.transaction.timers import TimerValues
from sipcluster.transport.layer import TransportLayer

NODE_CONFIG = ConfigSection("node", {
    "id": Key(str, "", "Node identifier, unique in the cluster; empty means the host name."),
    "mode": Key(str, "stateful", "Proxy mode: stateful (transactions, forking, CANCEL) or stateless (RFC 3261 16.11).",
                choices=("stateful", "stateless")),
    "workers": Key(int, 1, "Worker processes sharing the UDP port through SO_REUSEPORT.", minimum=1, maximum=64),
})

SIP_CONFIG = ConfigSection("sip", {
    "listen": Key(list, ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"],
                  'Addresses to listen on, each "transport:host:port" (udp or tcp; IPv6 in brackets).',
                  check=listen_list),
    "advertise": Key(str, "", "host[:port] written into Via and Record-Route instead of the listen address (behind NAT or a floating address)."),
    "domains": Key(list, ["localhost", "127.0.0.1"], "Domains this node is responsible for: requests for them go to the location service.",
                   check=domain_list),
    "record_route": Key(bool, True, "Insert Record-Route so in-dialog requests pass through the proxy."),
    "max_message_size": Key(int, 65535, "Largest message accepted, in bytes; larger ones get 513 or are dropped.",
                            minimum=1024, maximum=1048576),
    "server_header": Key(str, "sipcluster", "Server / User-Agent text in responses the node creates; empty for none."),
})

LOG_CONFIG = ConfigSection("log", {
    "level": Key(str, "info", "Lowest log level written; debug adds one line per SIP message in and out (method or status, Call-ID, CSeq, source, destination, transaction branch).", choices=("debug", "info", "warn", "error")),
})


def tune_gc():
    """
    Make CPython's cyclic collector cheap for a server holding thousands of
    live transactions: move what exists at start-up out of its reach
    (gc.freeze) and collect the young generation less often.  With the
    default thresholds a full collection walks every live transaction every
    few hundred messages, which costs more than handling them.  Plain
    reference counting still frees each message the moment it is done.

    The middle generation is collected every 100 young collections (not
    20): each of its collections walks every transaction alive (a stateful
    node at 200 calls/s holds about half a million objects), so five times
    rarer is five times cheaper, while the cycles that die there (a few
    objects per call) wait a few minutes longer.  The oldest generation is
    collected every 10 of those, so that cycles promoted while alive are
    freed within about half an hour at that rate rather than hours.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50000, 100, 10)


LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
          "error": LogLevel.error}


def apply_log_level(level, publisher=globalLogPublisher):
    """
    Let only events of C{level} and above reach the observers twistd set
    up (log.level).  twistd gives a plugin no say over its observers, so
    each one found on the publisher is put behind a level filter.
    """
    predicate = LogLevelFilterPredicate(defaultLogLevel=LEVELS[level])
    observers = getattr(publisher, "_observers", None)
    if observers is None:
        return False
    for observer in list(observers):
        if isinstance(observer, FilteringLogObserver):
            continue
        publisher.removeObserver(observer)
        publisher.addObserver(FilteringLogObserver(observer, [predicate]))
    return True


class SIPNode(OrderedServices):
    """
    One node: its components are child services, started in the order
    L{build_node} added them and stopped the other way round (the SIP
    listeners first, the store last).  The attributes name the pieces for
    operators and tests; those a configuration leaves out are None.
    """

    log = Logger()
    name = "sip"

    def __init__(self, config, reactor):
        OrderedServices.__init__(self)
        self.config = config
        self.reactor = reactor
        self.transport = self.transactions = self.proxy = self.pipeline = None
        self.forwarder = self.location = self.registrar = None
        self.store = self.etcd = self.membership = self.dialogs = self.drain = None
        self.cdr_file = None
        self.admission = None
        self.zone = None
        self.routing = self.destinations = self.probes = self.destination_view = None
        self.routing_reload = self.destination_loads = self.destination_calls = None
        self.acl = self.auth = self.radius = self.radius_accounting = None

    def startService(self):
        OrderedServices.startService(self)
        self.log.info("sipcluster node {id} ({mode}) listening on {listen}; {build}",
                      id=self.config.node.id, mode=self.config.node.mode,
                      listen=", ".join(str(a) for a in self.config.sip.listen),
                      build=compiled.build())
        if self.admission is not None:
            self.log.info("call admission: at most {limit} dialogs on this node",
                          limit=self.admission.limit)

    def load(self):
        """What this node publishes as its load: transactions in progress."""
        if self.transactions is None:
            return 0
        return len(self.transactions.servers) + len(self.transactions.clients)

    def publish_load(self):
        load = self.load()
        dialogs = self.dialogs.count(self.config.node.id) if self.dialogs is not None else 0
        record = self.membership.record
        if record.get("load") != load or record.get("dialogs") != dialogs:
            return self.membership.update(load=load, dialogs=dialogs).addErrback(lambda f: None)

    def housekeeping(self):
        self.sweep_location()
        if self.dialogs is not None:
            self.dialogs.expire()

    def sweep_location(self):
        sweep = getattr(self.location, "sweep", None)
        if sweep is None:
            return
        if self.membership is not None:
            # Cleaning expired bindings out of etcd is one node's job.
            sweep(purge=self.membership.is_leader)
        else:
            sweep()


def build_node(config, reactor, resolver=None, location=None, worker=None):
    """
    The node a configuration describes, not yet started.

    @param reactor: provides IReactorTime, IReactorUDP, IReactorTCP (and
        IReactorSocket with workers); tests pass a MemoryReactorClock.
    @param resolver: what finds the addresses of next hops named by host
        name (a L{SIPResolver}: C{resolve(uri, transports)}), or None for
        the RFC 3263 resolver the [dns] section describes.
    @param location: a location service to use instead of the
        configured one (tests).
    @param worker: the index of this worker process, or None.
    @raise ConfigError: one line, naming the key, when the configuration
        asks for something this node cannot do (a stage needing
        transactions on a stateless node).
    """
    node = SIPNode(config, reactor)
    stateful = config.node.mode == "stateful"
    sip = config.sip
    shares_port = config.node.workers > 1 or worker is not None
    if resolver is None:
        # RFC 3263 next hops (and responses to named Vias), on
        # twisted.names ([dns]).
        resolver = SIPResolver.from_config(config.dns, reactor,
                                           ipv6=any(":" in a.host for a in sip.listen))
    node.transport = transport = TransportLayer(
        reactor, sip.listen, sip.advertise,
        max_message_size=sip.max_message_size,
        idle_timeout=config.tcp.idle_timeout_s,
        max_connections=config.tcp.max_connections,
        server_header=sip.server_header,
        reuse_port=shares_port,
        private_port=shares_port and stateful,
        # TCP stays with the first process; workers share the UDP port.
        listen_tcp=worker is None,
        stun=config.nat.stun,
        cluster_name=config.cluster.name or None,
        trace=config.log.level == "debug",
        resolver=resolver)
    node.pipeline = pipeline = Pipeline(stateful)

    def add(stage):
        try:
            return pipeline.add(stage)
        except StageNotAllowed as e:
            key = e.stage.config_key or "node.mode"
            raise config.error(key, 'needs node.mode = "stateful" (the %s stage follows '
                                    'transactions)' % e.stage.name) from None

    # The cluster's store, or a memory store when something follows
    # dialogs on a single node (a dialog limit, CDRs), sparing the calls of
    # other nodes that cost.
    accounting = config.accounting
    wants_dialogs = [key for key, value in (
        ("cluster.max_dialogs", config.cluster.max_dialogs),
        ("accounting.cdr_file", accounting.cdr_file),
        ("accounting.failed_calls", accounting.failed_calls)) if value]
    cluster_routing = None
    if config.store.backend == "etcd":
        node.store = node.etcd = EtcdStore(reactor, config.store.etcd_endpoints,
                                           config.store.timeout_s)
    elif wants_dialogs:
        node.store = MemoryStore(reactor)
    if node.etcd is not None and location is None:
        location = EtcdLocationService(node.etcd, reactor, config.store.prefix)
    if node.etcd is not None:
        node.membership = ClusterMembership(
            node.etcd, reactor, config.store.prefix, config.node.id, {
                "addresses": [str(a) for a in sip.listen],
                "region": config.cluster.region, "state": "active",
                "mode": config.node.mode}, ttl=config.cluster.node_ttl_s)
        cluster_routing = ClusterRouting(node.membership)
        if config.cluster.dns_listen:
            host = config.cluster.name.rpartition(":")[0] if config.cluster.name.count(":") == 1 \
                else config.cluster.name
            node.zone = ClusterZone(node.membership, host, config.cluster.dns_ttl_s,
                                    parse_regions(config.cluster.dns_regions))
    node.location = location = location or MemoryLocationService(reactor)
    # UDP first: the order RFC 3263 4.1 tries SRV names in without NAPTR.
    transports = tuple(t for t in ("udp", "tcp") if any(a.transport == t for a in sip.listen))
    node.forwarder = forwarder = Forwarder(
        transport, sip.domains, record_route=sip.record_route, resolver=resolver,
        server_header=sip.server_header, transports=transports)
    timers = TimerValues.from_config(config.timers)
    if stateful:
        node.transactions = TransactionLayer(transport, reactor, timers)
        node.proxy = StatefulProxy(node.transactions, forwarder, reactor, timers, pipeline)
    else:
        node.proxy = StatelessProxy(transport, forwarder, pipeline, reactor)

    # -- policy: acl, auth ------------------------------------------------------
    # First of the request stages: a refused source costs nothing further,
    # and a trusted one is known before authentication asks.
    a = config.acl
    if a.allow or a.deny or a.trusted:
        node.acl = add(AccessList(a.allow, a.deny, a.trusted, a.deny_action))
    auth = config.auth
    policy_services = []
    verifier = None
    if auth.enabled:
        if auth.verify == "radius":
            r = config.radius
            node.radius = RadiusClient(reactor, [parse_server(s) for s in r.servers], r.secret,
                                       r.timeout_s, r.retries)
            policy_services.append(Lifecycle("radius", node.radius.start, node.radius.stop))
            users = verifier = RadiusDigest(node.radius, r.nas_identifier or config.node.id)
        elif auth.users_file:
            # A relative path is beside the configuration file.
            path = os.path.join(os.path.dirname(config.source or ""), auth.users_file)
            try:
                users = FileUsers(path, reactor)
            except (OSError, ValueError) as e:
                raise config.error("auth.users_file", "cannot read %s: %s" % (
                    path, getattr(e, "strerror", None) or e)) from None
            policy_services.append(Lifecycle("auth-users", users.start, users.stop))
        else:
            users = StoreUsers(node.etcd, config.store.prefix)
            policy_services.append(Following("auth-users", users.start, users.stop, reactor))
        if node.etcd is not None:
            # One key for the cluster, so any node verifies any node's nonces.
            secret = ClusterSecret(store=node.etcd, prefix=config.store.prefix)
            policy_services.append(Following("auth-secret", secret.start, secret.stop, reactor))
        else:
            secret = ClusterSecret(auth.secret or None)
        # Which requests need credentials: a routing rule's authenticate
        # when the first matching rule has one, else the default policy.
        domains, methods = frozenset(d.lower() for d in sip.domains), frozenset(auth.methods)
        requires = rule_requires(lambda: node.routing,
                                 lambda context: requires_authentication(
                                     context, domains, methods, forwarder.is_our_domain))
        node.auth = add(DigestAuthentication(
            users, secret, reactor, auth.realm or (sip.domains[0] if sip.domains else "localhost"),
            sip.domains, auth.algorithms, auth.methods, auth.nonce_expires_s,
            auth.check_identity, requires=requires, verifier=verifier,
            strongest_first=auth.strongest_first))
    r = config.radius
    if r.accounting_servers:
        if node.store is None:
            # The dialog registry (made below when there is a store) ends
            # the calls whose BYE never comes: their Stop comes from it.
            node.store = MemoryStore(reactor)
        accounting_client = RadiusClient(
            reactor, [parse_server(s) for s in r.accounting_servers], r.secret, r.timeout_s,
            r.retries)
        node.radius_accounting = add(RadiusAccounting(
            accounting_client, AccountingSpool(r.accounting_spool, reactor), reactor,
            r.nas_identifier or config.node.id, config.accounting.failed_calls,
            dialogs=lambda: node.dialogs, retry=r.accounting_retry_s,
            max_duration=config.cluster.dialog_max_s))
        policy_services += [
            Lifecycle("radius-accounting-client", accounting_client.start, accounting_client.stop),
            Lifecycle("radius-accounting", node.radius_accounting.start,
                      node.radius_accounting.stop)]
    # -- end of policy -------------------------------------------------------------

    # -- request stages: admission ---------------------------------------------
    if node.store is not None and (stateful or wants_dialogs):
        node.dialogs = DialogRegistry(
            node.store, reactor, config.store.prefix, config.node.id, config.cluster.dialog_max_s,
            account_failed=accounting.failed_calls,
            sinks=[CDRFile(accounting.cdr_file, reactor)] if accounting.cdr_file else (),
            config_key=wants_dialogs[0] if wants_dialogs else None)
        add(node.dialogs)
        if accounting.cdr_file:
            node.cdr_file = node.dialogs.on_end[-1]
        if config.cluster.max_dialogs:
            node.admission = add(DialogLimit(node.dialogs, lambda: len(node.proxy.setups),
                                             config.cluster.max_dialogs))
    if node.etcd is not None:
        node.drain = add(DrainGate(
            node.etcd, node.membership, config.store.prefix, config.node.id,
            config.cluster.drain_action, config.cluster.drain_retry_after_s,
            redirect_to=cluster_routing.active_node_uri))

    # -- target selection: first answer wins -------------------------------------
    if config.registrar.enabled:
        r = config.registrar
        node.registrar = add(Registrar(
            location, forwarder, reactor, r.default_expires, r.min_expires,
            r.max_expires, r.nat_detect, node_id=config.node.id))
    add(LocalRequests(forwarder))
    add(LocationTargets(location, forwarder, cluster_routing))
    add(RequestURITarget())

    # -- routing: rules and destination sets, before the location service ------
    routing = config.routing
    if routing.rules or routing.sets or routing.hook:
        node.destinations = routing.sets
        calls = node.destination_calls = CallCounter(reactor) if stateful else None
        for dset in routing.sets.values():
            dset.calls = calls
        hook = None
        if routing.hook:
            hook = RoutingHook(load_hook(routing.hook), reactor, routing.hook_timeout_s,
                               routing.sets, routing.hook)
        node.routing = pipeline.add(
            RoutingRules(routing.rules, routing.sets, pipeline.named("location"), hook),
            before="location")
        if routing.emergency_set:
            # Marked before every request stage (admission and draining let
            # it through), routed before every target stage.
            first = pipeline.request[0].name if pipeline.request else None
            mark = pipeline.add(EmergencyMark(routing.emergency_numbers), before=first)
            pipeline.add(EmergencyRouting(routing.sets[routing.emergency_set]),
                         before=pipeline.targets[0].name)
            if node.dialogs is not None:
                node.dialogs.on_end.insert(0, mark.mark_cdr)
        if stateful:
            add(DestinationFailover(calls))
        if node.membership is not None:
            node.destination_loads = ClusterLoads(node.etcd, config.store.prefix, config.node.id)
            for dset in routing.sets.values():
                dset.loads = node.destination_loads
            node.destination_view = PublishedView(
                node.etcd, node.membership, config.store.prefix, config.node.id, routing.sets,
                reactor)
        if stateful:
            # (Also with nothing to probe yet: a reload may bring probes.)
            node.probes = DestinationProbes(
                [dset for dset in routing.sets.values() if dset.probe_interval],
                forwarder, node.transactions, reactor, node_id=config.node.id)
        if config.source:
            node.routing_reload = RoutingReload(node, config.source, reactor)
    # -- end of routing ------------------------------------------------------------

    # -- services, in start order ------------------------------------------------
    if node.cdr_file is not None:
        Lifecycle("cdr-file", node.cdr_file.open, node.cdr_file.close).setServiceParent(node)
    if node.store is not None:
        # The gRPC client must be created after twistd forked: at start.
        Lifecycle("store", node.store.start, node.store.stop).setServiceParent(node)
    for policy_service in policy_services:  # of "policy: acl, auth" above
        policy_service.setServiceParent(node)
    if node.etcd is not None:
        Following("location", location.start, location.stop, reactor,
                  ready=lambda: location.ready).setServiceParent(node)
        node.membership.setServiceParent(node)
        Following("drain", node.drain.start, node.drain.stop, reactor).setServiceParent(node)
        if config.cluster.leader_hook:
            node.membership.observe(LeaderHook(reactor, config.cluster.leader_hook,
                                               config.node.id))
    if node.zone is not None:
        ClusterDNSService(reactor, node.zone, config.cluster.dns_listen).setServiceParent(node)
    if node.dialogs is not None:
        if node.membership is not None:
            node.membership.observe(node.dialogs.membership_event(node.membership))
        Following("dialogs", node.dialogs.start, node.dialogs.stop, reactor).setServiceParent(node)
    if config.nat.keepalive_interval_s:
        KeepaliveService(
            location, transport, node.transactions, reactor,
            config.nat.keepalive_interval_s, config.nat.keepalive_method,
            config.nat.keepalive_remove, domain=sip.domains[0] if sip.domains else "localhost",
        ).setServiceParent(node)
    if node.probes is not None:
        node.probes.setServiceParent(node)
    if node.routing_reload is not None:
        node.routing_reload.setServiceParent(node)
    if node.destination_calls is not None:
        Repeating("destination-calls", 60,
                  lambda: node.destination_calls.sweep(config.cluster.dialog_max_s),
                  reactor).setServiceParent(node)
    if node.destination_loads is not None:
        Following("destination-loads", node.destination_loads.start, node.destination_loads.stop,
                  reactor).setServiceParent(node)
    if node.destination_view is not None:
        Repeating("destination-view", 2, node.destination_view.publish,
                  reactor).setServiceParent(node)
    Repeating("housekeeping", 30, node.housekeeping, reactor).setServiceParent(node)
    if node.membership is not None:
        Repeating("load", 5, node.publish_load, reactor).setServiceParent(node)
    # Last to start, first to stop: no request arrives before the rest is
    # up, none after it is going down.
    Lifecycle("sip-transport", transport.listen, transport.stop).setServiceParent(node)
    return node


def check(config):
    """
    Build (never start) the node C{config} describes, so that a
    configuration a node would refuse is refused here too (check-config).

    @raise ConfigError: as L{build_node}.
    """
    from twisted.internet.testing import MemoryReactorClock
    build_node(config, MemoryReactorClock())


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
