"""
Bare wire helpers for the integration tests: SIP over a TCP socket of the
test's own (both ends), free ports, and request texts, so that tests can
assert on exactly what a node sent and on which connection.
"""

import os
import signal
import socket
import subprocess
import time
import uuid

from sipcluster.sip.message import parse_message
from tests.integration.nodes import ROOT, UDPAgent, twistd


def free_port(host, family=socket.AF_INET):
    """A port free for both UDP and TCP on C{host} (as far as one can tell)."""
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port on %s" % host)


class TCPConnection:
    """One end of a SIP-over-TCP connection, read message by message."""

    def __init__(self, sock):
        self.sock = sock
        self.host, self.port = sock.getsockname()[:2]
        self.buffer = b""

    @classmethod
    def connect(cls, host, port, timeout=3):
        return cls(socket.create_connection((host, port), timeout))

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        elif not isinstance(data, bytes):
            data = data.to_bytes()
        self.sock.sendall(data)

    def recv(self, timeout=3.0):
        """The next message on the stream (parsed), or None by C{timeout}."""
        deadline = time.monotonic() + timeout
        while True:
            message = self._frame()
            if message is not None:
                return parse_message(message)
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65535)
            except socket.timeout:
                return None
            if not chunk:
                return None
            self.buffer += chunk

    def _frame(self):
        self.buffer = self.buffer.lstrip(b"\r\n")
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() in (b"content-length", b"l"):
                length = int(value.strip())
        if len(rest) < length:
            return None
        message = head + sep + rest[:length]
        self.buffer = rest[length:]
        return message

    def close(self):
        self.sock.close()


class TCPListener:
    """A TCP port of the test's own that a node connects to."""

    def __init__(self, host, port=0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(5)
        self.host, self.port = self.sock.getsockname()

    def accept(self, timeout=3.0):
        self.sock.settimeout(timeout)
        try:
            conn, _ = self.sock.accept()
        except socket.timeout:
            return None
        return TCPConnection(conn)

    def close(self):
        self.sock.close()


def request(method, uri, via_host, via_port, transport="UDP", to=None, call_id=None,
            cseq=1, extra="", body=""):
    """A request from a user agent at via_host:via_port, as text."""
    call_id = call_id or uuid.uuid4().hex
    branch = uuid.uuid4().hex[:12]
    to = to or "<%s>" % uri.split(";")[0]
    return ("{m} {uri} SIP/2.0\r\nVia: SIP/2.0/{t} {h}:{p};branch=z9hG4bK{b};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=f{b}\r\nTo: {to}\r\n"
            "Call-ID: {c}\r\nCSeq: {s} {m}\r\nContact: <sip:alice@{h}:{p}>\r\n{extra}"
            "Content-Length: {n}\r\n\r\n{body}").format(
                m=method, uri=uri, t=transport, h=via_host, p=via_port, b=branch, to=to,
                c=call_id, s=cseq, extra=extra, n=len(body.encode()), body=body)


def requests_received(agent, duration):
    """The requests (not responses) an agent got within C{duration}."""
    return [m for m in agent.recv_all(duration) if getattr(m, "method", None)]


class Twistd:
    """
    A node started with exactly the arguments given (no listen address of
    its own, unlike L{NodeProcess}), and a way to wait on it and read what
    it printed.  Stopped by PID.
    """

    def __init__(self, args, tmp_path, name="node"):
        self.log_path = os.path.join(str(tmp_path), "%s.log" % name)
        self.out_path = os.path.join(str(tmp_path), "%s.out" % name)
        self.err_path = os.path.join(str(tmp_path), "%s.err" % name)
        env = dict(os.environ, PYTHONPATH=ROOT)
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.process = subprocess.Popen(
                [twistd(), "-n", "--pidfile=", "--reactor=sipepoll", "--logfile=%s" % self.log_path,
                 "sipcluster"]
                + list(args), env=env, cwd=ROOT, stdout=out, stderr=err,
                stdin=subprocess.DEVNULL)

    def wait(self, timeout=30):
        return self.process.wait(timeout)

    def output(self):
        with open(self.out_path) as out, open(self.err_path) as err:
            return out.read(), err.read()

    def log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
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


class UDP6Agent(UDPAgent):
    """L{UDPAgent} on an IPv6 address."""

    def __init__(self, host="::1", port=0):
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()[:2]


def wait_until(check, timeout=10, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False
