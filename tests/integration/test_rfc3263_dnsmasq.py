"""
L{sipcluster.routing.rfc3263} against a real DNS server: a dnsmasq of the
test's own on a loopback address of its own, holding NAPTR, SRV and A/AAAA
records, asked by twisted.names' client on the real reactor.

The reactor runs in a subprocess (L{tests.integration.rfc3263_probe},
C{task.react}, JSON on stdout): a reactor runs once per process and the
other tests drive theirs with fakes, so this needs no pytest plugin and
leaves nothing behind in the test process.  dnsmasq logs every question it
is asked (C{--log-queries}): the tests count them to show a cached name
sends none.  No DNS traffic leaves loopback: dnsmasq has no upstream
(C{--no-resolv}) and answers for its zone only (C{--local}); the probe's
client knows only this server and cannot call the system resolver.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
from twisted.names import dns

from tests.integration.nodes import ROOT, next_host

DNSMASQ = shutil.which("dnsmasq") or (
    "/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None)

pytestmark = pytest.mark.skipif(
    DNSMASQ is None and not os.environ.get("CI"),
    reason="dnsmasq (Debian dnsmasq-base) is not installed; ops/test installs it")

PORT = 5399


class Dnsmasq:
    """dnsmasq in the foreground on HOST:PORT with the given records, stopped by PID."""

    def __init__(self, host, records, log_path):
        self.host = host
        self.port = PORT
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [DNSMASQ, "--no-daemon", "--port=%d" % PORT, "--listen-address=%s" % host,
             "--bind-interfaces", "--no-resolv", "--no-hosts", "--log-queries",
             "--log-facility=-", "--local=/example.test/", "--local-ttl=300",
             "--pid-file="] + records,
            stdout=self.log, stderr=subprocess.STDOUT)
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout=10):
        query = dns.Message(id=1, recDes=True)
        query.addQuery(b"ready.example.test", dns.A)
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.settimeout(0.2)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError("dnsmasq exited: %s" % open(self.log_path).read())
                try:
                    probe.sendto(query.toStr(), (self.host, self.port))
                    probe.recvfrom(512)
                    return
                except OSError:
                    time.sleep(0.05)
        raise RuntimeError("dnsmasq did not answer")

    def questions(self):
        """The questions dnsmasq was asked so far: [(type, name)]."""
        self.log.flush()
        out = []
        with open(self.log_path) as f:
            for line in f:
                if "query[" in line:
                    what = line.split("query[", 1)[1]
                    rtype, _, rest = what.partition("] ")
                    name = rest.split(" from ")[0]
                    if name != "ready.example.test":
                        out.append((rtype, name))
        return out

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def probe(server, plan, timeout=30):
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.rfc3263_probe",
         "%s:%d" % (server.host, server.port), json.dumps(plan)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def zone(tmp_path_factory):
    """
    dnsmasq serving example.test:

    - NAPTR example.test: SIP+D2U (order 10, preference 50) to
      _sip._udp.example.test, SIP+D2T (20, 10) to _sip._tcp.example.test,
      SIPS+D2T (5, 1) to _sips._tcp.example.test;
    - _sip._tcp.example.test: dead.example.test (priority 0, no address at
      all), then alive.example.test:5062 (priority 10);
    - _sip._udp.example.test: down.example.test:5060 (an address nothing
      listens on, priority 0), then alive.example.test:5060 (10);
    - _sip._udp.weights.example.test: w60 and w40 (weights 60 and 40);
    - plain.example.test: an A and an AAAA record, nothing else;
    - short.example.test: an A record of TTL 1.
    """
    tmp = tmp_path_factory.mktemp("dnsmasq")
    alive, down, w60, w40 = next_host(), next_host(), next_host(), next_host()
    records = [
        "--naptr-record=example.test,20,10,s,SIP+D2T,,_sip._tcp.example.test",
        "--naptr-record=example.test,10,50,s,SIP+D2U,,_sip._udp.example.test",
        "--naptr-record=example.test,5,1,s,SIPS+D2T,,_sips._tcp.example.test",
        "--srv-host=_sip._tcp.example.test,dead.example.test,5060,0,0",
        "--srv-host=_sip._tcp.example.test,alive.example.test,5062,10,0",
        "--srv-host=_sip._udp.example.test,down.example.test,5060,0,0",
        "--srv-host=_sip._udp.example.test,alive.example.test,5060,10,0",
        "--srv-host=_sips._tcp.example.test,alive.example.test,5061,0,0",
        "--srv-host=_sip._udp.weights.example.test,w60.example.test,5060,0,60",
        "--srv-host=_sip._udp.weights.example.test,w40.example.test,5060,0,40",
        "--host-record=alive.example.test,%s" % alive,
        "--host-record=down.example.test,%s" % down,
        "--host-record=w60.example.test,%s" % w60,
        "--host-record=w40.example.test,%s" % w40,
        "--host-record=plain.example.test,%s,2001:db8::7" % alive,
        "--host-record=short.example.test,%s,1" % alive,
    ]
    server = Dnsmasq(next_host(), records, str(tmp / "dnsmasq.log"))
    server.addresses = {"alive": alive, "down": down, "w60": w60, "w40": w40}
    yield server
    server.stop()


def test_naptr_srv_order_and_a_target_that_dies(zone):
    [step] = probe(zone, [{"resolve": "sip:bob@example.test"}])
    alive, down = zone.addresses["alive"], zone.addresses["down"]
    # NAPTR: udp (order 10) before tcp (order 20, though of a better
    # preference); SIPS+D2T (order 5) needs TLS the node lacks.
    # _sip._udp's first target has an address nobody answers on: it stays
    # in the list, and the caller must fail over past it.  _sip._tcp's
    # first target has no address at all: only its second remains.
    assert step["attempts"] == [[["udp", down, 5060], ["udp", alive, 5060], ["tcp", alive, 5062]]]
    asked = zone.questions()
    assert ("NAPTR", "example.test") in asked
    assert ("A", "dead.example.test") in asked
    assert ("SRV", "_sips._tcp.example.test") not in asked


def test_caller_fails_over_through_the_candidates(zone):
    # What the integrator's failover does with the list: the first
    # candidate that answers wins.  Over TCP: _sip._tcp with a dead first
    # target leads to alive:5062, where this test listens.
    alive = zone.addresses["alive"]
    [step] = probe(zone, [{"resolve": "sip:bob@example.test;transport=tcp"}])
    candidates = step["attempts"][0]
    assert candidates == [["tcp", alive, 5062]]
    [step] = probe(zone, [{"resolve": "sip:bob@example.test;transport=udp"}])
    down = zone.addresses["down"]
    assert step["attempts"][0] == [["udp", down, 5060], ["udp", alive, 5060]]
    # The same order over TCP to the ports: down refuses, alive accepts.
    listener = socket.socket()
    listener.bind((alive, 5060))
    listener.listen(1)
    reached = []
    try:
        for _, host, port in step["attempts"][0]:
            try:
                socket.create_connection((host, port), 1).close()
            except OSError:
                continue
            reached.append(host)
            break
    finally:
        listener.close()
    assert reached == [alive]


def test_sips_uri_uses_the_sips_service(zone):
    [step] = probe(zone, [{"resolve": "sips:bob@example.test"}])
    # TLS is not there yet: TCP stands in (see the module docstring).
    assert step["attempts"] == [[["tcp", zone.addresses["alive"], 5061]]]


def test_cached_name_asks_dnsmasq_nothing(zone):
    before = len(zone.questions())
    [step] = probe(zone, [{"resolve": "sip:weights.example.test", "repeat": 2000,
                           "transports": ["udp"]}])
    asked = zone.questions()[before:]
    # NAPTR, SRV, A and AAAA of both targets: once for 2000 resolves.
    assert sorted(asked) == sorted([
        ("NAPTR", "weights.example.test"), ("SRV", "_sip._udp.weights.example.test"),
        ("A", "w60.example.test"), ("AAAA", "w60.example.test"),
        ("A", "w40.example.test"), ("AAAA", "w40.example.test")])
    assert step["queries"] == 6 and step["cached"] is True
    firsts = [attempt[0][1] for attempt in step["attempts"]]
    share = firsts.count(zone.addresses["w60"]) / len(firsts)
    # RFC 2782: weight 60 of 100 first with probability 61/101.
    assert abs(share - 61 / 101) < 0.05
    assert all(len(attempt) == 2 for attempt in step["attempts"])


def test_a_fallback_explicit_port_and_failure(zone):
    alive = zone.addresses["alive"]
    plain, port, nowhere = probe(zone, [
        {"resolve": "sip:plain.example.test"},
        {"resolve": "sip:plain.example.test:5080;transport=tcp"},
        {"resolve": "sip:nowhere.example.test", "repeat": 2},
    ])
    assert plain["attempts"] == [[["udp", alive, 5060], ["udp", "2001:db8::7", 5060]]]
    # NAPTR and SRV were negative and cached; the explicit port asks A/AAAA only.
    assert port["attempts"] == [[["tcp", alive, 5080], ["tcp", "2001:db8::7", 5080]]]
    assert port["queries"] == 0  # A and AAAA of plain.example.test are cached
    [error, again] = nowhere["attempts"]
    assert error["name"] == "nowhere.example.test"
    assert ["nowhere.example.test", "A", "NXDOMAIN"] in error["problems"]
    assert again["name"] == "nowhere.example.test"
    assert nowhere["queries"] == 5  # NAPTR, _sip._udp, _sip._tcp, A, AAAA: once


def test_ttl_expiry_on_the_real_reactor(zone):
    before = len(zone.questions())
    first, wait, second = probe(zone, [
        {"resolve": "sip:short.example.test:5060"}, {"sleep": 1.5},
        {"resolve": "sip:short.example.test:5060", "repeat": 3}])
    assert first["queries"] == 2
    # The A record (TTL 1) expired and was asked again, once; the AAAA
    # (NODATA, no SOA from dnsmasq: negative_ttl 30) was not.
    assert second["queries"] == 1
    asked = zone.questions()[before:]
    assert asked.count(("A", "short.example.test")) == 2
    assert asked.count(("AAAA", "short.example.test")) == 1
