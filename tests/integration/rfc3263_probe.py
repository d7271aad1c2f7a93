"""
Run L{sipcluster.routing.rfc3263.SIPResolver} on the real reactor against
one DNS server, for tests/integration/test_rfc3263_dnsmasq.py, in a process
of its own (a reactor runs once per process; the tests' process has none).

    python -m tests.integration.rfc3263_probe SERVER:PORT PLAN_JSON

PLAN_JSON is a list of steps: C{{"resolve": URI, "transports": [...],
"repeat": N}} (resolve N times in a row, each after the previous fired) or
C{{"sleep": SECONDS}}.  Prints one JSON object: per resolve step, the
candidates of each attempt (or the error), the DNS questions that step
sent, and whether the cache alone could answer it afterwards.

The system resolver is never used: the twisted.names client is given the
server only, and socket.getaddrinfo is made to fail in this process.
"""

import json
import random
import socket
import sys


def _no_system_resolver(*args, **kwargs):
    raise AssertionError("the system resolver was used: getaddrinfo%r" % (args,))


socket.getaddrinfo = _no_system_resolver

from twisted.internet import defer, task  # noqa: E402

from sipcluster.routing.rfc3263 import ResolutionFailed, SIPResolver, build_dns_resolver  # noqa: E402
from sipcluster.sip.uri import parse_uri  # noqa: E402


async def run(reactor, server, plan):
    dns_resolver = build_dns_resolver([server], 2.0, reactor)
    assert dns_resolver.resolv is None and len(dns_resolver.servers) == 1
    resolver = SIPResolver(dns_resolver, reactor, negative_ttl=30, random=random.Random(5))
    out = []
    for step in plan:
        if "sleep" in step:
            await task.deferLater(reactor, step["sleep"], lambda: None)
            out.append({"slept": step["sleep"]})
            continue
        uri = parse_uri(step["resolve"])
        transports = tuple(step.get("transports", ("udp", "tcp")))
        before = resolver.queries
        attempts = []
        for _ in range(step.get("repeat", 1)):
            try:
                peers = await resolver.resolve(uri, transports)
            except ResolutionFailed as e:
                attempts.append({"error": str(e), "name": e.name, "problems": e.problems})
            else:
                attempts.append([list(p) for p in peers])
        try:
            cached = resolver.cached_peers(uri, transports)
        except ResolutionFailed:
            cached = "failed"
        out.append({"uri": step["resolve"], "attempts": attempts,
                    "queries": resolver.queries - before,
                    "cached": cached is not None})
    print(json.dumps(out))


def main(reactor, server, plan):
    return defer.ensureDeferred(run(reactor, server, json.loads(plan)))


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
