"""A real etcd server for tests: its own loopback address and data dir, stopped by PID."""

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

    def __init__(self, host=None, name="test", initial_cluster=None, wait=True):
        self.host = host or next_host()
        self.port = 2379
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
             "--initial-cluster", self.initial_cluster, "--log-level", "error"],
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
