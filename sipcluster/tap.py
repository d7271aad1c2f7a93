# -*- test-case-name: tests.test_tap -*-
"""
Start-up: the options of C{twistd sipcluster} and L{makeService}, which
builds a node from the configuration file and command-line overrides.
"""

import sys

from twisted.application import service
from twisted.internet import reactor as default_reactor
from twisted.python import usage

from sipcluster import config as configuration
from sipcluster.node import apply_log_level, build_node, tune_gc
from sipcluster.services import Lifecycle
from sipcluster.workers import WorkerPool


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = ("Run one sipcluster node. Without --config it is a single node on "
                "127.0.0.1:5060 (UDP and TCP) with an in-memory store.")

    optParameters = [
        ["config", "c", None, "TOML configuration file."],
        ["node-id", None, None, "Node identifier (node.id)."],
        ["mode", None, None, "stateful or stateless (node.mode)."],
        ["workers", None, None, "Worker processes sharing the UDP port (node.workers).", int],
        ["advertise", None, None, "host[:port] for Via and Record-Route (sip.advertise)."],
        ["store", None, None, "Store backend: memory or etcd (store.backend)."],
        ["etcd", None, None, "etcd endpoint(s), comma-separated, e.g. http://127.0.0.1:2379 (store.etcd_endpoints)."],
        ["region", None, None, "Region of this node (cluster.region)."],
        ["t1-ms", None, None, "Timer T1 in milliseconds (timers.t1_ms).", int],
        ["timer-c", None, None, "Timer C in seconds (timers.timer_c_s).", int],
        ["worker", None, None, "Internal: index of this worker process.", int],
    ]

    def __init__(self):
        usage.Options.__init__(self)
        self["listen"] = []
        self["domain"] = []
        self.argv = []

    def opt_listen(self, value):
        """Listen address transport:host:port, repeatable (sip.listen)."""
        self["listen"].append(value)

    def opt_domain(self, value):
        """Served domain, repeatable (sip.domains)."""
        self["domain"].append(value)

    def parseOptions(self, options=None):
        self.argv = list(sys.argv[1:] if options is None else options)
        usage.Options.parseOptions(self, options)

    def overrides(self):
        """Command-line options as dotted configuration keys."""
        mapping = {
            "node-id": "node.id", "mode": "node.mode",
            "workers": "node.workers", "advertise": "sip.advertise",
            "store": "store.backend", "t1-ms": "timers.t1_ms", "timer-c": "timers.timer_c_s",
        }
        out = {key: self[opt] for opt, key in mapping.items() if self[opt] is not None}
        if self["listen"]:
            out["sip.listen"] = list(self["listen"])
        if self["domain"]:
            out["sip.domains"] = list(self["domain"])
        if self["etcd"]:
            out["store.etcd_endpoints"] = configuration.split_endpoints(self["etcd"])
        if self["region"]:
            out["cluster.region"] = self["region"]
        return out

    def postOptions(self):
        try:
            self.config = configuration.load(self["config"], self.overrides())
        except configuration.ConfigError as e:
            # One line, not twistd's usage text before it (which it prints
            # for a UsageError): the error is in the file, not the options.
            raise SystemExit("config error: %s" % e)


def makeService(options, reactor=None):
    """The node as a MultiService: SIP layers, plus worker processes if asked."""
    reactor = reactor or default_reactor
    config = options.config
    top = service.MultiService()
    # What the node process as a whole is tuned for: its log level (twistd
    # has set up its observers by the time services start) and the cyclic
    # garbage collector.
    level = config.log.level
    Lifecycle("process", lambda: (apply_log_level(level), tune_gc())).setServiceParent(top)
    try:
        node = build_node(config, reactor, worker=options["worker"])
    except configuration.ConfigError as e:
        # The one line an operator needs, not a traceback (twistd prints
        # what SystemExit carries and exits 1).
        raise SystemExit("config error: %s" % e)
    node.setServiceParent(top)
    if config.node.workers > 1 and options["worker"] is None:
        pool = WorkerPool(reactor, config.node.workers - 1, options.argv)
        pool.setServiceParent(top)
        if node.routing_reload is not None:
            # SIGHUP to the node reloads its workers' routing too.
            node.routing_reload.workers = pool
    return top

