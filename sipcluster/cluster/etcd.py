# -*- test-case-name: tests.cluster.test_etcd -*-
"""
The one module that talks to etcd.

The etcd3 gRPC client blocks, so every call runs on a dedicated thread pool
and comes back to the reactor as a Deferred; every call has a timeout (set
on the client), so a hung etcd cannot hold a thread, or a shutdown, for
longer than that.  The client is created in L{EtcdStore.start}, after twistd
has forked (a client made before fork is broken in the child).

Watches do not survive an etcd restart: the client's watch thread delivers
one error, then silently drops events and spins.  L{PrefixWatch} closes the
client on that error (which stops the spin), reconnects with backoff, and
watches again from the last revision it saw + 1, re-listing the prefix when
that revision has been compacted away.  Calls go to one endpoint at a time;
one that fails two calls in a row (its member died, hangs or lost quorum) is
left for the next, and the watches follow.

Facts behind these choices: ../shared/notes/dependencies.md.
"""

# First: etcd3 0.12 loads only on protobuf's pure-Python backend, chosen
# when protobuf is first imported (stops the process, in one line, if not).
from sipcluster.cluster import protobuf  # noqa: F401

import etcd3  # noqa: E402
import etcd3.events  # noqa: E402
import etcd3.exceptions  # noqa: E402
import etcd3.etcdrpc  # noqa: E402
import etcd3.utils  # noqa: E402
import grpc  # noqa: E402
from twisted.internet import defer, threads  # noqa: E402
from twisted.logger import Logger  # noqa: E402
from twisted.python.threadpool import ThreadPool  # noqa: E402

from zope.interface import implementer  # noqa: E402

from sipcluster.cluster.store import IClusterStore, LeaseNotFound, StoreUnavailable  # noqa: E402
from sipcluster.schema import parse_endpoint  # noqa: E402


class EtcdUnavailable(StoreUnavailable):
    """etcd could not be reached, or did not answer in time."""


_FAILURES = (etcd3.exceptions.ConnectionFailedError, etcd3.exceptions.ConnectionTimeoutError,
             etcd3.exceptions.InternalServerError, grpc.RpcError)


# Keys per range read: a gRPC message may not exceed 4 MiB, which one read
# of a few tens of thousands of registrations would.
PAGE = 1000


def read_prefix(client, prefix, page=PAGE):
    """
    Every (key, value, mod_revision) under C{prefix} and the revision they
    were read at, in pages of C{page} keys all read at that one revision
    (blocking: call it in a thread, or from a command).
    """
    start = prefix.encode("utf-8")
    end = etcd3.utils.increment_last_byte(start)
    revision = None
    items = []
    while True:
        # Built by hand: etcd3 0.12 accepts limit and revision in its range
        # calls but never puts them in the request.
        request = etcd3.etcdrpc.RangeRequest(key=start, range_end=end, limit=page,
                                             revision=revision or 0)
        response = client.kvstub.Range(request, client.timeout, credentials=client.call_credentials,
                                       metadata=client.metadata)
        if revision is None:
            revision = response.header.revision
        items.extend((kv.key.decode("utf-8"), kv.value, kv.mod_revision) for kv in response.kvs)
        if not response.more or not response.kvs:
            return items, revision
        start = response.kvs[-1].key + b"\x00"


