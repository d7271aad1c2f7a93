"""
A real etcd server for tests: its own loopback address and data dir,
stopped by PID.

SIPCLUSTER_TEST_ETCD=http://HOST:PORT (opt-in; mutation testing of
sipcluster/cluster/etcd.py, setup.cfg [mutmut]): the in-process tests that
only read and write take that etcd instead of starting one each, its whole
keyspace wiped (every lease revoked, every key deleted) before and after
each test.  Tests that kill, pause or restart etcd (L{own_etcd}) always
start their own.  Unset (ops/test): every test its own etcd, as before.
"""

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

# Before etcd3 (imported below): protobuf's backend, as the node selects it.
import sipcluster.cluster.protobuf  # noqa: F401
from tests.integration.nodes import next_host

requires_etcd = pytest.mark.skipif(
    shutil.which("etcd") is None and not os.environ.get("CI"),
    reason="etcd (Debian etcd-server) is not installed; ops/test installs it")


class EtcdServer:
    """
    etcd on HOST:2379 (peers on :2380) with a temporary data dir; it can be
    killed, restarted on the same data, stopped with SIGSTOP and resumed.
    """

    def __init__(self, host=None, name="test", initial_cluster=None, wait=True, args=(), port=2379):
        self.host = host or next_host()
        self.args = list(args)  # more etcd options
        self.port = port
        self.name = name
        self.initial_cluster = initial_cluster or "%s=%s" % (name, self.peer)
        self.data_dir = tempfile.mkdtemp(prefix="etcd-test-")
        self.process = None
        self.start(wait=wait)

    @property
    def peer(self):
        return "http://%s:%d" % (self.host, self.port + 1)

    @property
    def endpoint(self):
        return "http://%s:%d" % (self.host, self.port)

    def start(self, timeout=15, wait=True):
        client = self.endpoint
        log = open(os.path.join(self.data_dir, "etcd.log"), "ab")
        self.process = subprocess.Popen(
            ["etcd", "--name", self.name, "--data-dir", os.path.join(self.data_dir, "data"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", self.peer, "--initial-advertise-peer-urls", self.peer,
             "--initial-cluster", self.initial_cluster, "--log-level", "error"] + self.args,
            stdout=log, stderr=log)
        if wait:
            self.wait_healthy(timeout)

    def wait_healthy(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("etcd exited")
            try:
                socket.create_connection((self.host, self.port), 0.2).close()
                if self._healthy():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("etcd did not start")

    def _healthy(self):
        import etcd3
        client = etcd3.client(self.host, self.port, timeout=1)
        try:
            client.get("/health-check")
            return True
        except Exception:
            return False
        finally:
            client.close()

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def pause(self):
        self.process.send_signal(signal.SIGSTOP)

    def resume(self):
        self.process.send_signal(signal.SIGCONT)

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.data_dir, ignore_errors=True)


SHARED_VARIABLE = "SIPCLUSTER_TEST_ETCD"


class SharedEtcd:
    """
    An etcd started outside the tests (L{SHARED_VARIABLE}), emptied for
    each test: what a fresh L{EtcdServer} holds, but for the revision,
    which goes on from the last test's.  It cannot be killed or paused.
    One test at a time has it: a lock file per endpoint, held from the
    first wipe to the last, makes a test of another process (a second
    mutmut worker) wait rather than wipe this one's keys.
    """

    def __init__(self, endpoint):
        self.endpoint = endpoint.rstrip("/")
        host_port = self.endpoint.split("://", 1)[-1]
        self.host, port = host_port.rsplit(":", 1)
        self.port = int(port)
        self._lock = open(os.path.join(tempfile.gettempdir(), "sipcluster-test-etcd-%s-%d.lock"
                                       % (self.host, self.port)), "a")
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self.wipe()
        except BaseException:
            self._lock.close()
            raise

    def wipe(self):
        """Revoke every lease, delete every key; check that none is left."""
        import etcd3
        import etcd3.etcdrpc
        client = etcd3.client(self.host, self.port, timeout=5)
        try:
            leases = client.leasestub.LeaseLeases(etcd3.etcdrpc.LeaseLeasesRequest(), 5)
            for lease in leases.leases:
                try:
                    client.revoke_lease(lease.ID)
                except Exception:
                    pass  # expired in between
            # From "\0" to the end ("\0" as range_end): every key.
            client.kvstub.DeleteRange(etcd3.etcdrpc.DeleteRangeRequest(key=b"\0", range_end=b"\0"), 5)
            left = client.kvstub.Range(etcd3.etcdrpc.RangeRequest(key=b"\0", range_end=b"\0",
                                                                  count_only=True), 5).count
            if left:
                raise RuntimeError("%d keys left in the shared etcd after the wipe" % left)
        finally:
            client.close()

    def stop(self):
        if self._lock.closed:
            return
        try:
            self.wipe()
        finally:
            self._lock.close()  # and with it the lock

    def kill(self):
        raise RuntimeError("the shared etcd cannot be killed: mark the test @own_etcd")

    pause = resume = start = kill


def own_etcd(test):
    """A test that kills, pauses or restarts its etcd: never the shared one."""
    test.own_etcd = True
    return test


def etcd_for(test=None):
    """
    The etcd for one test (C{test}: its function or method): the shared one,
    wiped, when L{SHARED_VARIABLE} names one and the test is not
    L{own_etcd}; else an L{EtcdServer} of its own.  Stop it when done.
    """
    shared = os.environ.get(SHARED_VARIABLE)
    if shared and not getattr(test, "own_etcd", False):
        return SharedEtcd(shared)
    return EtcdServer()


class EtcdCluster:
    """Three etcd members on three loopback addresses: one may die, the
    other two keep the quorum."""

    def __init__(self, size=3):
        hosts = [next_host() for _ in range(size)]
        initial = ",".join("m%d=http://%s:2380" % (i, h) for i, h in enumerate(hosts))
        self.members = [EtcdServer(h, "m%d" % i, initial, wait=False) for i, h in enumerate(hosts)]
        for member in self.members:
            member.wait_healthy(30)

    @property
    def endpoints(self):
        return [m.endpoint for m in self.members]

    def stop(self):
        for member in self.members:
            member.stop()
