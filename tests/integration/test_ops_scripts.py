"""
The scripts README.rst tells a newcomer to run, run for real: ops/run (one
node in the foreground, arguments passed to it) and ops/cluster-up /
ops/cluster-down (etcd and three nodes on fixed addresses).
"""

import os
import shutil
import signal
import socket
import subprocess
import tomllib
import uuid

import pytest

from tests.integration.nodes import ROOT, UDPAgent, next_host, options_ping
from tests.integration.wire import request, requests_received, wait_until


def _stop_group(process):
    """Stop what a script started: its process group (ours), by its id."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_ops_run_starts_a_node_with_the_arguments_given(net):
    host = net.host
    log = net.tmp / "ops-run.out"
    with open(log, "wb") as out:
        # ops/run makes or refreshes .venv first (pip), then execs twistd.
        process = subprocess.Popen(
            ["bash", os.path.join(ROOT, "ops", "run"), "--listen", "udp:%s:5070" % host,
             "--listen", "tcp:%s:5070" % host, "--node-id", "ops-run", "--domain", "example.test"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    phone = caller = None
    try:
        assert wait_until(lambda: process.poll() is None and options_ping(host, 5070), timeout=120), \
            log.read_text()[-2000:]
        # Nothing on the default address: the arguments replaced it.
        assert not options_ping(host, 5060)
        phone = UDPAgent(host)
        caller = UDPAgent(host)
        phone.send(request("REGISTER", "sip:example.test", phone.host, phone.port,
                           to="<sip:bob@example.test>", extra="Expires: 600\r\n")
                   .replace("sip:alice@%s" % phone.host, "sip:bob@%s" % phone.host).encode(), (host, 5070))
        answer = phone.recv(3)
        assert answer is not None and answer.status == 200
        caller.send(request("INVITE", "sip:bob@example.test", caller.host, caller.port).encode(),
                    (host, 5070))
        got = [m for m in requests_received(phone, 1.0) if m.method == "INVITE"]
        assert got and got[0].top_via.host == host and got[0].top_via.port == 5070
    finally:
        for agent in (phone, caller):
            if agent is not None:
                agent.close()
        _stop_group(process)
    assert process.returncode is not None


CLUSTER_ADDRESSES = [("udp", "127.0.0.2", 5060), ("udp", "127.0.0.3", 5060),
                     ("udp", "127.0.0.4", 5060), ("tcp", "127.0.0.1", 2379),
                     ("tcp", "127.0.0.1", 2380)]


def _busy(kind, host, port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    if kind == "tcp":
        # As etcd does: connections left in TIME_WAIT do not count, listeners do.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        return False
    except OSError:
        return True
    finally:
        sock.close()


def _cluster_up_blocked():
    if shutil.which("etcd") is None:
        return "etcd is not installed"
    if os.path.exists(os.path.join(ROOT, "run")):
        return "run/ exists: a demo cluster of this checkout may be up"
    busy = ["%s:%s:%d" % a for a in CLUSTER_ADDRESSES if _busy(*a)]
    if busy:
        return "ops/cluster-up uses fixed addresses, in use here: %s" % ", ".join(busy)
    return None


def test_ops_cluster_up_and_down(tmp_path):
    blocked = _cluster_up_blocked()
    if blocked:
        pytest.skip(blocked)
    run_dir = os.path.join(ROOT, "run")
    up = subprocess.run(["bash", os.path.join(ROOT, "ops", "cluster-up")], capture_output=True,
                        text=True, timeout=180, stdin=subprocess.DEVNULL)
    phone = caller = None
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        # It ends with the cluster's status: the three nodes of ops/cluster/,
        # active, in the regions configured there.
        lines = up.stdout.splitlines()
        header = [i for i, line in enumerate(lines) if line.startswith("NODE ")]
        assert header, up.stdout
        rows = [line.split() for line in lines[header[0] + 1:] if line.strip()]
        expected = {}
        for name in ("a", "b", "c"):
            with open(os.path.join(ROOT, "ops", "cluster", "node-%s.toml" % name), "rb") as f:
                conf = tomllib.load(f)
            expected[conf["node"]["id"]] = (",".join(conf["sip"]["listen"]), conf["cluster"]["region"],
                                            "active")
        assert {row[0]: tuple(row[1:4]) for row in rows} == expected, up.stdout
        assert [row[4] for row in rows].count("yes") == 1, up.stdout  # one leader
        # One logical registrar: register at node a, be called through node c.
        phone = UDPAgent(next_host())
        caller = UDPAgent(next_host())
        user = "u" + uuid.uuid4().hex[:8]
        phone.send(request("REGISTER", "sip:example.test", phone.host, phone.port,
                           to="<sip:%s@example.test>" % user, extra="Expires: 60\r\n")
                   .replace("sip:alice@%s" % phone.host, "sip:%s@%s" % (user, phone.host)).encode(),
                   ("127.0.0.2", 5060))
        answer = phone.recv(5)
        assert answer is not None and answer.status == 200

        def delivered():
            caller.send(request("INVITE", "sip:%s@example.test" % user, caller.host,
                                caller.port).encode(), ("127.0.0.4", 5060))
            got = [m for m in requests_received(phone, 1.0) if m.method == "INVITE"]
            return bool(got) and got[0].uri.user == user
        assert wait_until(delivered, timeout=10, interval=0)
    finally:
        for agent in (phone, caller):
            if agent is not None:
                agent.close()
        pids = {}
        for name in ("node-a", "node-b", "node-c", "etcd"):
            try:
                with open(os.path.join(run_dir, name + ".pid")) as f:
                    pids[name] = int(f.read().strip())
            except (OSError, ValueError):
                pass
        down = subprocess.run(["bash", os.path.join(ROOT, "ops", "cluster-down")],
                              capture_output=True, text=True, timeout=60)
        for pid in pids.values():
            # What cluster-down left, if anything: only if that PID is still
            # the process cluster-up started (not a reused one).
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if b"ops/cluster/node-" in cmdline or b"run/etcd" in cmdline:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(run_dir, ignore_errors=True)
    assert down.returncode == 0, down.stdout + down.stderr
    assert sorted(line for line in down.stdout.splitlines()) == [
        "etcd stopped", "node-a stopped", "node-b stopped", "node-c stopped"]
    assert set(pids) == {"node-a", "node-b", "node-c", "etcd"}