@implementer(IClusterStore)
class EtcdStore:
    """
    Asynchronous access to one etcd cluster, through one of its members'
    endpoints at a time.

    @ivar timeout: seconds any one call may take.
    """

    log = Logger()

    def __init__(self, reactor, endpoints=("http://127.0.0.1:2379",), timeout=2.0, threads=8):
        self.reactor = reactor
        self.endpoints = [parse_endpoint(e) for e in endpoints]
        self.timeout = timeout
        self.threads = threads
        self.pool = None
        self._client = None
        self._endpoint_index = 0
        self._watches = []
        self.reconnects = 0
        self._client_failures = 0

    # -- lifecycle ------------------------------------------------------------

    def start(self):
        """Start the thread pool and create the client (after any fork)."""
        self.pool = ThreadPool(minthreads=1, maxthreads=self.threads, name="etcd")
        self.pool.start()
        self._client = self._new_client()
        self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)

    def _new_client(self):
        host, port = self.endpoints[self._endpoint_index % len(self.endpoints)]
        return etcd3.client(host=host, port=port, timeout=self.timeout)

    def stop(self):
        """
        Stop watches, close the client, stop the pool.  Threads blocked on
        a hung etcd finish within the call timeout.
        """
        for watch in list(self._watches):
            watch.stop()
        client, self._client = self._client, None
        if client is not None:
            close_client(client)
        if self.pool is not None:
            pool, self.pool = self.pool, None
            pool.stop()

    def reconnect(self):
        """Drop the current client and make a new one (next endpoint)."""
        old, self._client = self._client, None
        if old is not None:
            close_client(old)
        self._endpoint_index += 1
        self.reconnects += 1
        if self.pool is not None:
            self._client = self._new_client()

    # -- calls ---------------------------------------------------------------

    def _call(self, fn, *args, **kwargs):
        if self.pool is None or self._client is None:
            return defer.fail(EtcdUnavailable("store not started"))
        client = self._client

        def run():
            try:
                return fn(client, *args, **kwargs)
            except grpc.RpcError as e:
                if _lease_not_found(e):
                    raise LeaseNotFound(_describe(e)) from None
                raise EtcdUnavailable(_describe(e)) from None
            except _FAILURES as e:
                raise EtcdUnavailable(_describe(e)) from None
            except ValueError as e:
                # A watch error closed this client a moment ago; the
                # reactor is about to replace it.
                if "closed channel" in str(e) or "Channel closed" in str(e):
                    raise EtcdUnavailable("client reconnecting") from None
                raise
        d = threads.deferToThreadPool(self.reactor, self.pool, run)
        d.addCallbacks(self._answered, self._unanswered, errbackArgs=(client,))
        return d

    # Calls in a row that one endpoint may fail before the next is tried.
    FAILOVER_AFTER = 2

    def _answered(self, result):
        self._client_failures = 0
        return result

    def _unanswered(self, failure, client):
        """
        An endpoint that keeps failing calls (its member died, hangs, or
        lost quorum) is left for the next one; a watch on it may not notice
        (a paused member breaks no stream).
        """
        if failure.check(EtcdUnavailable) and client is self._client and len(self.endpoints) > 1:
            self._client_failures += 1
            if self._client_failures >= self.FAILOVER_AFTER:
                self._client_failures = 0
                self.log.warn("etcd at {endpoint} is not answering ({why}); trying the next endpoint",
                              endpoint=self.endpoint, why=failure.getErrorMessage())
                self.reconnect()
        return failure

    @property
    def endpoint(self):
        """The host:port calls go to now."""
        return "%s:%d" % self.endpoints[self._endpoint_index % len(self.endpoints)]

    def get(self, key):
        """A Deferred firing with the value (bytes) of C{key}, or None."""
        return self._call(lambda c: c.get(key)[0])

    def get_prefix(self, prefix):
        """
        A Deferred firing with (items, revision): items a list of (key,
        value, mod_revision), revision the store revision they were read at.
        """
        return self._call(read_prefix, prefix)

    def put(self, key, value, lease=None):
        """A Deferred firing with the revision of the write."""
        return self._call(lambda c: c.put(key, value, lease=lease).header.revision)

    def delete(self, key):
        return self._call(lambda c: c.delete(key))

    def grant(self, ttl):
        """A Deferred firing with the id of a new lease of C{ttl} seconds."""
        return self._call(lambda c: c.lease(ttl).id)

    def refresh(self, lease_id):
        """Keep a lease alive; fails with KeyError when it has expired."""
        def run(client):
            responses = list(client.refresh_lease(lease_id))
            if not responses or responses[0].TTL <= 0:
                raise LeaseNotFound(lease_id)
            return responses[0].TTL
        return self._call(run)

    def revoke(self, lease_id):
        return self._call(lambda c: c.revoke_lease(lease_id))

    def create(self, key, value, lease=None):
        """
        Write C{key} only if it does not exist (one transaction): a
        Deferred firing with True when written.
        """
        def run(client):
            ok, _ = client.transaction(
                compare=[client.transactions.version(key) == 0],
                success=[client.transactions.put(key, value, lease)], failure=[])
            return ok
        return self._call(run)

    def replace(self, key, value, mod_revision, lease=None):
        """
        Write C{key} only if it was last modified at C{mod_revision} (0: it
        must not exist): compare-and-swap, a Deferred firing with the
        revision of the write, or 0 when C{key} had changed.
        """
        def run(client):
            compare = (client.transactions.version(key) == 0 if mod_revision == 0
                       else client.transactions.mod(key) == mod_revision)
            ok, responses = client.transaction(
                compare=[compare], success=[client.transactions.put(key, value, lease)], failure=[])
            if not ok:
                return 0
            return responses[0].response_put.header.revision
        return self._call(run)

    def delete_if(self, key, mod_revision):
        """Delete C{key} only if last modified at C{mod_revision}."""
        def run(client):
            ok, _ = client.transaction(
                compare=[client.transactions.mod(key) == mod_revision],
                success=[client.transactions.delete(key)], failure=[])
            return ok
        return self._call(run)

    def follow(self, prefix, on_events, on_resync):
        """
        Read everything under C{prefix} (handed to C{on_resync(items,
        revision)}), then watch it from the next revision: the way every
        cache of etcd state starts.  A Deferred firing with the watch.
        """
        d = self.get_prefix(prefix)

        def listed(result):
            items, revision = result
            on_resync(items, revision)
            return self.watch_prefix(prefix, on_events, on_resync, revision + 1)
        return d.addCallback(listed)

    def watch_prefix(self, prefix, on_events, on_resync, start_revision):
        """
        Watch C{prefix} from C{start_revision}; see L{PrefixWatch}.
        """
        watch = PrefixWatch(self, prefix, on_events, on_resync, start_revision)
        self._watches.append(watch)
        watch.start()
        return watch


