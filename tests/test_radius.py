"""sipcluster.policy.radius: the RADIUS client on a Clock and a fake socket, and digest requests."""

import os

import pytest
from pyrad import packet
from twisted.internet.testing import MemoryReactorClock

from sipcluster.policy.radius import (
    DIGEST_SUB, RadiusClient, RadiusDigest, RadiusUnavailable, dictionary, digest_attributes)
from tests.harness import FakeDatagramTransport

PRIMARY, SECONDARY = ("127.0.0.1", 1812), ("127.0.0.2", 1812)
SECRET = b"s3cret"


class Reactor(MemoryReactorClock):
    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        self.socket = FakeDatagramTransport(interface, 40000)
        protocol.makeConnection(self.socket)
        return self.socket


def client(servers=(PRIMARY, SECONDARY), retries=1):
    reactor = Reactor()
    c = RadiusClient(reactor, servers, SECRET, timeout=1.0, retries=retries)
    c.start()
    return reactor, c


def sent(reactor):
    out = list(reactor.socket.written)
    del reactor.socket.written[:]
    return out


def answer(c, data, code=packet.AccessAccept, secret=SECRET):
    """What a server with C{secret} would answer to the request bytes C{data}."""
    request = packet.AuthPacket(packet=data, secret=secret, dict=dictionary())
    reply = request.CreateReply()
    reply.code = code
    return reply.ReplyPacket()


def test_retransmits_then_moves_to_the_secondary_then_gives_up():
    reactor, c = client()
    results = []
    c.send(c.auth_packet(User_Name="alice")).addBoth(results.append)
    assert [addr for _, addr in sent(reactor)] == [PRIMARY]
    reactor.advance(1.0)
    assert [addr for _, addr in sent(reactor)] == [PRIMARY]  # one retransmission
    reactor.advance(1.0)
    assert [addr for _, addr in sent(reactor)] == [SECONDARY]
    reactor.advance(1.0)
    reactor.advance(1.0)
    assert results and results[0].check(RadiusUnavailable)
    assert c.stats["unavailable"] == 1 and c.stats["retransmitted"] == 2
    assert not reactor.getDelayedCalls()


def test_an_answer_from_the_server_asked_fires_once():
    reactor, c = client()
    results = []
    c.send(c.auth_packet(User_Name="alice")).addCallback(results.append)
    (data, _), = sent(reactor)
    reply = answer(c, data)
    c.datagramReceived(reply, SECONDARY)  # not the server asked: ignored
    assert results == []
    c.datagramReceived(reply, PRIMARY)
    c.datagramReceived(reply, PRIMARY)  # a duplicate: no second firing
    assert [r.code for r in results] == [packet.AccessAccept]
    assert not reactor.getDelayedCalls()


def test_an_answer_with_another_secret_is_not_an_answer():
    reactor, c = client(servers=(PRIMARY,), retries=0)
    results = []
    c.send(c.auth_packet(User_Name="alice")).addBoth(results.append)
    (data, _), = sent(reactor)
    c.datagramReceived(answer(c, data, secret=b"forged"), PRIMARY)
    assert results == []
    reactor.advance(1.0)
    assert results[0].check(RadiusUnavailable)


def test_access_requests_carry_a_message_authenticator():
    reactor, c = client()
    c.send(c.auth_packet(User_Name="alice"))
    (data, _), = sent(reactor)
    request = packet.AuthPacket(packet=data, secret=SECRET, dict=dictionary())
    assert request.verify_message_authenticator()


def test_digest_request_has_the_sterman_attributes():
    reactor, c = client()
    results = []
    params = {"username": "alice", "realm": "example.test", "nonce": "n0", "uri": "sip:example.test",
              "response": "0123abcd", "qop": "auth", "nc": "00000001", "cnonce": "c0",
              "algorithm": "MD5"}
    RadiusDigest(c, "node-a").verify(params, "REGISTER").addCallback(results.append)
    (data, _), = sent(reactor)
    request = packet.AuthPacket(packet=data, secret=SECRET, dict=dictionary())
    assert request["User-Name"] == ["alice"]
    assert request["Digest-Response"] == ["0123abcd"]
    assert request["Service-Type"] == ["Sip-Session"]
    subs = {raw[0]: raw[2:].decode() for raw in request["Digest-Attributes"]}
    assert subs == {DIGEST_SUB["realm"]: "example.test", DIGEST_SUB["nonce"]: "n0",
                    DIGEST_SUB["method"]: "REGISTER", DIGEST_SUB["uri"]: "sip:example.test",
                    DIGEST_SUB["qop"]: "auth", DIGEST_SUB["algorithm"]: "MD5",
                    DIGEST_SUB["cnonce"]: "c0", DIGEST_SUB["nc"]: "00000001",
                    DIGEST_SUB["username"]: "alice"}
    c.datagramReceived(answer(c, data, code=packet.AccessReject), PRIMARY)
    assert results == [False]


