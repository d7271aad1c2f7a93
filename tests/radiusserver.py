"""
A real FreeRADIUS (Debian freeradius 3.2) for tests: the Debian
configuration copied to a temporary directory, every site replaced by
one listening on a loopback address of its own (auth and accounting),
digest, files and detail modules only, users and a client secret of the
test's choosing; run in the foreground, stopped by PID.
"""

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from tests.integration.nodes import next_host

FREERADIUS = shutil.which("freeradius") or "/usr/sbin/freeradius"
requires_freeradius = pytest.mark.skipif(
    not os.path.exists(FREERADIUS) or not os.path.isdir("/etc/freeradius/3.0"),
    reason="FreeRADIUS (Debian freeradius) is not installed; ops/test installs it")

SITE = """\
server sipcluster {
listen {
\ttype = auth
\tipaddr = %(host)s
\tport = %(auth_port)d
}
listen {
\ttype = acct
\tipaddr = %(host)s
\tport = %(acct_port)d
}
authorize {
\tfiles
\tdigest
}
authenticate {
\tAuth-Type digest {
\t\tdigest
\t}
}
preacct {
}
accounting {
\tdetail
}
}
"""


class RadiusServer:
    """
    FreeRADIUS on HOST:1812 (auth) and HOST:1813 (accounting).

    @ivar users: name -> cleartext password (FreeRADIUS's digest module
        needs it, or the HA1).
    """

    def __init__(self, users, secret="testing123-sip", host=None):
        self.host = host or next_host()
        self.auth_port, self.acct_port = 1812, 1813
        self.secret = secret
        self.dir = tempfile.mkdtemp(prefix="radius-test-")
        conf = self.conf = os.path.join(self.dir, "conf")
        shutil.copytree("/etc/freeradius/3.0", conf, symlinks=False)
        for path in glob.glob(os.path.join(conf, "sites-enabled", "*")):
            os.unlink(path)
        for path in glob.glob(os.path.join(conf, "mods-enabled", "*")):
            if os.path.basename(path) not in ("digest", "files", "detail", "always"):
                os.unlink(path)
        for sub in ("run", "log", "acct"):
            os.mkdir(os.path.join(self.dir, sub))
        with open(os.path.join(conf, "radiusd.conf")) as f:
            text = f.read()
        for key, value in (("logdir", "log"), ("run_dir", "run"), ("radacctdir", "acct")):
            text = re.sub(r"(?m)^%s = .*$" % key, "%s = %s" % (key, os.path.join(self.dir, value)),
                          text)
        text = re.sub(r"(?m)^raddbdir = .*$", "raddbdir = %s" % conf, text)
        # Stay the user running the tests (the files are theirs), and
        # open no proxy socket on every address.
        text = re.sub(r"(?m)^\s*(user|group) = freerad\s*$", "", text)
        text = re.sub(r"(?m)^proxy_requests\s*=.*$", "proxy_requests = no", text)
        # Access-Reject at once (Debian delays it a second against
        # guessing), so tests may use short client timeouts.
        text = re.sub(r"(?m)^(\s*)reject_delay\s*=.*$", r"\1reject_delay = 0", text)
        with open(os.path.join(conf, "radiusd.conf"), "w") as f:
            f.write(text)
        with open(os.path.join(conf, "sites-enabled", "sipcluster"), "w") as f:
            f.write(SITE % {"host": self.host, "auth_port": self.auth_port,
                            "acct_port": self.acct_port})
        with open(os.path.join(conf, "clients.conf"), "w") as f:
            f.write("client loopback {\n\tipaddr = 127.0.0.0/8\n\tsecret = %s\n}\n" % secret)
        with open(os.path.join(conf, "mods-config", "files", "authorize"), "w") as f:
            for name, password in users.items():
                f.write('%s Cleartext-Password := "%s"\n' % (name, password))
        self.process = None
        self.start()

    @property
    def auth(self):
        return "%s:%d" % (self.host, self.auth_port)

    @property
    def acct(self):
        return "%s:%d" % (self.host, self.acct_port)

    def start(self, timeout=15):
        self.log_file = open(os.path.join(self.dir, "log", "radiusd.out"), "ab")
        self.process = subprocess.Popen([FREERADIUS, "-X", "-d", self.conf],
                                        stdout=self.log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("freeradius exited: %s" % self.log())
            if "Ready to process requests" in self.log():
                return
            time.sleep(0.1)
        raise RuntimeError("freeradius did not start: %s" % self.log())

    def log(self):
        try:
            with open(os.path.join(self.dir, "log", "radiusd.out"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def accounting_records(self):
        """The detail file's records: a list of dicts of attribute -> value (strings)."""
        records = []
        for path in sorted(glob.glob(os.path.join(self.dir, "acct", "*", "detail-*"))):
            with open(path, errors="replace") as f:
                for block in f.read().split("\n\n"):
                    record = {}
                    for line in block.splitlines()[1:]:
                        name, _, value = line.strip().partition(" = ")
                        if name:
                            record[name] = value.strip('"')
                    if record:
                        records.append(record)
        return records

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self.log_file.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def free_udp_port(host):
    """A UDP port on C{host} nothing listens on (a dead server)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port