def _lease_not_found(error):
    try:
        return error.code() == grpc.StatusCode.NOT_FOUND and "lease not found" in error.details()
    except Exception:
        return False


def _describe(error):
    if isinstance(error, grpc.RpcError):
        try:
            return "%s: %s" % (error.code().name, error.details())
        except Exception:
            pass
    return "%s: %s" % (type(error).__name__, error)


class PrefixWatch:
    """
    Events under a prefix, delivered in the reactor thread, surviving etcd
    restarts.

    @ivar on_events: called with a list of (kind, key, value, mod_revision),
        kind "put" or "delete".
    @ivar on_resync: called with (items, revision) after a re-list, when
        events were lost (the revision to resume from was compacted).
    @ivar next_revision: the first revision not yet delivered.
    """

    log = Logger()
    BACKOFF = (0.2, 0.5, 1.0, 2.0, 4.0)

    def __init__(self, store, prefix, on_events, on_resync, start_revision):
        self.store = store
        self.prefix = prefix
        self.on_events = on_events
        self.on_resync = on_resync
        self.next_revision = start_revision
        self.running = False
        self.restarts = 0
        self._failures = 0
        self._watch_id = None
        self._client = None
        self._retry = None

    def start(self):
        self.running = True
        self._begin()

    def _begin(self):
        if not self.running or self.store.pool is None:
            return
        client = self.store._client
        self._client = client
        d = threads.deferToThreadPool(
            self.store.reactor, self.store.pool, client.add_watch_prefix_callback,
            self.prefix, lambda response: self._from_thread(client, response),
            start_revision=self.next_revision)
        d.addCallbacks(self._started, self._failed)

    def _started(self, watch_id):
        self._watch_id = watch_id
        self._failures = 0
        if not self.running:
            self._cancel_current()  # stopped while etcd was creating it

    def _from_thread(self, client, response):
        # The client's watch thread: nothing here but handing over.
        if isinstance(response, etcd3.exceptions.RevisionCompactedError):
            # Not a broken connection: the events we wanted are gone, so
            # re-list (etcd3 cancels this watch itself).
            self.store.reactor.callFromThread(self._resync)
            return
        if isinstance(response, Exception):
            # Close at once: after an error the watch thread spins.
            close_client(client)
            self.store.reactor.callFromThread(self._failed, response)
            return
        compacted = getattr(response, "compact_revision", 0)
        events = []
        for event in response.events:
            kind = "delete" if isinstance(event, etcd3.events.DeleteEvent) else "put"
            events.append((kind, event.key.decode("utf-8"), event.value, event.mod_revision))
        self.store.reactor.callFromThread(self._deliver, events, compacted)

    def _deliver(self, events, compacted):
        if not self.running:
            return
        if compacted:
            self._resync()
            return
        fresh = [e for e in events if e[3] >= self.next_revision]
        if fresh:
            self.next_revision = max(e[3] for e in fresh) + 1
            self.on_events(fresh)

    def _failed(self, failure):
        if not self.running:
            return
        error = getattr(failure, "value", failure)
        if isinstance(error, etcd3.exceptions.RevisionCompactedError):
            self._resync()
            return
        self._failures += 1
        delay = self.BACKOFF[min(self._failures, len(self.BACKOFF)) - 1]
        self.log.info("etcd watch on {prefix} lost ({why}); again in {delay}s",
                      prefix=self.prefix, why=_describe(error), delay=delay)
        if self.store._client is self._client:
            self.store.reconnect()
        self._retry = self.store.reactor.callLater(delay, self._restart)

    def _restart(self):
        self._retry = None
        self.restarts += 1
        self._begin()

    def _resync(self):
        """Events were compacted away: re-list and carry on after the list."""
        d = self.store.get_prefix(self.prefix)

        def listed(result):
            if not self.running:
                return  # stopped while it listed: it hears nothing more
            items, revision = result
            self.next_revision = revision + 1
            self.on_resync(items, revision)
            self._cancel_current()
            self._begin()
        d.addCallbacks(listed, self._failed)

    def _cancel_current(self):
        client, watch_id = self._client, self._watch_id
        self._watch_id = None
        if client is not None and watch_id is not None and self.store.pool is not None:
            self.store.pool.callInThread(_quietly, client.cancel_watch, watch_id)

    def stop(self):
        self.running = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._cancel_current()
        if self in self.store._watches:
            self.store._watches.remove(self)


class _RetiredStub:
    """
    Put in place of a closed client's watch stub.  etcd3's watch thread
    loops forever, opening a new stream after every error; on a closed
    channel that raises, and the thread dies printing a traceback.  Raising
    SystemExit instead ends it the way threading treats as quiet.
    """

    def Watch(self, *args, **kwargs):
        raise SystemExit()


def close_client(client):
    """Close an etcd3 client, letting its watch thread (if any) end quietly."""
    watcher = getattr(client, "watcher", None)
    if watcher is not None:
        watcher._watch_stub = _RetiredStub()
    try:
        client.close()
    except Exception:
        pass


def _quietly(fn, *args):
    try:
        fn(*args)
    except Exception:
        pass