def test_identifiers_run_out_rather_than_collide():
    reactor, c = client()
    for _ in range(256):
        c.send(c.auth_packet(User_Name="a"))
    results = []
    c.send(c.auth_packet(User_Name="a")).addErrback(results.append)
    assert results[0].check(RadiusUnavailable)


def test_long_values_are_refused():
    with pytest.raises(ValueError):
        digest_attributes({"uri": "x" * 300}, "INVITE")


# -- accounting ----------------------------------------------------------------

def acct_answer(data, secret=SECRET):
    request = packet.AcctPacket(packet=data, secret=secret, dict=dictionary())
    return request.CreateReply().ReplyPacket(), request


def accounting(tmp_path, reactor=None, c=None):
    from sipcluster.policy.radius import AccountingSpool, RadiusAccounting
    if c is None:
        reactor, c = client(servers=(PRIMARY,), retries=0)
    spool = AccountingSpool(str(tmp_path), reactor, in_thread=lambda f, *a: _done(f(*a)))
    stage = RadiusAccounting(c, spool, reactor, "node-a", failed_calls=True, retry=5.0)
    stage.start()
    return reactor, c, stage


def _done(value):
    from twisted.internet import defer
    return defer.succeed(value)


def call(n=1):
    from sipcluster.sip.message import parse_message
    from tests.sipdata import crlf
    invite = parse_message(crlf("""\
INVITE sip:bob@example.test SIP/2.0
Via: SIP/2.0/UDP 10.0.0.5:5090;branch=z9hG4bKc{n}
Max-Forwards: 70
From: <sip:alice@example.test>;tag=a{n}
To: <sip:bob@example.test>
Call-ID: call-{n}
CSeq: 1 INVITE
Content-Length: 0

""".format(n=n)))
    ok = parse_message(crlf("""\
SIP/2.0 200 OK
Via: SIP/2.0/UDP 10.0.0.5:5090;branch=z9hG4bKc{n}
From: <sip:alice@example.test>;tag=a{n}
To: <sip:bob@example.test>;tag=b{n}
Call-ID: call-{n}
CSeq: 1 INVITE
Content-Length: 0

""".format(n=n)))
    bye = parse_message(crlf("""\
BYE sip:bob@10.0.0.6 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.6:5090;branch=z9hG4bKb{n}
Max-Forwards: 70
From: <sip:bob@example.test>;tag=b{n}
To: <sip:alice@example.test>;tag=a{n}
Call-ID: call-{n}
CSeq: 1 BYE
Content-Length: 0

""".format(n=n)))
    return invite, ok, bye


def test_start_then_stop_with_the_duration_acknowledged_records_leave_the_spool(tmp_path):
    reactor, c, stage = accounting(tmp_path)
    invite, ok, bye = call()
    stage.dialog_confirmed(invite, ok)
    (data, _), = sent(reactor)
    reply, start = acct_answer(data)
    assert start["Acct-Status-Type"] == ["Start"] and start["Acct-Session-Id"] == ["call-1"]
    assert start["Calling-Station-Id"] == ["sip:alice@example.test"]
    assert len(os.listdir(tmp_path)) == 1
    c.datagramReceived(reply, PRIMARY)
    assert os.listdir(tmp_path) == []
    reactor.advance(42)
    stage.dialog_ended(bye, ok)  # the callee hangs up: tags the other way round
    (data, _), = sent(reactor)
    reply, stop = acct_answer(data)
    assert stop["Acct-Status-Type"] == ["Stop"] and stop["Acct-Session-Time"] == [42]
    assert stop["Acct-Terminate-Cause"] == [1] and stop["Sip-Response-Code"] == [200]


