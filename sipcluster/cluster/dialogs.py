# -*- test-case-name: tests.cluster.test_drain,tests.cluster.test_cluster_nodes -*-
"""
Dialogs shared by the cluster: every node records the dialogs it set up in
etcd (C{<prefix>/dialogs/<call-id>;<from-tag>;<to-tag>}: owner node, start
time, parties, route set), so that a dialog outlives the node that created
it.  When a node dies, the leader adopts its dialogs: they stay visible
(C{sipcluster calls}), count toward limits, and end with a proper state and
a call-detail record when their BYE passes any node.

Records are kept under leases grouped by expiry bucket, with the longest
call a dialog may last (cluster.dialog_max_s): a dialog whose BYE is never
seen does not stay forever.
"""

import json

from twisted.internet import defer
from twisted.logger import Logger

from sipcluster.cluster.store import LeaseBuckets, StoreFollower, json_record
from sipcluster.proxy.pipeline import DIALOG, REQUEST, Respond, Stage
from sipcluster.sip.errors import SIPError

# Call-detail records go to their own log namespace, one JSON object each.
# (Module level: a Logger class attribute takes its class's name.)
cdr_log = Logger(namespace="sipcluster.cdr")


def _uri_text(request, name):
    """The URI of From or To as text; the header as it came when it does not
    parse (a proxy forwards those untouched, RFC 3261 16.3)."""
    try:
        return str((request.from_ if name == "from" else request.to).uri)
    except SIPError:
        return request.header(name)


def _route_set(response):
    """The Record-Route values of C{response}; whole header lines when they
    do not split (the 2xx is forwarded untouched all the same)."""
    try:
        return response.values("record-route")
    except SIPError:
        return [value for name, value in response.items() if name.lower() == "record-route"]


