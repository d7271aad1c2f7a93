# -*- test-case-name: tests.cluster.test_store -*-
"""
The cluster store: the key-value interface the cluster's state lives in
(membership, registrations, dialogs, drain flags), and its in-memory
implementation.

L{sipcluster.cluster.etcd.EtcdStore} is the cluster's implementation;
L{MemoryStore} is a single node's (no etcd: its dialogs, call admission and
CDRs work the same) and the unit tests'.  Both keep etcd's model: every
write gets the next store revision, keys may be attached to leases that
expire, compare-and-swap works on a key's mod revision, and watches deliver
events in a later reactor turn, never inside the write that caused them.
tests/cluster/test_store.py runs the same contract against both.
"""

import json

from twisted.internet import defer
from zope.interface import Interface, implementer

from sipcluster.schema import ConfigSection, Key, endpoint_list

CONFIG = ConfigSection("store", {
    "backend": Key(str, "memory", "Where registrations live: memory (a single node) or etcd (a cluster).",
                   choices=("memory", "etcd")),
    "etcd_endpoints": Key(list, ["http://127.0.0.1:2379"], "etcd client URLs, every member of the etcd cluster: calls go to one, and move to the next when it stops answering (backend = etcd).",
                         check=endpoint_list),
    "prefix": Key(str, "/sipcluster", "Key prefix of this cluster in etcd: nodes sharing it form one cluster."),
    "timeout_s": Key(float, 2.0, "Longest any one etcd call may take, in seconds.", minimum=0.1, maximum=60),
})



class StoreUnavailable(Exception):
    """The store could not be reached, or did not answer in time."""


class LeaseNotFound(KeyError):
    """A write named a lease that has expired (or was revoked)."""


class IClusterStore(Interface):
    """
    Asynchronous keys and values with revisions, leases and watches.  Every
    method returns a Deferred unless said otherwise.
    """

    def start():
        """Begin (connect, start threads); synchronous."""

    def stop():
        """End: watches stop, pending calls fail; synchronous."""

    def get(key):
        """The value (bytes) of C{key}, or None."""

    def get_prefix(prefix):
        """(items, revision): items a list of (key, value, mod_revision)
        under C{prefix} in key order, revision the one they were read at."""

    def put(key, value, lease=None):
        """Write; the revision of the write.  Writes naming a lease that is
        gone fail with L{LeaseNotFound}."""

    def delete(key):
        """Remove C{key}; True when it existed."""

    def create(key, value, lease=None):
        """Write only if C{key} does not exist; True when written."""

    def replace(key, value, mod_revision, lease=None):
        """Write only if C{key} was last modified at C{mod_revision} (0: it
        must not exist); the revision of the write, or 0."""

    def delete_if(key, mod_revision):
        """Remove C{key} only if last modified at C{mod_revision}; True when
        removed."""

    def grant(ttl):
        """A new lease of C{ttl} seconds; its id."""

    def refresh(lease):
        """Keep C{lease} alive for its TTL again; the TTL, or a
        L{LeaseNotFound} failure when it has expired."""

    def revoke(lease):
        """End C{lease} now, removing its keys."""

    def follow(prefix, on_events, on_resync):
        """
        Hand everything under C{prefix} to C{on_resync(items, revision)},
        then deliver each later change as C{on_events([(kind, key, value,
        mod_revision)...])}, kind "put" or "delete".  Fires with a watch
        whose C{stop()} ends it.
        """


class StoreFollower:
    """
    A mixin for what follows part of the store (the drain key, the
    dialogs, users, the nonce secret, other nodes' destination views):
    L{_follow} lists then watches (L{IClusterStore.follow}) and keeps the
    watch, L{stop} ends it.  The class defines C{_events(events)} and
    C{_resync(items, revision)}.
    """

    _watch = None

    def _follow(self, prefix):
        d = self.store.follow(prefix, self._events, self._resync)
        return d.addCallback(lambda watch: setattr(self, "_watch", watch))

    def stop(self):
        if self._watch is not None:
            self._watch.stop()
            self._watch = None


