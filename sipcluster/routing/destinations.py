# -*- test-case-name: tests.test_routing_destinations -*-
"""
Destination sets, like Kamailio's dispatcher: named lists of next hops
(each a SIP URI with a weight, a priority and an optional most calls),
one chosen per request by the set's algorithm (round robin, smooth
weighted, consistent hashing, least loaded, priority), and serial failover
to the next destination when a branch times out, fails at the transport or
answers a failover status (a C{failure} stage, like dispatcher's
C{ds_next_dst()} in a failure_route).  Health (up or down) is kept here;
L{sipcluster.routing.probes} changes it.
"""

import hashlib
import json
import math

from twisted.logger import Logger

from sipcluster.cluster.store import StoreFollower
from sipcluster.proxy.forwarding import Target
from sipcluster.proxy.pipeline import DIALOG, FAILURE, Respond, Stage
from sipcluster.schema import NestedKeyError, show
from sipcluster.sip.errors import SIPError
from sipcluster.sip.uri import SipURI, parse_uri

ALGORITHMS = ("round_robin", "weighted", "hash", "least_loaded", "priority")
HASH_KEYS = ("call-id", "from-user", "to-user", "ruri-user")
# Statuses that make a branch try the next destination: the next hop
# (not the callee) failed, or could not be reached in time.
FAILOVER_STATUSES = [408, 500, 502, 503, 504]
SET_KEYS = ("destinations", "algorithm", "hash", "failover_statuses", "max_attempts",
            "branch_timeout_s", "probe_interval_s", "probe_timeout_s", "probe_failures",
            "probe_successes", "probe_alive", "passive", "fallback")
DESTINATION_KEYS = ("uri", "weight", "priority", "max_load")


class Destination:
    """
    One next hop of a set.

    @ivar uri: its L{SipURI}.
    @ivar weight: share of the weighted and hash algorithms (>= 1).
    @ivar priority: lower is preferred: every algorithm chooses among the
        available destinations of the lowest priority present.
    @ivar max_load: most calls at once through this node, 0 for no limit.
    @ivar up: health: True until probes (or live timeouts) say otherwise.
    @ivar active: calls (INVITE dialogs) this node has through it.
    @ivar last_probe: (reactor time, status or None for no answer) of the
        last probe, or None.
    """

    log = Logger()

    def __init__(self, uri, weight=1, priority=0, max_load=0):
        self.uri = uri
        self.weight = weight
        self.priority = priority
        self.max_load = max_load
        self.up = True
        self.failures = 0
        self.successes = 0
        self.active = 0
        self.current = 0
        self.last_probe = None
        self.set = None

    @property
    def key(self):
        return str(self.uri)

    def answered(self, alive):
        """A probe got an answer; C{alive} says whether its status counts."""
        if not alive:
            self.failed()
            return
        self.failures = 0
        self.successes += 1
        if not self.up and self.successes >= self.set.probe_successes:
            self.up = True
            self.log.info("destination {uri} of set {set} is up", uri=str(self.uri),
                          set=self.set.name)

    def failed(self):
        """A probe went unanswered or answered a dead status, or live traffic timed out."""
        self.successes = 0
        self.failures += 1
        if self.up and self.failures >= self.set.probe_failures:
            self.up = False
            self.log.info("destination {uri} of set {set} is down ({n} failures)",
                          uri=str(self.uri), set=self.set.name, n=self.failures)

    def view(self):
        """What a node publishes and C{sipcluster destinations} shows."""
        return {"uri": str(self.uri), "state": "up" if self.up else "down",
                "active": self.active, "weight": self.weight, "priority": self.priority,
                "last_probe": list(self.last_probe) if self.last_probe else None}

    def __repr__(self):
        return "<Destination %s %s>" % (self.uri, "up" if self.up else "down")


