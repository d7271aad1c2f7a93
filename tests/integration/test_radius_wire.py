"""
Digest verification through RADIUS on a real twistd node against a real
FreeRADIUS (its digest module) that the test configures and starts on
loopback: accepted, refused, a dead primary with a live secondary, and
503 (never a pass) when no server answers.
"""

import pytest

from tests.integration.nodes import next_host
from tests.integration.test_auth_wire import PASSWORDS, Phone
from tests.radiusserver import RadiusServer, free_udp_port, requires_freeradius

pytestmark = requires_freeradius


@pytest.fixture
def radius():
    server = RadiusServer(dict(PASSWORDS))
    yield server
    server.cleanup()


def radius_node(net, servers, secret="testing123-sip"):
    path = net.tmp / "radius.toml"
    path.write_text('[sip]\ndomains = ["example.test"]\n[auth]\nenabled = true\nverify = "radius"\n'
                    'algorithms = ["MD5"]\n[radius]\nservers = [%s]\nsecret = "%s"\n'
                    'timeout_s = 0.3\nretries = 1\n' % (
                        ", ".join('"%s"' % s for s in servers), secret))
    return net.node("--config", str(path))


def test_freeradius_accepts_right_answers_and_rejects_wrong_ones(net, radius):
    p = Phone(net.host, radius_node(net, [radius.auth]))
    try:
        ok, challenge = p.register("MD5")
        assert ok.status == 200, radius.log()[-2000:]
        assert p.register("MD5", password="not-the-Password-1")[0].status == 401
        assert p.register("MD5", user="bob", aor="sip:bob@example.test")[0].status == 200
        # Replays are still ours to refuse: the nonce-count, not RADIUS.
        assert p.register("MD5", challenge=challenge)[0].status == 401
    finally:
        p.close()
    assert "Digest-Response" in radius.log()


def test_a_dead_primary_then_the_secondary(net, radius):
    dead = "%s:%d" % (next_host(), free_udp_port("127.0.0.1"))
    p = Phone(net.host, radius_node(net, [dead, radius.auth]))
    try:
        assert p.register("MD5")[0].status == 200
    finally:
        p.close()


def test_no_server_answering_is_503_never_a_pass(net, radius):
    p = Phone(net.host, radius_node(net, [radius.auth]))
    try:
        radius.stop()
        _, challenge = p.challenge("MD5")  # challenges need no server
        answer, _ = p.register("MD5", challenge=challenge)
        assert answer.status == 503 and answer.header("retry-after") == "5"
    finally:
        p.close()


def test_a_wrong_shared_secret_is_no_answer(net, radius):
    p = Phone(net.host, radius_node(net, [radius.auth], secret="not-the-secret"))
    try:
        assert p.register("MD5")[0].status == 503
    finally:
        p.close()