def test_an_outage_keeps_every_record_and_a_restart_resends_them_in_order(tmp_path):
    reactor, c, stage = accounting(tmp_path)
    for n in (1, 2, 3):
        invite, ok, _ = call(n)
        stage.dialog_confirmed(invite, ok)
    assert len(sent(reactor)) == 3
    reactor.advance(1.0)  # no answer, no retries: unavailable
    assert len(os.listdir(tmp_path)) == 3 and stage._paused
    reactor.advance(5.0)  # one try of the oldest
    (data, _), = sent(reactor)
    assert acct_answer(data)[1]["Acct-Session-Id"] == ["call-1"]
    stage.stop()
    c.stop()
    # A new node on the same spool (after a restart): all three, oldest first.
    reactor2, c2 = client(servers=(PRIMARY,), retries=0)
    _, c2, stage2 = accounting(tmp_path, reactor2, c2)
    out = sent(reactor2)
    ids = [acct_answer(d)[1]["Acct-Session-Id"][0] for d, _ in out]
    assert ids == ["call-1", "call-2", "call-3"]
    assert all(acct_answer(d)[1]["Acct-Delay-Time"] == [0] for d, _ in out)  # same clock origin
    for d, _ in out:
        c2.datagramReceived(acct_answer(d)[0], PRIMARY)
    assert os.listdir(tmp_path) == []


def test_failed_attempts_only_when_asked(tmp_path):
    reactor, c, stage = accounting(tmp_path)
    invite, ok, _ = call()
    from sipcluster.sip.message import make_response
    stage.call_failed(invite, make_response(invite, 486), 0.0)
    (data, _), = sent(reactor)
    record = acct_answer(data)[1]
    assert record["Acct-Status-Type"] == ["Failed"] and record["Sip-Response-Code"] == [486]
    stage.failed_calls = False
    stage.call_failed(invite, make_response(invite, 486), 0.0)
    assert sent(reactor) == []


def test_a_dialog_that_expired_without_bye_gets_a_session_timeout_stop(tmp_path):
    class Registry:
        on_end = []
    registry = Registry()
    reactor, c = client(servers=(PRIMARY,), retries=0)
    from sipcluster.policy.radius import AccountingSpool, RadiusAccounting
    stage = RadiusAccounting(c, AccountingSpool(str(tmp_path), reactor, lambda f, *a: _done(f(*a))),
                             reactor, "node-a", dialogs=lambda: registry)
    stage.start()
    stage.start()
    assert registry.on_end == [stage.dialog_expired]  # hooked once
    stage.dialog_expired({"state": "terminated", "call_id": "x"})
    assert sent(reactor) == []  # its BYE already made the Stop
    stage.dialog_expired({"state": "expired", "call_id": "c9", "from": "sip:a@x", "to": "sip:b@x",
                          "duration": 14400.2})
    (data, _), = sent(reactor)
    stop = acct_answer(data)[1]
    assert stop["Acct-Status-Type"] == ["Stop"] and stop["Acct-Session-Time"] == [14400]
    assert stop["Acct-Terminate-Cause"] == [5] and "Sip-Response-Code" not in stop


def test_a_single_node_with_accounting_follows_its_dialogs_for_their_expiry(tmp_path):
    from tests.harness import NodeHarness
    h = NodeHarness({"radius": {"accounting_servers": ["127.0.0.1:1813"], "secret": "s",
                                "accounting_spool": str(tmp_path)}})
    assert h.node.dialogs is not None
    assert h.node.radius_accounting.dialog_expired in h.node.dialogs.on_end
    names = [s.name for s in h.node.pipeline.dialog]
    assert names.index("radius-accounting") < names.index("dialogs")  # sees records before they go


# -- what the configuration refuses ---------------------------------------------

@pytest.mark.parametrize("data, expected", [
    ({"auth": {"enabled": True, "verify": "radius", "algorithms": ["MD5"]}},
     'radius.servers: expected at least one server with auth.verify = "radius"'),
    ({"auth": {"enabled": True, "verify": "radius"}, "radius": {"servers": ["127.0.0.1:1812"]}},
     'auth.algorithms: expected ["MD5"] with auth.verify = "radius"'),
    ({"radius": {"servers": ["127.0.0.1"]}},
     'expected "host:port", e.g. "127.0.0.1:1812", got "127.0.0.1"'),
    ({"radius": {"accounting_servers": ["127.0.0.1:99999"]}}, 'got "127.0.0.1:99999"'),
    ({"radius": {"accounting_servers": ["127.0.0.1:1813"]}},
     "radius.accounting_spool: expected a directory"),
    ({"radius": {"accounting_servers": ["127.0.0.1:1813"], "accounting_spool": "/nonexistent/spool"}},
     'radius.accounting_spool: expected a writable directory, got "/nonexistent/spool"'),
    ({"radius": {"accounting_servers": ["127.0.0.1:1813"], "accounting_spool": "FILE"}},
     "radius.accounting_spool: expected a writable directory"),
    ({"node": {"mode": "stateless"},
      "radius": {"accounting_servers": ["127.0.0.1:1813"], "accounting_spool": "SPOOL"}},
     'radius.accounting_servers: needs node.mode = "stateful"'),
])
def test_config_refuses_radius_settings_that_cannot_work(tmp_path, data, expected):
    from sipcluster import config
    radius = data.get("radius", {})
    if radius.get("accounting_spool") == "SPOOL":
        radius["accounting_spool"] = str(tmp_path)
    elif radius.get("accounting_spool") == "FILE":
        radius["accounting_spool"] = str(tmp_path / "a-file")
        (tmp_path / "a-file").write_text("")
    with pytest.raises(config.ConfigError) as e:
        config.build(data, "n.toml")
    assert expected in str(e.value)