class DestinationSet:
    """
    A named set and its policy.

    @ivar max_attempts: most destinations one request tries.
    @ivar branch_timeout: seconds a branch may go unanswered, or None.
    @ivar sets: every set by name (for C{fallback}), filled in by
        L{parse_sets}.
    """

    def __init__(self, name, destinations, algorithm="round_robin", hash_key="call-id",
                 failover_statuses=FAILOVER_STATUSES, max_attempts=None, branch_timeout=None,
                 probe_interval=0, probe_timeout=1.0, probe_failures=2, probe_successes=1,
                 probe_alive=("2xx", "3xx", "4xx"), passive=True, fallback=None):
        self.name = name
        self.destinations = list(destinations)
        for destination in self.destinations:
            destination.set = self
        self.algorithm = algorithm
        self.hash_key = hash_key
        self.failover_statuses = frozenset(failover_statuses)
        self.max_attempts = max_attempts or len(self.destinations)
        self.branch_timeout = branch_timeout or None
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.probe_failures = probe_failures
        self.probe_successes = probe_successes
        self.probe_alive = tuple(probe_alive)
        self.passive = passive
        self.fallback = fallback
        self.sets = {name: self}
        self.calls = None
        self.loads = None
        self._next = 0

    def load(self, destination):
        """
        Calls through C{destination}: this node's, plus those the other
        nodes of the cluster published (L{ClusterLoads}), when it follows them.
        """
        if self.loads is None:
            return destination.active
        return destination.active + self.loads.remote(self.name, destination.key)

    def alive_status(self, status):
        """Whether a probe answered C{status} means the destination is alive."""
        text = str(status)
        return any(entry == text or (entry.endswith("xx") and entry[0] == text[0])
                   for entry in self.probe_alive)

    # -- choosing ------------------------------------------------------------------

    def select(self, request, exclude=()):
        """The destination for C{request}, or None when none is available."""
        candidates = [d for d in self.destinations
                      if d.up and d not in exclude and (not d.max_load or self.load(d) < d.max_load)]
        if not candidates:
            return None
        best = min(d.priority for d in candidates)
        candidates = [d for d in candidates if d.priority == best]
        return getattr(self, "_" + self.algorithm)(request, candidates)

    def _round_robin(self, request, candidates):
        # The next available one after the last chosen, in the set's order,
        # so that a destination coming back takes its turn at once.
        order = self.destinations
        n = len(order)
        start = self._next
        chosen = set(map(id, candidates))
        for step in range(n):
            destination = order[(start + step) % n]
            if id(destination) in chosen:
                self._next = (start + step + 1) % n
                return destination
        return candidates[0]

    def _weighted(self, request, candidates):
        # nginx's smooth weighted round robin: weights 5,1,1 give
        # a a b a c a a, never five in a row.
        total = 0
        best = None
        for destination in candidates:
            destination.current += destination.weight
            total += destination.weight
            if best is None or destination.current > best.current:
                best = destination
        best.current -= total
        return best

    def _hash(self, request, candidates):
        # Rendezvous (highest random weight) hashing: each destination
        # scores the key on its own, so a dead one moves only the keys it
        # had, and weights scale the shares.
        key = self.key_of(request)
        best, best_score = None, None
        for destination in candidates:
            digest = hashlib.blake2b(("%s\x00%s" % (key, destination.uri)).encode(
                "utf-8", "surrogateescape"), digest_size=8).digest()
            unit = (int.from_bytes(digest, "big") + 1) / (2 ** 64 + 1)
            score = -destination.weight / math.log(unit)
            if best_score is None or score > best_score:
                best, best_score = destination, score
        return best

    def key_of(self, request):
        from sipcluster.routing.rules import user_of
        key = self.hash_key
        if key == "call-id":
            return request.call_id or ""
        if key == "from-user":
            return user_of(request.from_.uri)
        if key == "to-user":
            return user_of(request.to.uri)
        return user_of(request.uri)

    def _least_loaded(self, request, candidates):
        # Fewest calls per unit of weight (over the cluster when it
        # follows the others' views); ties go round the set so that an
        # idle set still spreads.
        n = len(self.destinations)
        start = self._next
        index = {id(d): i for i, d in enumerate(self.destinations)}
        best = min(candidates, key=lambda d: (self.load(d) / d.weight,
                                              (index[id(d)] - start) % n))
        self._next = (index[id(best)] + 1) % n
        return best

    def _priority(self, request, candidates):
        return candidates[0]

    # -- a request's attempt --------------------------------------------------------

    def targets(self, context, exclude=()):
        """
        The one target for the request of C{context} (its first attempt
        through this set), or the fallback set's; raises L{Respond} 503
        when no destination is available.
        """
        destination = self.select(context.request, exclude)
        if destination is None:
            if self.fallback is not None:
                return self.sets[self.fallback].targets(context)
            raise Respond(503, "Service Unavailable (no destination of set %s)" % self.name)
        attempt = context.vars.get("routing.attempt")
        if attempt is None or attempt.set is not self:
            attempt = context.vars["routing.attempt"] = Attempt(self)
        return [attempt.target(context, destination)]

    def view(self):
        return {"name": self.name, "algorithm": self.algorithm,
                "destinations": [d.view() for d in self.destinations]}


