"""
Digest verification through RADIUS on a real twistd node against a real
FreeRADIUS (its digest module) that the test configures and starts on
loopback: accepted, refused, a dead primary with a live secondary, and
503 (never a pass) when no server answers.
"""

import os
import uuid

import pytest

from tests.integration.nodes import UDPAgent, next_host, requires_sipp
from tests.integration.test_pipeline_wire import request
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


# -- accounting ----------------------------------------------------------------------

def accounting_node(net, radius, spool, failed_calls=True):
    path = net.tmp / "acct.toml"
    path.write_text('[sip]\ndomains = ["example.test"]\n[accounting]\nfailed_calls = %s\n'
                    '[radius]\naccounting_servers = ["%s"]\nsecret = "%s"\ntimeout_s = 0.3\n'
                    'retries = 1\naccounting_spool = "%s"\naccounting_retry_s = 0.5\n' % (
                        "true" if failed_calls else "false", radius.acct, radius.secret, spool))
    return net.node("--config", str(path))


def sipp_calls(net, count):
    uas = net.sipp("uas", "-sn", "uas", "-p", "5070")
    uac = net.sipp("uac", "-sn", "uac", "%s:5070" % net.host, "-rsa", "%s:5060" % net.host,
                   "-p", "5080", "-m", str(count), "-r", "10", "-d", "1000")
    assert uac.wait() == 0
    uas.stop()
    return [m for m in uac.sent() if getattr(m, "method", None) == "INVITE"]


def wait_for(check, timeout=10):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def by_session(records):
    out = {}
    for record in records:
        out.setdefault(record.get("Acct-Session-Id"), []).append(record)
    return out


@requires_sipp
def test_start_and_stop_reach_freeradius_with_duration_and_parties(net, radius, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    accounting_node(net, radius, spool)
    invites = sipp_calls(net, 2)
    assert wait_for(lambda: len(radius.accounting_records()) >= 4), radius.log()[-3000:]
    sessions = by_session(radius.accounting_records())
    assert set(sessions) == {i.call_id for i in invites}
    for call_id, records in sessions.items():
        assert [r["Acct-Status-Type"] for r in records] == ["Start", "Stop"]
        start, stop = records
        assert start["Calling-Station-Id"].startswith("sip:sipp@")
        assert stop["Called-Station-Id"] == start["Called-Station-Id"]
        assert stop["Acct-Terminate-Cause"] == "User-Request"
        assert 1 <= int(stop["Acct-Session-Time"]) <= 2  # sipp -d 1000
    assert os.listdir(spool) == []  # every record acknowledged


def test_failed_attempts_are_accounted(net, radius, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    node = accounting_node(net, radius, spool)
    agent = UDPAgent(net.host)
    try:
        call_id = uuid.uuid4().hex
        agent.send(request((agent.host, agent.port), node, "INVITE", "sip:nobody@example.test",
                           to="sip:nobody@example.test", call_id=call_id), (node.host, node.port))
        answers = agent.recv_all(1.0)
        assert 404 in [m.status for m in answers]
    finally:
        agent.close()
    assert wait_for(lambda: by_session(radius.accounting_records()).get(call_id))
    (record,) = by_session(radius.accounting_records())[call_id]
    assert record["Acct-Status-Type"] == "Failed"


@requires_sipp
def test_an_outage_keeps_records_on_disk_until_the_server_returns(net, radius, tmp_path):
    spool = tmp_path / "spool"
    spool.mkdir()
    accounting_node(net, radius, spool)
    radius.stop()
    invites = sipp_calls(net, 2)
    # Start and Stop of each call wait on disk.
    assert wait_for(lambda: len(os.listdir(spool)) == 4)
    assert sorted(n.rsplit("-", 1)[1] for n in os.listdir(spool)) == [
        "start.acct", "start.acct", "stop.acct", "stop.acct"]
    radius.start()
    assert wait_for(lambda: os.listdir(spool) == [], timeout=15)
    sessions = by_session(radius.accounting_records())
    assert set(sessions) == {i.call_id for i in invites}
    assert all([r["Acct-Status-Type"] for r in rs] == ["Start", "Stop"] for rs in sessions.values())
    # They waited: RFC 2866 Acct-Delay-Time says so.
    assert any(int(r.get("Acct-Delay-Time", 0)) >= 1 for rs in sessions.values() for r in rs)
