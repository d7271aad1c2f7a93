"""A real etcd server for tests: its own loopback address and data dir, stopped by PID."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from tests.integration.nodes import next_host

requires_etcd = pytest.mark.skipif(
    shutil.which("etcd") is None and not os.environ.get("CI"),
    reason="etcd (Debian etcd-server) is not installed; ops/test installs it")


class EtcdServer:
    """
    etcd on HOST:2379 (peers on :2380) with a temporary data dir; it can be
    killed, restarted on the same data, stopped with SIGSTOP and resumed.
    """

    def __init__(self, host=None):
        self.host = host or next_host()
        self.port = 2379
        self.data_dir = tempfile.mkdtemp(prefix="etcd-test-")
        self.process = None
        self.start()

    @property
    def endpoint(self):
        return "http://%s:%d" % (self.host, self.port)

    def start(self, timeout=15):
        client = "http://%s:%d" % (self.host, self.port)
        peer = "http://%s:%d" % (self.host, self.port + 1)
        log = open(os.path.join(self.data_dir, "etcd.log"), "ab")
        self.process = subprocess.Popen(
            ["etcd", "--name", "test", "--data-dir", os.path.join(self.data_dir, "data"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", "test=%s" % peer, "--log-level", "error"],
            stdout=log, stderr=log)
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