class Attempt:
    """One request's way through a set: the destinations it tried, in order."""

    __slots__ = ("set", "tried")

    def __init__(self, dset):
        self.set = dset
        self.tried = []

    def target(self, context, destination):
        dset = self.set
        self.tried.append(destination)
        request = context.request
        if dset.calls is not None and request.method == "INVITE" and request.to_tag is None:
            dset.calls.start(request, destination)
        on_failed = None
        if dset.passive and dset.probe_interval:
            # Live traffic that timed out or failed at the transport counts
            # as a failed probe: with probe_failures = 2, two such branches
            # take a destination out before the next probe would have.
            # (Only with probes, which bring it back.)
            on_failed = lambda target, status: destination.failed()  # noqa: E731
        return Target(request.uri, next_hop=destination.uri, timeout=dset.branch_timeout,
                      on_failed=on_failed)


class CallCounter:
    """
    The calls this node has through each destination (least_loaded,
    max_load): counted from the INVITE sent to it until the call fails,
    moves to another destination, or its BYE is answered.

    @ivar calls: (Call-ID, From tag) -> (L{Destination}, when it started).
    """

    def __init__(self, clock=None):
        self.clock = clock
        self.calls = {}

    def _now(self):
        return self.clock.seconds() if self.clock is not None else 0.0

    def start(self, request, destination):
        key = (request.call_id, request.from_tag)
        previous = self.calls.get(key)
        if previous is not None:
            previous[0].active -= 1
        self.calls[key] = (destination, self._now())
        destination.active += 1

    def end(self, request):
        entry = self.calls.pop((request.call_id, request.from_tag), None)
        if entry is None and request.method == "BYE":
            # A BYE from the callee has the tags the other way round.
            entry = self.calls.pop((request.call_id, request.to_tag), None)
        if entry is not None:
            entry[0].active -= 1

    def sweep(self, max_age):
        """
        Forget calls older than C{max_age} seconds (cluster.dialog_max_s):
        their BYE never came this way, and they would hold a destination's
        count up for ever.
        """
        limit = self._now() - max_age
        old = [key for key, (_, started) in self.calls.items() if started < limit]
        for key in old:
            self.calls.pop(key)[0].active -= 1
        return len(old)


class DestinationFailover(Stage):
    """
    Serial failover (a C{failure} stage): when the branch sent to a
    destination failed with a failover status (its timeout and transport
    errors included, answered 408 and 503 by the response context), the
    request goes to the next destination of the set chosen by the same
    algorithm, up to the set's max_attempts; the caller hears only the
    final outcome.  Also a C{dialog} stage ending the count of calls.
    """

    name = "routing-failover"
    points = (FAILURE, DIALOG)
    needs_transactions = True

    def __init__(self, calls):
        self.calls = calls

    def failure(self, context, responses):
        attempt = context.vars.get("routing.attempt")
        if attempt is None or not responses:
            return None
        dset = attempt.set
        if responses[-1].status not in dset.failover_statuses:
            return None
        destination = None
        if len(attempt.tried) < dset.max_attempts:
            destination = dset.select(context.request, exclude=attempt.tried)
        if destination is not None:
            return [attempt.target(context, destination)]
        if dset.fallback is None:
            return None
        # The set is spent: its standby set takes over.
        try:
            return dset.sets[dset.fallback].targets(context)
        except Respond:
            return None

    def dialog_confirmed(self, request, response):
        pass

    def dialog_ended(self, request, response):
        self.calls.end(request)

    def call_failed(self, request, response, started):
        self.calls.end(request)


