"""sipcluster.policy.radius: the RADIUS client on a Clock and a fake socket, and digest requests."""

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
