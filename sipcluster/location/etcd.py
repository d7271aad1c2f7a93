# -*- test-case-name: tests.cluster.test_location_etcd -*-
"""
The location service shared by every node of a cluster, in etcd.

Layout: one key per address-of-record, C{<prefix>/aor/<aor>}, holding the
JSON list of its bindings.  A change is a compare-and-swap on the key's
revision, retried on conflict, so concurrent REGISTERs for one AOR on
different nodes never lose a binding.  Keys expire through leases shared by
every key expiring in the same time bucket (BUCKET seconds), so 100,000
bindings cost a handful of leases, not 100,000.  Bindings that expire before
their key are filtered out when read.

Every node keeps the whole table in memory, fed by a watch, so a lookup for
an INVITE never waits on etcd; when etcd is away lookups go on from that
cache, and updates fail (the registrar then answers 503, never a 200 that
was not stored).
"""

import json
import random

from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.logger import Logger
from zope.interface import implementer

from sipcluster.cluster.store import LeaseBuckets, StoreUnavailable
from sipcluster.location.interface import Binding, ILocationService
from sipcluster.sip.errors import SIPError
from sipcluster.sip.uri import parse_uri

BUCKET = 300  # seconds of expiry time sharing one lease
MARGIN = 30   # a lease outlives its bucket by this much


def encode(bindings):
    return json.dumps([{
        "contact": str(b.contact), "expires_at": b.expires_at, "q": b.q, "call_id": b.call_id,
        "cseq": b.cseq, "path": b.path, "received": list(b.received) if b.received else None,
        "instance": b.instance, "reg_id": b.reg_id, "node": b.node,
    } for b in bindings], sort_keys=True).encode("utf-8")