class PublishedView:
    """
    Publishes what this node sees of its sets (each destination's state,
    active calls, last probe) at C{<prefix>/destinations/<node-id>}, under
    the node's membership lease so that a dead node's view goes with it;
    C{sipcluster destinations} reads every node's.
    """

    def __init__(self, store, membership, prefix, node_id, sets, clock):
        self.store = store
        self.membership = membership
        self.key = "%s/destinations/%s" % (prefix, node_id)
        self.node_id = node_id
        self.sets = sets
        self.clock = clock
        self.published = 0

    def record(self):
        return {"node": self.node_id, "time": self.clock.seconds(),
                "sets": [dset.view() for dset in self.sets.values()]}

    def publish(self):
        lease = self.membership.lease
        if lease is None:
            return None  # not a member yet: the view would outlive us
        self.published += 1
        value = json.dumps(self.record(), sort_keys=True).encode("utf-8")
        return self.store.put(self.key, value, lease).addErrback(lambda f: None)


class ClusterLoads(StoreFollower):
    """
    The calls the other nodes of the cluster have through each destination,
    from the views they publish (L{PublishedView}, every 2 s), so that
    least_loaded and max_load count the whole cluster's calls.
    """

    def __init__(self, store, prefix, node_id):
        self.store = store
        self.prefix = "%s/destinations/" % prefix
        self.node_id = node_id
        self.others = {}

    def start(self):
        return self._follow(self.prefix)


    def _resync(self, items, revision):
        self.others = {}
        for key, value, mod in items:
            self._put(key, value)

    def _events(self, events):
        for kind, key, value, mod in events:
            if kind == "delete":
                self.others.pop(key[len(self.prefix):], None)
            else:
                self._put(key, value)

    def _put(self, key, value):
        node = key[len(self.prefix):]
        if node == self.node_id:
            return
        try:
            record = json.loads(value)
            self.others[node] = {(dset["name"], d["uri"]): int(d.get("active", 0))
                                 for dset in record["sets"] for d in dset["destinations"]}
        except (ValueError, KeyError, TypeError):
            self.others.pop(node, None)

    def remote(self, set_name, uri):
        """The calls other nodes last published through C{uri} of C{set_name}."""
        key = (set_name, uri)
        return sum(loads.get(key, 0) for loads in self.others.values())


# -- configuration ------------------------------------------------------------------

def _number(table, key, path, default, minimum, integer=False):
    value = table.get(key, default)
    kind = int if integer else (int, float)
    if not isinstance(value, kind) or isinstance(value, bool) or value < minimum:
        raise NestedKeyError("%s.%s" % (path, key), "expected %s of at least %s, got %s" % (
            "an integer" if integer else "a number", minimum, show(value)))
    return value


def parse_destination(value, path):
    if isinstance(value, str):
        value = {"uri": value}
    if not isinstance(value, dict) or "uri" not in value:
        raise NestedKeyError(path, 'expected a URI or a table with uri (and weight, priority, '
                             'max_load), got %s' % show(value))
    for key in value:
        if key not in DESTINATION_KEYS:
            raise NestedKeyError("%s.%s" % (path, key), "unknown key (known: %s)" % ", ".join(
                DESTINATION_KEYS))
    try:
        uri = parse_uri(value["uri"]) if isinstance(value["uri"], str) else None
    except SIPError:
        uri = None
    if not isinstance(uri, SipURI):
        raise NestedKeyError(path + ".uri", "expected a sip: or sips: URI, got %s" % show(
            value["uri"]))
    return Destination(uri, _number(value, "weight", path, 1, 1, True),
                       _number(value, "priority", path, 0, 0, True),
                       _number(value, "max_load", path, 0, 0, True))


