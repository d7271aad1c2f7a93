"""
Digest authentication across a cluster on a real etcd: one nonce secret
(a nonce node A issued is accepted at node B), and users kept in etcd (a
user added with the CLI registers at another node within a second).
"""

import os
import subprocess
import sys
import time

import pytest

from tests.cluster.etcdserver import EtcdServer, requires_etcd
from tests.cluster.test_cluster_nodes import started_nodes
from tests.integration.nodes import ROOT, next_host
from tests.integration.test_auth_wire import PASSWORDS, Phone

pytestmark = requires_etcd


@pytest.fixture
def cluster(tmp_path):
    etcd = EtcdServer()
    conf = tmp_path / "auth.toml"
    conf.write_text('[auth]\nenabled = true\nalgorithms = ["SHA-256", "MD5"]\n')
    try:
        with started_nodes(tmp_path) as start:
            yield etcd, lambda name: start(name, [etcd.endpoint], "--config", str(conf))
    finally:
        etcd.stop()


def user_add(etcd, name, password):
    result = subprocess.run(
        [sys.executable, "-m", "sipcluster.cli", "user", "add", name, "--etcd", etcd.endpoint,
         "--realm", "example.test", "--password-file", "-"],
        input=password + "\n", capture_output=True, text=True, timeout=30,
        env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    return time.monotonic()


def authenticating(phone, timeout=10):
    """
    The node's first answer to a REGISTER once it has read the nonce secret
    and the users from etcd: until then it answers 503 with Retry-After
    (never lets a request through unchecked), though it already answers
    OPTIONS, which is all NodeProcess waits for.
    """
    deadline = time.monotonic() + timeout
    while True:
        answer = phone.request()
        if answer is None or answer.status != 503 or time.monotonic() > deadline:
            return answer
        assert answer.values("retry-after"), answer
        time.sleep(0.1)


def test_cli_user_registers_at_another_node_within_a_second_and_nonces_cross_nodes(cluster):
    etcd, node = cluster
    a, b = node("node-a"), node("node-b")
    at_a, at_b = Phone(next_host(), a), Phone(next_host(), b)
    try:
        assert authenticating(at_a).status == 401
        assert authenticating(at_b).status == 401
        # Unknown yet: challenged, then refused.
        assert at_b.register()[0].status == 401
        added = user_add(etcd, "alice", PASSWORDS["alice"])
        while True:
            answer, _ = at_b.register()
            if answer.status == 200 or time.monotonic() - added > 1.0:
                break
        assert answer.status == 200
        assert time.monotonic() - added <= 1.0 + 0.2  # the last REGISTER's own round trip

        # A's challenge, answered at B (a phone failing over to another
        # node with the nonce it has): accepted, no new challenge.
        _, challenge = at_a.challenge("SHA-256")
        b_phone = Phone(at_a.ua.host, b)
        b_phone.ua.close()
        b_phone.ua = at_a.ua
        answer, _ = b_phone.register(challenge=challenge)
        assert answer.status == 200
        # And the count is tracked there too: the same nc again is a replay.
        assert b_phone.register(challenge=challenge)[0].status == 401

        # The single node's users file moved to etcd as it is (README).
        result = subprocess.run(
            [sys.executable, "-m", "sipcluster.cli", "user", "import",
             os.path.join(ROOT, "ops", "examples", "auth-users.json"), "--etcd", etcd.endpoint],
            capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=ROOT))
        assert result.returncode == 0, result.stderr
        time.sleep(0.5)
        assert at_a.register(user="bob", aor="sip:bob@example.test")[0].status == 200
    finally:
        at_a.close()
        at_b.close()