class DialogRegistry(Stage, StoreFollower):
    """
    The dialog stage of the request pipeline: dialogs confirmed through
    this node are recorded in the store, and end with a CDR.

    @ivar dialogs: key -> record of every dialog of the cluster, fed by a
        watch (so any node can count and list them).
    @ivar on_end: callables(record) run when a dialog ends, or a call
        attempt fails (the CDR hooks): the CDR log, then C{sinks}.
    @ivar account_failed: whether failed call attempts get a CDR too
        (accounting.failed_calls).
    @ivar owned: how many of them this node owns (set up or adopted), kept
        up to date as records come and go, for call admission.
    """

    log = Logger()
    name = "dialogs"
    points = (DIALOG,)
    # Dialogs are seen in the final responses a transaction chooses.
    needs_transactions = True

    def __init__(self, store, clock, prefix, node_id, max_duration=14400,
                 account_failed=False, sinks=(), config_key=None):
        self.store = store
        self.clock = clock
        self.prefix = prefix.rstrip("/") + "/dialogs/"
        self.node_id = node_id
        self.max_duration = max_duration
        self.leases = LeaseBuckets(store, clock, bucket=600, margin=60)
        self.dialogs = {}
        self.on_end = [self._write_cdr] + list(sinks)
        self.account_failed = account_failed
        self.config_key = config_key
        self.adopted = 0
        self.owned = 0

    # -- following the cluster's dialogs ------------------------------------------

    def start(self):
        return self._follow(self.prefix)


    def _resync(self, items, revision):
        self.dialogs = {}
        self.owned = 0
        for key, value, mod in items:
            record = json_record(value)
            if record is not None:
                record["_mod"] = mod
                self._put(key[len(self.prefix):], record)

    def _events(self, events):
        for kind, key, value, mod in events:
            name = key[len(self.prefix):]
            if kind == "delete":
                self._drop(name)
            else:
                record = json_record(value)
                if record is not None:
                    record["_mod"] = mod
                    self._put(name, record)

    def _put(self, name, record):
        old = self.dialogs.get(name)
        if old is not None and old.get("owner") == self.node_id:
            self.owned -= 1
        self.dialogs[name] = record
        if record.get("owner") == self.node_id:
            self.owned += 1

    def _drop(self, name):
        record = self.dialogs.pop(name, None)
        if record is not None and record.get("owner") == self.node_id:
            self.owned -= 1
        return record

    def count(self, owner=None):
        """Dialogs in the cluster, or owned by C{owner}."""
        return sum(1 for r in self.dialogs.values() if owner is None or r.get("owner") == owner)

    # -- proxy observer --------------------------------------------------------------

    @staticmethod
    def key_of(call_id, from_tag, to_tag):
        return "%s;%s;%s" % (call_id, from_tag or "", to_tag or "")

    def dialog_confirmed(self, request, response):
        """A 2xx to an initial INVITE went upstream: the dialog exists."""
        name = self.key_of(request.call_id, request.from_tag, response.to_tag)
        now = self.clock.seconds()
        record = self._call_of(request, response)
        record.update(started=now, state="confirmed", route_set=_route_set(response))
        d = self.leases.write(now + self.max_duration, lambda lease: self.store.create(
            self.prefix + name, json.dumps(record, sort_keys=True).encode("utf-8"), lease))
        d.addErrback(self._failed, "record", name)
        if name not in self.dialogs:
            self._put(name, record)
        return d

    def dialog_ended(self, request, response):
        """A final response to a BYE went upstream: the dialog is over."""
        from_tag, to_tag = request.from_tag, request.to_tag
        # The BYE may come from either side.
        for name in (self.key_of(request.call_id, from_tag, to_tag),
                     self.key_of(request.call_id, to_tag, from_tag)):
            record = self._drop(name)
            if record is not None:
                break
        else:
            return defer.succeed(None)
        return self._end(name, record, "terminated", response.status,
                         "caller" if from_tag == record.get("from_tag") else "callee")

    def call_failed(self, request, response, started):
        """
        An initial INVITE was finally answered with a failure (busy,
        cancelled, not found, refused by admission...): accounted as a
        "failed" attempt when C{account_failed} is set.
        """
        if not self.account_failed:
            return
        now = self.clock.seconds()
        record = self._call_of(request, response)
        record.update(started=started, ended=now, duration=0, state="failed",
                      end_status=response.status, ended_by_node=self.node_id,
                      setup_s=round(now - started, 3))
        self._account(record)

    def _call_of(self, request, response):
        """What identifies a call: Call-ID, tags, parties, this node as owner."""
        return {"call_id": request.call_id, "from_tag": request.from_tag, "to_tag": response.to_tag,
                "from": _uri_text(request, "from"), "to": _uri_text(request, "to"),
                "owner": self.node_id}

    def _account(self, record):
        for hook in self.on_end:
            try:
                hook(record)
            except Exception:
                self.log.failure("dialog end hook failed")

    def expire(self):
        """
        End the dialogs of ours older than the longest call allowed
        (cluster.dialog_max_s) whose BYE was never seen (a phone lost its
        power, a BYE went another way): state "expired", with a CDR, before
        their lease takes the record away.  Run periodically.
        """
        limit = self.clock.seconds() - self.max_duration
        old = [name for name, record in self.dialogs.items()
               if record.get("owner") == self.node_id and record.get("started", limit) <= limit]
        for name in old:
            self._end(name, self._drop(name), "expired", None, None)
        if old:
            self.log.info("{count} dialogs ended without a BYE after {limit}s",
                          count=len(old), limit=self.max_duration)
        return len(old)

    def _end(self, name, record, state, status, ended_by):
        record = dict(record)
        record.pop("_mod", None)
        ended = self.clock.seconds()
        record.update(state=state, ended=ended, ended_by_node=self.node_id, end_status=status,
                      duration=round(ended - record.get("started", ended), 3), ended_by=ended_by)
        self._account(record)
        return self.store.delete(self.prefix + name).addErrback(self._failed, "delete", name)

    def _write_cdr(self, record):
        cdr_log.info("{cdr}", cdr=json.dumps(record, sort_keys=True))

    def _failed(self, failure, what, name):
        self.log.warn("cannot {what} dialog {name} in etcd: {why}", what=what, name=name,
                      why=failure.getErrorMessage())

    # -- adoption by the leader -------------------------------------------------------

    @defer.inlineCallbacks
    def adopt_orphans(self, live_nodes):
        """
        Take over the dialogs whose owner is not among C{live_nodes} (the
        leader does, when a node leaves or when it becomes leader): each
        record becomes ours by compare-and-swap, so two adopters cannot
        both win.
        """
        items, _ = yield self.store.get_prefix(self.prefix)
        adopted = 0
        for key, value, mod in items:
            record = json_record(value)
            if record is None or record.get("owner") in live_nodes:
                continue
            dead_node = record.get("owner")
            record.update(owner=self.node_id, adopted_from=dead_node, adopted_at=self.clock.seconds())
            started = record.get("started", self.clock.seconds())
            value = json.dumps(record, sort_keys=True).encode("utf-8")
            ok = yield self.leases.write(
                started + self.max_duration,
                lambda lease, key=key, value=value, mod=mod: self.store.replace(key, value, mod, lease))
            if ok:
                adopted += 1
        self.adopted += adopted
        if adopted:
            self.log.info("adopted {count} dialogs of nodes that left", count=adopted)
        return adopted

    def membership_event(self, membership):
        """
        A membership listener: the leader adopts the dialogs of a node that
        leaves, and a node that becomes leader adopts any orphans (the dead
        node may have been the leader itself).
        """
        def listener(event, node_id, record):
            if (event == "leave" and membership.is_leader) or \
                    (event == "leader" and node_id == self.node_id):
                live = set(membership.nodes) | {self.node_id}
                self.adopt_orphans(live).addErrback(self._failed, "adopt", "orphans")
        return listener



class DialogLimit(Stage):
    """
    Call admission for a node, a request stage: at most C{limit} dialogs at
    once, counting those it owns in the registry (set up here or adopted
    from a dead node) and the INVITEs it is still setting up
    (C{setting_up()}).  A new INVITE over the limit gets 503; in-dialog
    requests always pass, so running calls end normally.  Kamailio's
    equivalent is a dialog profile size check.
    """

    name = "dialog-limit"
    points = (REQUEST,)
    needs_transactions = True
    config_key = "cluster.max_dialogs"

    def __init__(self, registry, setting_up, limit):
        self.registry = registry
        self.setting_up = setting_up
        self.limit = limit
        self.refused = 0

    def in_use(self):
        return self.registry.owned + self.setting_up()

    def on_request(self, context):
        request = context.request
        if request.method != "INVITE" or request.to_tag is not None:
            return None
        if context.vars.get("emergency"):
            # Marked by sipcluster.routing.emergency: admission never
            # refuses an emergency call.
            return None
        if self.in_use() >= self.limit:
            self.refused += 1
            raise Respond(503, "Service Unavailable (call limit reached)")
        return None