def decode(aor, value):
    """Bindings from a stored value; unreadable entries are skipped."""
    try:
        items = json.loads(value.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return []
    out = []
    for item in items if isinstance(items, list) else ():
        try:
            out.append(Binding(
                aor, parse_uri(item["contact"]), float(item["expires_at"]), float(item.get("q", 1.0)),
                item.get("call_id", ""), int(item.get("cseq", 0)), item.get("path") or (),
                tuple(item["received"]) if item.get("received") else None,
                item.get("instance"), item.get("reg_id"), item.get("node")))
        except (KeyError, TypeError, ValueError, SIPError):
            continue
    return out


@implementer(ILocationService)
class EtcdLocationService:
    """
    @ivar store: an L{EtcdStore}.
    @ivar ready: whether the cache has been loaded once.
    """

    log = Logger()
    RETRIES = 8
    PURGE_BATCH = 1000

    def __init__(self, store, clock, prefix="/sipcluster"):
        self.store = store
        self.clock = clock
        self.prefix = prefix.rstrip("/") + "/aor/"
        self._cache = {}       # aor -> (bindings, mod_revision)
        self._leases = LeaseBuckets(store, clock, BUCKET, MARGIN)
        self._locks = {}       # aor -> DeferredLock serializing its updates
        self._watch = None
        self.ready = False
        self.conflicts = 0
        self.purged = 0

    # -- start and the watch-fed cache -----------------------------------------

    def start(self):
        """Load every binding, then follow changes.  A Deferred."""
        started = self.clock.seconds()

        def following(watch):
            self._watch = watch
            self.ready = True
            self.log.info("loaded {count} addresses-of-record from etcd in {seconds:.2f}s",
                          count=len(self._cache), seconds=self.clock.seconds() - started)
        return self.store.follow(self.prefix, self._events, self._resync).addCallback(following)

    def stop(self):
        if self._watch is not None:
            self._watch.stop()
            self._watch = None

    def _key(self, aor):
        return self.prefix + aor

    def _resync(self, items, revision):
        cache = {}
        for key, value, mod in items:
            aor = key[len(self.prefix):]
            cache[aor] = (decode(aor, value), mod)
        self._cache = cache

    def _events(self, events):
        for kind, key, value, mod in events:
            aor = key[len(self.prefix):]
            current = self._cache.get(aor)
            if current is not None and current[1] > mod:
                continue  # we already hold something newer (our own write)
            if kind == "delete":
                self._cache.pop(aor, None)
            else:
                self._cache[aor] = (decode(aor, value), mod)

    # -- ILocationService -----------------------------------------------------------

    def lookup(self, aor):
        entry = self._cache.get(aor)
        if entry is None:
            return []
        now = self.clock.seconds()
        found = [b for b in entry[0] if b.expires_at > now]
        found.sort(key=lambda b: -b.q)
        return found

    def bindings(self, aor):
        return defer.succeed(self.lookup(aor))

    def all_bindings(self):
        now = self.clock.seconds()
        for bindings, _ in list(self._cache.values()):
            for binding in bindings:
                if binding.expires_at > now:
                    yield binding

    @property
    def aors(self):
        return len(self._cache)

    def update(self, aor, changes):
        """
        Apply C{changes} to C{aor} with compare-and-swap, retrying on
        conflict with a fresh read.  Fires with the stored bindings once
        etcd committed them, or fails with L{StoreUnavailable}: then nothing
        may be acknowledged.

        Updates of one AOR are serialized on this node, so only other nodes
        contend for its key.
        """
        lock = self._locks.get(aor)
        if lock is None:
            lock = self._locks[aor] = defer.DeferredLock()
        d = lock.run(self._update, aor, changes)

        def release(result):
            if not lock.locked and not lock.waiting and self._locks.get(aor) is lock:
                del self._locks[aor]
            return result
        return d.addBoth(release)

    @defer.inlineCallbacks
    def _update(self, aor, changes):
        key = self._key(aor)
        entry = self._cache.get(aor)
        current, revision = entry if entry is not None else ([], 0)
        for _ in range(self.RETRIES):
            merged = self._merge(current, changes)
            if merged:
                written = yield self._leases.write(
                    max(b.expires_at for b in merged),
                    lambda lease: self.store.replace(key, encode(merged), revision, lease))
                if written:
                    # Readers on this node see it at once; the watch will
                    # bring the same revision and be ignored.
                    self._cache[aor] = (merged, written)
                    return self.lookup(aor)
            elif revision:
                if (yield self.store.delete_if(key, revision)):
                    self._cache.pop(aor, None)
                    return []
            else:
                return []  # nothing stored, nothing to store
            self.conflicts += 1
            # Another node won the race: back off a little, re-read, merge again.
            yield deferLater(self.clock, random.uniform(0.001, 0.02), lambda: None)
            current, revision = yield self._read(aor)
        raise StoreUnavailable("too many conflicting updates of %s" % aor)

    def _merge(self, current, changes):
        now = self.clock.seconds()
        merged = {str(b.contact): b for b in current if b.expires_at > now}
        for binding in changes:
            if binding.expires_at <= now:
                merged.pop(str(binding.contact), None)
            else:
                merged[str(binding.contact)] = binding
        return list(merged.values())

    @defer.inlineCallbacks
    def _read(self, aor):
        items, _ = yield self.store.get_prefix(self._key(aor))
        for key, value, mod in items:
            if key == self._key(aor):
                return decode(aor, value), mod
        return [], 0

    def sweep(self, purge=False):
        """
        Expired bindings leave the cache.  Their keys leave etcd by lease,
        but a key lives as long as its longest binding: with C{purge} (the
        leader's duty, one node of the cluster) the records holding expired
        bindings are rewritten without them, or deleted, at most
        PURGE_BATCH a sweep, the others at the next sweeps.  Returns how
        many bindings left the cache (or are leaving it, purged).
        """
        now = self.clock.seconds()
        removed = 0
        purging = 0
        for aor, (bindings, mod) in list(self._cache.items()):
            alive = [b for b in bindings if b.expires_at > now]
            if len(alive) == len(bindings):
                continue
            if purge and purging >= self.PURGE_BATCH:
                # Kept for a later sweep (lookups skip expired bindings):
                # dropped from the cache, it would never be purged.
                continue
            removed += len(bindings) - len(alive)
            if purge:
                # The update rewrites etcd and then the cache, with CAS.
                purging += 1
                self.update(aor, []).addErrback(self._purge_failed, aor)
            elif not alive:
                del self._cache[aor]
            else:
                self._cache[aor] = (alive, mod)
        self.purged += purging
        return removed

    def _purge_failed(self, failure, aor):
        self.log.debug("cannot purge expired bindings of {aor}: {why}", aor=aor,
                       why=failure.getErrorMessage())