def json_record(value):
    """A JSON object stored as bytes, as a dict, or None when unreadable."""
    try:
        record = json.loads(value.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    return record if isinstance(record, dict) else None


class LeaseBuckets:
    """
    Leases shared by every key expiring in the same time bucket, so that a
    hundred thousand keys cost a handful of leases.  A lease outlives the
    end of its bucket by C{margin} seconds; keys whose own expiry is earlier
    are filtered by their readers.
    """

    def __init__(self, store, clock, bucket=300, margin=30):
        self.store = store
        self.clock = clock
        self.bucket = bucket
        self.margin = margin
        self._leases = {}

    def __len__(self):
        return len(self._leases)

    @defer.inlineCallbacks
    def lease_for(self, expires_at):
        """The lease of the bucket C{expires_at} falls in, granted once."""
        bucket = (int(expires_at) // self.bucket + 1) * self.bucket
        lease = self._leases.get(bucket)
        if lease is None:
            now = self.clock.seconds()
            for old in [b for b in self._leases if b < now]:
                del self._leases[old]
            lease = yield self.store.grant(max(int(bucket - now) + self.margin, 5))
            # Two grants racing for one bucket: the first is kept, the other
            # lease expires unused.
            lease = self._leases.setdefault(bucket, lease)
        return lease

    @defer.inlineCallbacks
    def write(self, expires_at, write):
        """
        C{write(lease)} with the lease of C{expires_at}'s bucket; when the
        store no longer knows that lease (revoked, or lost with a restored
        etcd), the bucket gets a new one and the write is tried once more.
        """
        lease = yield self.lease_for(expires_at)
        try:
            return (yield write(lease))
        except LeaseNotFound:
            self.forget(lease)
        lease = yield self.lease_for(expires_at)
        return (yield write(lease))

    def forget(self, lease):
        """Drop C{lease} from its bucket: the next write there grants anew."""
        for bucket, held in list(self._leases.items()):
            if held == lease:
                del self._leases[bucket]


class _Lease:
    def __init__(self, ttl, timer):
        self.ttl = ttl
        self.timer = timer
        self.keys = set()


class _MemoryWatch:
    def __init__(self, store, prefix, on_events, start_revision):
        self.store = store
        self.prefix = prefix
        self.on_events = on_events
        self.next_revision = start_revision
        self.running = True

    def stop(self):
        self.running = False
        if self in self.store._watches:
            self.store._watches.remove(self)


@implementer(IClusterStore)
class MemoryStore:
    """
    The store of a single node, in this process: what etcd would do, on the
    reactor's clock.

    @ivar revision: the store revision (that of the last write).
    """

    def __init__(self, clock):
        self.clock = clock
        self.revision = 1
        self._data = {}  # key -> (value, mod_revision, lease id or None)
        self._leases = {}
        self._next_lease = 1
        self._watches = []
        self._pending = []
        self._flush = None
        self.running = False

    def start(self):
        self.running = True

    def stop(self):
        self.running = False
        for watch in list(self._watches):
            watch.stop()
        for lease in self._leases.values():
            if lease.timer.active():
                lease.timer.cancel()
        if self._flush is not None and self._flush.active():
            self._flush.cancel()

    # -- reads ------------------------------------------------------------------------

    def get(self, key):
        entry = self._data.get(key)
        return defer.succeed(entry[0] if entry else None)

    def get_prefix(self, prefix):
        return defer.succeed((self._items(prefix), self.revision))

    def _items(self, prefix):
        return [(key, value, mod) for key, (value, mod, _) in sorted(self._data.items())
                if key.startswith(prefix)]

    # -- writes ---------------------------------------------------------------------------

    def put(self, key, value, lease=None):
        try:
            return defer.succeed(self._put(key, value, lease))
        except LeaseNotFound as e:
            return defer.fail(e)

    def create(self, key, value, lease=None):
        if key in self._data:
            return defer.succeed(False)
        return self.put(key, value, lease).addCallback(lambda _: True)

    def replace(self, key, value, mod_revision, lease=None):
        entry = self._data.get(key)
        current = entry[1] if entry else 0
        if current != mod_revision:
            return defer.succeed(0)
        return self.put(key, value, lease)

    def delete(self, key):
        return defer.succeed(self._delete(key))

    def delete_if(self, key, mod_revision):
        entry = self._data.get(key)
        if entry is None or entry[1] != mod_revision:
            return defer.succeed(False)
        return defer.succeed(self._delete(key))

    def _put(self, key, value, lease):
        if lease is not None and lease not in self._leases:
            raise LeaseNotFound(lease)
        old = self._data.get(key)
        if old is not None and old[2] is not None and old[2] in self._leases:
            self._leases[old[2]].keys.discard(key)
        self.revision += 1
        self._data[key] = (value, self.revision, lease)
        if lease is not None:
            self._leases[lease].keys.add(key)
        self._event("put", key, value)
        return self.revision

    def _delete(self, key):
        entry = self._data.pop(key, None)
        if entry is None:
            return False
        if entry[2] is not None and entry[2] in self._leases:
            self._leases[entry[2]].keys.discard(key)
        self.revision += 1
        self._event("delete", key, b"")
        return True

    # -- leases ---------------------------------------------------------------------------

    def grant(self, ttl):
        lease_id = self._next_lease
        self._next_lease += 1
        timer = self.clock.callLater(ttl, self._expire, lease_id)
        self._leases[lease_id] = _Lease(ttl, timer)
        return defer.succeed(lease_id)

    def refresh(self, lease):
        entry = self._leases.get(lease)
        if entry is None:
            return defer.fail(LeaseNotFound(lease))
        entry.timer.reset(entry.ttl)
        return defer.succeed(entry.ttl)

    def revoke(self, lease):
        entry = self._leases.get(lease)
        if entry is not None:
            entry.timer.cancel()
            self._expire(lease)
        return defer.succeed(None)

    def _expire(self, lease_id):
        entry = self._leases.pop(lease_id, None)
        for key in sorted(entry.keys if entry else ()):
            self._delete(key)

    # -- watches -------------------------------------------------------------------------

    def follow(self, prefix, on_events, on_resync):
        on_resync(self._items(prefix), self.revision)
        watch = _MemoryWatch(self, prefix, on_events, self.revision + 1)
        self._watches.append(watch)
        return defer.succeed(watch)

    def _event(self, kind, key, value):
        if not self._watches:
            return
        self._pending.append((kind, key, value, self.revision))
        if self._flush is None or not self._flush.active():
            self._flush = self.clock.callLater(0, self._deliver)

    def _deliver(self):
        events, self._pending = self._pending, []
        for watch in list(self._watches):
            # Changes the watch's listing already held are not news.
            mine = [e for e in events if e[1].startswith(watch.prefix) and e[3] >= watch.next_revision]
            if mine and watch.running:
                watch.on_events(mine)