def test_short_or_undecodable_datagrams_are_not_answers():
    reactor, c = client()
    results = []
    c.send(c.auth_packet(User_Name="alice")).addCallback(results.append)
    (data, _), = sent(reactor)
    c.datagramReceived(b"\x02", PRIMARY)
    # The id of the request asked, a length no packet has.
    c.datagramReceived(b"\x02" + data[1:2] + b"\x00\x05" + b"\x00" * 16, PRIMARY)
    assert results == [] and c.stats["answered"] == 0
    c.datagramReceived(answer(c, data), PRIMARY)
    assert [r.code for r in results] == [packet.AccessAccept]


def test_the_spool_passes_over_other_files_and_records_it_cannot_read(tmp_path):
    from sipcluster.policy.radius import AccountingSpool
    reactor = Reactor()
    spool = AccountingSpool(str(tmp_path), reactor, in_thread=lambda f, *a: _done(f(*a)))
    name = spool.add({"status": "Start", "call_id": "call-1"})
    (tmp_path / "notes.txt").write_text('{"status": "Stop", "call_id": "not a record"}')
    (tmp_path / "0000000000000000001-stop.acct").write_bytes(b"{ half a rec")
    assert spool.waiting() == [(name, {"status": "Start", "call_id": "call-1"})]
    spool.remove(name)
    spool.remove(name)  # already gone: nothing to do
    assert sorted(os.listdir(tmp_path)) == ["0000000000000000001-stop.acct", "notes.txt"]


def test_an_expired_dialog_is_forgotten_so_a_late_bye_adds_no_session_time(tmp_path):
    reactor, c, stage = accounting(tmp_path)
    invite, ok, bye = call()
    stage.dialog_confirmed(invite, ok)
    (data, _), = sent(reactor)
    c.datagramReceived(acct_answer(data)[0], PRIMARY)
    reactor.advance(100)
    stage.dialog_expired({"state": "expired", "call_id": "call-1", "from": "sip:alice@example.test",
                          "to": "sip:bob@example.test", "duration": 100})
    (data, _), = sent(reactor)
    reply, stop = acct_answer(data)
    assert stop["Acct-Session-Time"] == [100] and stop["Acct-Terminate-Cause"] == [5]
    c.datagramReceived(reply, PRIMARY)
    reactor.advance(5)
    stage.dialog_ended(bye, ok)  # the BYE after all: its Stop bills nothing more
    (data, _), = sent(reactor)
    assert acct_answer(data)[1]["Acct-Session-Time"] == [0]


def test_a_bye_through_another_node_takes_the_start_from_the_shared_dialog_registry(tmp_path):
    # In a cluster the INVITE may have gone through another node: the
    # dialog registry (shared through the store) knows when it started.
    class Registry:
        on_end = []
        dialogs = {}
    registry = Registry()
    reactor, c = client(servers=(PRIMARY,), retries=0)
    from sipcluster.policy.radius import AccountingSpool, RadiusAccounting
    stage = RadiusAccounting(c, AccountingSpool(str(tmp_path), reactor, lambda f, *a: _done(f(*a))),
                             reactor, "node-b", dialogs=lambda: registry)
    stage.start()
    _, ok, bye = call()
    # The registry's key is the caller's tags; the callee's BYE has them the other way round.
    registry.dialogs["call-1;a1;b1"] = {"started": 40.0}
    reactor.advance(100)
    stage.dialog_ended(bye, ok)
    (data, _), = sent(reactor)
    stop = acct_answer(data)[1]
    assert stop["Acct-Status-Type"] == ["Stop"] and stop["Acct-Session-Time"] == [60]
