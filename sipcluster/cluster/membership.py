# -*- test-case-name: tests.cluster.test_membership -*-
"""
Cluster membership and leader election through etcd.

Each node keeps C{<prefix>/nodes/<node-id>} alive with a lease: a JSON
record of its addresses, region, state (active or draining) and load.  A
node that stops refreshing (dead, partitioned, SIGSTOPped) disappears for
everyone when the lease runs out.  Every node watches the others.

The leader is whoever created C{<prefix>/leader} under its own lease (a
create-if-absent transaction: etcd3's Lock is broken with current tenacity);
when that key goes, every node campaigns again.
"""

import json
import time

from twisted.application import service
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipcluster.cluster.store import StoreUnavailable, json_record


class ClusterMembership(service.Service):
    """
    @ivar nodes: node id -> record (dict) of every live node, ourselves
        included, as last seen.
    @ivar leader: the id of the current leader, or None.
    @ivar listeners: callables notified with (event, node_id, record) for
        "join", "update", "leave" and ("leader", node_id, None), node_id
        None when there is no leader (ours lost its lease, or left).
    """

    log = Logger()
    name = "cluster-membership"

    def __init__(self, store, clock, prefix, node_id, record, ttl=3):
        self.store = store
        self.clock = clock
        self.prefix = prefix.rstrip("/")
        self.node_id = node_id
        self.record = dict(record)
        self.ttl = ttl
        self.nodes = {}
        self.leader = None
        self.lease = None
        self.listeners = []
        self.connected = False
        self._refresh = LoopingCall(self._keepalive)
        self._refresh.clock = clock
        self._watch = None
        self._leader_watch = None
        self._joining = None
        # Until when our lease surely lives, by our own clock: leadership
        # held on that lease is not trusted past it.
        self._lease_valid_until = 0.0
        self._lease_timer = None
        self._interval = max(ttl / 3.0, 0.2)

    @property
    def node_key(self):
        return "%s/nodes/%s" % (self.prefix, self.node_id)

    @property
    def leader_key(self):
        return "%s/leader" % self.prefix

    @property
    def is_leader(self):
        return self.leader == self.node_id

    # -- lifecycle ------------------------------------------------------------

    def startService(self):
        service.Service.startService(self)
        self.record.setdefault("started", time.time())
        self._refresh.start(self._interval, now=True)

    def stopService(self):
        service.Service.stopService(self)
        if self._refresh.running:
            self._refresh.stop()
        if self._lease_timer is not None and self._lease_timer.active():
            self._lease_timer.cancel()
        for watch in (self._watch, self._leader_watch):
            if watch is not None:
                watch.stop()
        lease, self.lease = self.lease, None
        if lease is None:
            return None
        # Leave at once rather than after the TTL; bounded by the call timeout.
        return self.store.revoke(lease).addErrback(lambda f: None)

    # -- keeping our record alive ------------------------------------------------

    def _keepalive(self):
        if self._joining is not None:
            return self._joining
        if self.lease is None:
            self._joining = self._join()
            self._joining.addBoth(self._joined)
            return self._joining
        sent = self.clock.seconds()
        d = self.store.refresh(self.lease)
        d.addCallbacks(self._alive, self._refresh_failed, callbackArgs=(sent,))
        return d

    def _check_lease(self):
        """
        A leader that could not refresh its lease for a whole TTL (etcd
        away, this process paused or cut off) steps down: by now another
        node may have been elected, and the leader hook must release.
        """
        if self.is_leader and self.clock.seconds() >= self._lease_valid_until:
            self.log.warn("cluster lease not refreshed for {ttl}s: no longer leader", ttl=self.ttl)
            self._set_leader(None)

    def _lease_lives_until(self, until):
        """
        Our lease is known alive until C{until}: a timer steps down then
        unless a refresh moves it on (a refresh that hangs holds up the
        keepalive loop, so the loop alone cannot be the watchdog).
        """
        self._lease_valid_until = until
        if self._lease_timer is not None and self._lease_timer.active():
            self._lease_timer.cancel()
        self._lease_timer = self.clock.callLater(
            max(0.0, until - self.clock.seconds()), self._check_lease)

    def _alive(self, ttl, sent):
        if not self.running:
            # Answered after stopService: a lease timer armed now would
            # outlive the service (and fail trial's clean-reactor check).
            return
        until = sent + (ttl or self.ttl)
        self._lease_lives_until(until)
        if not self.connected:
            self.connected = True
        if self.running and self.lease is not None and \
                until - self.clock.seconds() <= self._interval:
            # A slow answer leaves little margin: refresh again at once
            # rather than step down before the next tick.
            again = self.clock.seconds()
            self.store.refresh(self.lease).addCallbacks(
                self._alive, self._refresh_failed, callbackArgs=(again,))
        if self.leader is None and self.running:
            # We stepped down (or missed the election) while the lease
            # may have survived, our leader key with it: look again.
            self.store.get(self.leader_key).addCallbacks(
                self._leader_read, lambda f: None)

    def _leader_read(self, value):
        if self.leader is not None:
            return
        if value:
            self._set_leader(value.decode("utf-8"))
        else:
            self._campaign().addErrback(lambda f: None)

    def _refresh_failed(self, failure):
        if failure.check(KeyError):
            # The lease ran out (etcd was away longer than the TTL): join
            # again with a new one; our keys went with the old.
            self.log.warn("cluster lease expired; joining again")
            self.lease = None
            self._lease_valid_until = 0.0
            self._check_lease()
        elif failure.check(StoreUnavailable):
            self.connected = False
        else:
            self.log.failure("lease refresh failed", failure)

    @defer.inlineCallbacks
    def _join(self):
        granted = self.clock.seconds()
        lease = yield self.store.grant(self.ttl)
        if not self.running:
            # Stopped while the grant was under way: nothing may outlive
            # the service, neither a lease timer nor our record.
            yield self.store.revoke(lease)
            return
        self.lease = lease
        self._lease_lives_until(granted + self.ttl)
        yield self.store.put(self.node_key, self._encode(), lease=lease)
        self.connected = True
        if self._watch is None:
            self._watch = yield self.store.follow(
                self.prefix + "/nodes/", self._node_events, self._resync)
        if self._leader_watch is None:
            self._leader_watch = yield self.store.follow(
                self.leader_key, self._leader_events, self._leader_resync)
        yield self._campaign()

    def _joined(self, result):
        self._joining = None
        if isinstance(result, Failure):
            self.connected = False
            if not result.check(StoreUnavailable):
                self.log.failure("joining the cluster failed", result)
            # Join again on the next tick; a lease granted before the
            # failure expires by itself.
            self.lease = None
        return None

    def _encode(self):
        record = dict(self.record)
        record["id"] = self.node_id
        return json.dumps(record, sort_keys=True).encode("utf-8")

    def observe(self, listener):
        """Call C{listener(event, node_id, record)} on every membership event."""
        self.listeners.append(listener)

    def update(self, **changes):
        """Change our record (state, load...) and publish it."""
        self.record.update(changes)
        if self.lease is None:
            return defer.succeed(None)
        return self.store.put(self.node_key, self._encode(), lease=self.lease)

    # -- the others ------------------------------------------------------------------

    def _node_id_of(self, key):
        return key.rsplit("/", 1)[-1]

    def _resync(self, items, revision):
        fresh = {}
        for key, value, _ in items:
            record = json_record(value)
            if record is not None:
                fresh[self._node_id_of(key)] = record
        for node_id in set(self.nodes) - set(fresh):
            self._notify("leave", node_id, self.nodes[node_id])
        for node_id, record in fresh.items():
            self._notify("join" if node_id not in self.nodes else "update", node_id, record)
        self.nodes = fresh

    def _node_events(self, events):
        for kind, key, value, _ in events:
            node_id = self._node_id_of(key)
            if kind == "delete":
                record = self.nodes.pop(node_id, None)
                if record is not None:
                    self._notify("leave", node_id, record)
            else:
                record = json_record(value)
                if record is not None:
                    event = "update" if node_id in self.nodes else "join"
                    self.nodes[node_id] = record
                    self._notify(event, node_id, record)

    def _notify(self, event, node_id, record):
        for listener in list(self.listeners):
            try:
                listener(event, node_id, record)
            except Exception:
                self.log.failure("membership listener failed")

    # -- leader election ---------------------------------------------------------------

    def _campaign(self):
        if self.lease is None:
            return defer.succeed(False)
        d = self.store.create(self.leader_key, self.node_id.encode("utf-8"), lease=self.lease)

        def done(won):
            if won:
                self._set_leader(self.node_id)
            return won
        return d.addCallback(done)

    def _set_leader(self, node_id):
        if node_id != self.leader:
            self.leader = node_id
            self._notify("leader", node_id, None)

    def _leader_resync(self, items, revision):
        if items:
            self._set_leader(items[0][1].decode("utf-8"))
        else:
            self._set_leader(None)
            self._campaign().addErrback(lambda f: None)

    def _leader_events(self, events):
        for kind, key, value, _ in events:
            if kind == "delete":
                self._set_leader(None)
                # The leader left: every node campaigns, one wins.
                self._campaign().addErrback(lambda f: None)
            else:
                self._set_leader(value.decode("utf-8"))

