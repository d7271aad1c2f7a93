"""
Real processes for integration tests: sipcluster nodes started with twistd
and SIPp, on loopback addresses of their own, stopped by PID.
"""

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from sipcluster.sip.errors import SIPError
from sipcluster.sip.message import parse_message

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")
_hosts = itertools.count(0)

requires_sipp = pytest.mark.skipif(
    shutil.which("sipp") is None and not os.environ.get("CI"),
    reason="SIPp (Debian sip-tester) is not installed; ops/test installs it")


def twistd():
    """The twistd of the interpreter running the tests."""
    return os.path.join(os.path.dirname(sys.executable), "twistd")


def next_host():
    """
    A loopback address no other test uses: the second octet comes from
    this run's PID so that concurrent or leftover runs do not collide.
    """
    n = next(_hosts)
    return "127.%d.%d.%d" % (50 + os.getpid() % 150, n // 250, n % 250 + 2)


class NodeProcess:
    """A sipcluster node run with twistd in the foreground."""

    def __init__(self, host, port=5060, args=(), tmp_path=None):
        self.host = host
        self.port = port
        self.log_path = os.path.join(str(tmp_path), "node-%s.log" % host)
        env = dict(os.environ, PYTHONPATH=ROOT)
        cmd = [twistd(), "-n", "--pidfile=", "--reactor=sipepoll", "--logfile=%s" % self.log_path,
               "sipcluster", "--listen", "udp:%s:%d" % (host, port),
               "--listen", "tcp:%s:%d" % (host, port), "--node-id", "test-%s" % host] + list(args)
        self.process = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("node exited: %s" % self.log())
            if options_ping(self.host, self.port):
                return
        raise RuntimeError("node did not answer OPTIONS: %s" % self.log())

    def wait_log(self, text, timeout=15, count=1):
        """Wait until the node's log contains C{text} (C{count} times)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log(tail=None).count(text) >= count:
                return
            time.sleep(0.1)
        raise RuntimeError("node never logged %r: %s" % (text, self.log()))

    def log(self, tail=3000):
        try:
            with open(self.log_path) as f:
                text = f.read()
                return text[-tail:] if tail else text
        except OSError:
            return ""

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def options_ping(host, port, timeout=0.3):
    """Whether a node answers OPTIONS for itself with 200."""
    ua = UDPAgent(host)
    try:
        ua.send(options_request(ua, host, port), (host, port))
        reply = ua.recv(timeout)
        return reply is not None and reply.status == 200
    finally:
        ua.close()


def options_request(ua, host, port):
    tag = uuid.uuid4().hex[:8]
    return ("OPTIONS sip:%s:%d SIP/2.0\r\n"
            "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK%s;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:probe@%s>;tag=%s\r\nTo: <sip:%s>\r\n"
            "Call-ID: %s@%s\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n" % (
                host, port, ua.host, ua.port, tag, host, tag, host, tag, host)).encode()


class UDPAgent:
    """A bare UDP user agent for what SIPp cannot assert on precisely."""

    def __init__(self, host, port=0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()

    def send(self, data, addr):
        if not isinstance(data, bytes):
            data = data.to_bytes()
        self.sock.sendto(data, addr)

    def recv(self, timeout=2.0):
        self.sock.settimeout(timeout)
        try:
            data, addr = self.sock.recvfrom(65535)
        except socket.timeout:
            return None
        return parse_message(data)

    def recv_all(self, duration):
        out = []
        deadline = time.monotonic() + duration
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return out
            message = self.recv(left)
            if message is None:
                return out
            out.append(message)

    def close(self):
        self.sock.close()


class Sipp:
    """One SIPp run; C{messages()} reads its message trace."""

    def __init__(self, tmp_path, name, args, timeout=30):
        self.trace = os.path.join(str(tmp_path), "%s_messages.log" % name)
        self.screen = os.path.join(str(tmp_path), "%s_screen.log" % name)
        cmd = ["sipp"] + list(args) + ["-trace_msg", "-message_file", self.trace,
                                      "-trace_screen", "-screen_file", self.screen,
                                      "-nostdin", "-timeout", str(timeout), "-timeout_error"]
        self.process = subprocess.Popen(cmd, cwd=str(tmp_path), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    def wait(self, timeout=60):
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGUSR1)  # SIPp: dump and quit
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def messages(self, direction=None):
        """
        The messages in the trace as (direction, message) where direction is
        "sent" or "received".
        """
        try:
            with open(self.trace, "rb") as f:
                text = f.read()
        except OSError:
            return []
        out = []
        for block in re.split(rb"(?m)^-{47} [^\n]*\n", text)[1:]:
            kind, _, raw = block.partition(b"\n")
            direction_of = "sent" if b" sent" in kind else "received"
            try:
                message = parse_message(raw.lstrip(b"\r\n"))
            except SIPError:
                continue
            if direction is None or direction == direction_of:
                out.append((direction_of, message))
        return out

    def received(self):
        return [m for d, m in self.messages("received")]

    def sent(self):
        return [m for d, m in self.messages("sent")]


def scenario(name):
    return os.path.join(SCENARIOS, name)