def parse_set(name, table):
    path = "." + name
    if not isinstance(table, dict):
        raise NestedKeyError(path, "expected a table [routing.sets.%s]" % name)
    for key in table:
        if key not in SET_KEYS:
            raise NestedKeyError("%s.%s" % (path, key), "unknown key (known: %s)" % ", ".join(
                SET_KEYS))
    entries = table.get("destinations")
    if not isinstance(entries, list) or not entries:
        raise NestedKeyError(path + ".destinations", "expected at least one destination")
    destinations = [parse_destination(v, "%s.destinations[%d]" % (path, i))
                    for i, v in enumerate(entries)]
    algorithm = table.get("algorithm", "round_robin")
    if algorithm not in ALGORITHMS:
        raise NestedKeyError(path + ".algorithm", "expected one of %s, got %s" % (
            ", ".join(ALGORITHMS), show(algorithm)))
    hash_key = table.get("hash", "call-id")
    if hash_key not in HASH_KEYS:
        raise NestedKeyError(path + ".hash", "expected one of %s, got %s" % (
            ", ".join(HASH_KEYS), show(hash_key)))
    statuses = table.get("failover_statuses", FAILOVER_STATUSES)
    if not isinstance(statuses, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 300 <= s <= 699 for s in statuses):
        raise NestedKeyError(path + ".failover_statuses", "expected a list of statuses from "
                             "300 to 699, got %s" % show(statuses))
    alive = table.get("probe_alive", ["2xx", "3xx", "4xx"])
    if not isinstance(alive, list) or not alive or not all(
            isinstance(a, str) and len(a) == 3 and a[0] in "123456"
            and (a[1:] == "xx" or a.isdigit()) for a in alive):
        raise NestedKeyError(path + ".probe_alive", 'expected a list of statuses or classes '
                             'like "2xx", "404", got %s' % show(alive))
    interval = _number(table, "probe_interval_s", path, 0, 0)
    timeout = _number(table, "probe_timeout_s", path, min(1.0, interval) if interval else 1.0, 0.01)
    if interval and timeout > interval:
        raise NestedKeyError(path + ".probe_timeout_s", "expected at most probe_interval_s "
                             "(%s), got %s" % (interval, show(timeout)))
    passive = table.get("passive", True)
    if not isinstance(passive, bool):
        raise NestedKeyError(path + ".passive", "expected true or false")
    fallback = table.get("fallback")
    if fallback is not None and not isinstance(fallback, str):
        raise NestedKeyError(path + ".fallback", "expected the name of a set")
    return DestinationSet(
        name, destinations, algorithm, hash_key, statuses,
        max_attempts=_number(table, "max_attempts", path, len(destinations), 1, True),
        branch_timeout=_number(table, "branch_timeout_s", path, 0, 0),
        probe_interval=interval, probe_timeout=timeout,
        probe_failures=_number(table, "probe_failures", path, 2, 1, True),
        probe_successes=_number(table, "probe_successes", path, 1, 1, True),
        probe_alive=alive, passive=passive, fallback=fallback)


def parse_sets(tables):
    """
    name -> L{DestinationSet} of the [routing.sets.NAME] tables.

    @raise NestedKeyError: naming the set and key (".gw.algorithm").
    """
    sets = {}
    for name, table in tables.items():
        sets[name] = parse_set(name, table)
    for name, dset in sets.items():
        dset.sets = sets
        seen, fallback = {name}, dset.fallback
        while fallback is not None:
            if fallback not in sets:
                raise NestedKeyError(".%s.fallback" % name, "expected the name of a set of "
                                     "routing.sets, got %s" % show(fallback))
            if fallback in seen:
                raise NestedKeyError(".%s.fallback" % name, "fallback sets loop back to %s"
                                     % show(fallback))
            seen.add(fallback)
            fallback = sets[fallback].fallback
    return sets
