#!/usr/bin/env python3
"""
etcd operations through the node's adapter (EtcdStore: gRPC client on its
thread pool, Deferreds back on the reactor), and the same through the
memory store for scale: operations per second and latency percentiles at
a few concurrency levels, plus how long a write takes to reach a watcher.

    .venv/bin/python bench/store_ops.py [--etcd http://127.0.0.1:2379] [--seconds 3]

Without --etcd it starts its own etcd (Debian etcd-server) on 127.0.0.77
with a temporary data dir and stops it at the end.  Not a test: numbers go
to bench/RESULTS.md with the command that produced them.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from twisted.internet import defer, reactor, task  # noqa: E402

from sipcluster.cluster.etcd import EtcdStore  # noqa: E402
from sipcluster.cluster.store import MemoryStore  # noqa: E402

VALUE = b'{"bindings": [{"contact": "<sip:alice@192.0.2.10:5060>", "expires": 3600}]}'


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))] if values else 0.0


@defer.inlineCallbacks
def run(store, op, concurrency, seconds, limit=200000):
    """C{op(i)} from C{concurrency} loops for C{seconds} (or C{limit} ops)."""
    latencies = []
    deadline = time.monotonic() + seconds
    counter = iter(range(limit))

    @defer.inlineCallbacks
    def loop():
        for i in counter:
            if time.monotonic() > deadline:
                return
            started = time.monotonic()
            yield op(i)
            latencies.append(time.monotonic() - started)
    began, cpu = time.monotonic(), os.times()
    yield defer.gatherResults([loop() for _ in range(concurrency)])
    elapsed, after = time.monotonic() - began, os.times()
    cpu_us = (after.user + after.system - cpu.user - cpu.system) / max(len(latencies), 1) * 1e6
    return (len(latencies) / elapsed, percentile(latencies, 0.5), percentile(latencies, 0.99),
            cpu_us)


@defer.inlineCallbacks
def watch_delay(store, samples=200):
    """Write, and time until the watch callback has the event."""
    waiting = {}
    delays = []

    def events(items):
        for _, key, _, _ in items:
            d = waiting.pop(key, None)
            if d is not None:
                d.callback(None)
    watch = yield store.follow("/bench/watch/", events, lambda items, rev: None)
    for i in range(samples):
        key = "/bench/watch/%d" % i
        arrived = waiting[key] = defer.Deferred()
        started = time.monotonic()
        yield store.put(key, VALUE)
        yield arrived
        delays.append(time.monotonic() - started)
    watch.stop()
    return percentile(delays, 0.5), percentile(delays, 0.99)


@defer.inlineCallbacks
def bench(store, name, seconds):
    revisions = {}

    def put(i):
        return store.put("/bench/put/%d" % (i % 1000), VALUE)

    def get(i):
        return store.get("/bench/put/%d" % (i % 1000))

    def cas(i):
        # What a REGISTER does: compare-and-swap on the AOR's revision.
        key = "/bench/cas/%d" % (i % 1000)
        d = store.replace(key, VALUE, revisions.get(key, 0))
        return d.addCallback(lambda rev: revisions.__setitem__(key, rev or revisions.get(key, 0)))

    print("| %s | op | concurrency | ops/s | p50 ms | p99 ms | node CPU us/op |" % name)
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, op in (("put", put), ("get", get), ("CAS (replace)", cas)):
        for concurrency in (1, 8, 32):
            rate, p50, p99, cpu_us = yield run(store, op, concurrency, seconds)
            print("| %s | %s | %d | %.0f | %.2f | %.2f | %.0f |" % (
                name, label, concurrency, rate, p50 * 1000, p99 * 1000, cpu_us))
    p50, p99 = yield watch_delay(store)
    print("| %s | write -> watch event | 1 | | %.2f | %.2f | |" % (name, p50 * 1000, p99 * 1000))
    print()


def start_etcd():
    data = tempfile.mkdtemp(prefix="etcd-bench-")
    host = "127.0.0.77"
    proc = subprocess.Popen(
        ["etcd", "--name", "bench", "--data-dir", os.path.join(data, "data"),
         "--listen-client-urls", "http://%s:2379" % host,
         "--advertise-client-urls", "http://%s:2379" % host,
         "--listen-peer-urls", "http://%s:2380" % host,
         "--initial-advertise-peer-urls", "http://%s:2380" % host,
         "--initial-cluster", "bench=http://%s:2380" % host, "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    return proc, data, "http://%s:2379" % host


@defer.inlineCallbacks
def main(args):
    proc = data = None
    endpoint = args.etcd
    if endpoint is None:
        proc, data, endpoint = start_etcd()
    try:
        memory = MemoryStore(reactor)
        memory.start()
        yield bench(memory, "memory", args.seconds)
        memory.stop()
        store = EtcdStore(reactor, [endpoint], timeout=5.0, threads=args.threads)
        store.start()
        yield task.deferLater(reactor, 0.5, lambda: None)
        yield bench(store, "etcd", args.seconds)
        store.stop()
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--etcd", help="an etcd to use (default: start one)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement (bounded)")
    parser.add_argument("--threads", type=int, default=8, help="adapter thread pool size")
    args = parser.parse_args()
    task.react(lambda _: main(args))
