"""
Cost of an RFC 3263 next-hop lookup for a cached name (not a test): what
L{sipcluster.routing.rfc3263.SIPResolver} adds per request once the cache
holds the name's NAPTR, SRV, A and AAAA answers.  The DNS is the counting
fake resolver of tests/test_rfc3263.py; the run fails if the timed loop
asks it anything (the goal: no DNS question on the hot path).

    .venv/bin/python bench/dns_lookup.py [--seconds N]

Prints microseconds of CPU (best of three rounds) per resolve for each URI
shape, through resolve() (an already fired Deferred) and cached_peers() (no
Deferred).
"""

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import reactor  # noqa: E402

from sipcluster.routing.rfc3263 import SIPResolver  # noqa: E402
from sipcluster.sip.uri import parse_uri  # noqa: E402
from tests.test_rfc3263 import FakeDNS  # noqa: E402


def zone():
    fake = FakeDNS(soa_minimum=3600)
    # srv.example.test: no NAPTR, two weighted SRV targets over UDP, one over TCP.
    fake.a("srv.example.test", "192.0.2.99")
    fake.srv("_sip._udp.srv.example.test", 10, 60, 5060, "n1.example.test")
    fake.srv("_sip._udp.srv.example.test", 10, 40, 5060, "n2.example.test")
    fake.srv("_sip._tcp.srv.example.test", 20, 0, 5060, "n3.example.test")
    # naptr.example.test: NAPTR to TCP then UDP SRV.
    fake.naptr("naptr.example.test", 10, 10, "SIP+D2T", "_sip._tcp.naptr.example.test")
    fake.naptr("naptr.example.test", 10, 20, "SIP+D2U", "_sip._udp.naptr.example.test")
    fake.srv("_sip._tcp.naptr.example.test", 0, 0, 5060, "n1.example.test")
    fake.srv("_sip._udp.naptr.example.test", 0, 0, 5060, "n2.example.test")
    for n in (1, 2, 3):
        fake.a("n%d.example.test" % n, "192.0.2.%d" % n)
        fake.aaaa("n%d.example.test" % n, "2001:db8::%d" % n)
    return fake


CASES = [
    ("numeric host (no lookup)", "sip:bob@192.0.2.10"),
    ("explicit port (A/AAAA)", "sip:bob@n1.example.test:5060"),
    ("no NAPTR, SRV udp+tcp, 3 targets", "sip:bob@srv.example.test"),
    ("NAPTR tcp+udp, 2 SRV targets", "sip:bob@naptr.example.test"),
]


def measure(call, seconds, rounds=3):
    """Microseconds of CPU (process time: the machine is shared) per call, best of C{rounds}."""
    best = None
    for _ in range(rounds):
        n = 0
        start = time.process_time()
        deadline = start + seconds / rounds
        while True:
            for _ in range(1000):
                call()
            n += 1000
            now = time.process_time()
            if now >= deadline:
                break
        us = (now - start) / n * 1e6
        best = us if best is None else min(best, us)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    fake = zone()
    resolver = SIPResolver(fake, reactor, random=random.Random(1))
    print("| next hop | candidates | resolve() us | cached_peers() us |")
    print("| --- | --- | --- | --- |")
    for label, text in CASES:
        uri = parse_uri(text)
        got = []
        resolver.resolve(uri).addBoth(got.append)
        assert isinstance(got[0], list), got
        asked = len(fake.asked)

        def via_deferred(uri=uri):
            resolver.resolve(uri)

        def via_cache(uri=uri):
            resolver.cached_peers(uri)

        deferred_us = measure(via_deferred, args.seconds)
        cached_us = measure(via_cache, args.seconds)
        if len(fake.asked) != asked:
            raise SystemExit("%s: the hot path asked the DNS %d questions"
                             % (text, len(fake.asked) - asked))
        print("| %s `%s` | %d | %.1f | %.1f |" % (label, text, len(got[0]), deferred_us, cached_us))
    print("\nDNS questions in total (all before the timed loops): %d" % resolver.queries)


if __name__ == "__main__":
    main()
