"""
Memory benchmark (not a test): RSS of a node process before and after its
in-memory location service holds N registered users, each added through
the registrar's path (one Binding per user, as a REGISTER creates).

    .venv/bin/python bench/location_memory.py [N]
"""

import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.task import Clock  # noqa: E402

from sipcluster.location.interface import Binding  # noqa: E402
from sipcluster.location.memory import MemoryLocationService  # noqa: E402
from sipcluster.sip.uri import parse_uri  # noqa: E402


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    clock = Clock()
    location = MemoryLocationService(clock)
    before = rss_kib()
    start = time.perf_counter()
    for i in range(n):
        aor = "sip:user%d@example.test" % i
        contact = parse_uri("sip:user%d@10.%d.%d.%d:5060;transport=udp" % (
            i, i >> 16 & 255, i >> 8 & 255, i & 255))
        location.update(aor, [Binding(aor, contact, 3600, q=1.0, call_id="c%d@10.0.0.1" % i,
                                      cseq=1, received=("udp", "192.0.2.1", 10000 + i % 50000))])
    spent = time.perf_counter() - start
    after = rss_kib()
    print("%d bindings: RSS %.1f MiB -> %.1f MiB (+%.0f bytes per binding); %.0f updates/s in memory" % (
        n, before / 1024, after / 1024, (after - before) * 1024 / n, n / spent))
    start = time.perf_counter()
    for i in range(0, n, 7):
        location.lookup("sip:user%d@example.test" % i)
    print("lookup: %.2f us" % ((time.perf_counter() - start) / len(range(0, n, 7)) * 1e6))


if __name__ == "__main__":
    main()
