"""
Digest authentication on real twistd nodes, on the wire: the shipped
ops/examples/auth.toml, each algorithm, what is refused (wrong password,
replay, forged and stale nonces, someone else's AOR), trusted peers, and
SIPp answering challenges with [authentication].
"""

import json
import os
import uuid

import pytest

from sipcluster.policy.users import make_record, write_users_file
from tests.digestclient import challenge_params, credentials
from tests.integration.nodes import ROOT, UDPAgent, next_host, requires_sipp, scenario
from tests.integration.test_pipeline_wire import final

EXAMPLE = os.path.join(ROOT, "ops", "examples", "auth.toml")
PASSWORDS = {"alice": "sip-demo-Plover-7319", "bob": "sip-demo-Marten-4682"}


def example_node(net):
    """ops/examples/auth.toml as shipped, on this test's address instead of 127.0.0.1."""
    return net.node("--config", EXAMPLE)


def node_with(net, auth="", acl="", algorithms=("SHA-512-256", "SHA-256", "MD5")):
    users = net.tmp / "users.json"
    write_users_file(str(users), {u: make_record(u, "example.test", p, algorithms)
                                  for u, p in PASSWORDS.items()})
    path = net.tmp / "auth.toml"
    path.write_text('[sip]\ndomains = ["example.test"]\n[auth]\nenabled = true\n'
                    'users_file = "users.json"\n%s\n[acl]\n%s\n' % (auth, acl))
    return net.node("--config", str(path))


class Phone:
    """A UDP agent registering and calling through a node, answering challenges by the RFC."""

    def __init__(self, host, node):
        self.ua = UDPAgent(host)
        self.node = node
        self.call_id = uuid.uuid4().hex
        self.cseq = 0

    def close(self):
        self.ua.close()

    def request(self, method="REGISTER", user="alice", aor=None, uri=None, auth=None,
                header="Authorization", branch=None, call_id=None):
        self.cseq += 1
        aor = aor or "sip:%s@example.test" % user
        uri = uri or "sip:example.test"
        to = aor if method == "REGISTER" else "sip:bob@example.test"
        extra = "%s: %s\r\n" % (header, auth) if auth else ""
        if method == "REGISTER":
            extra += "Contact: <sip:%s@%s:%d>\r\n" % (user, self.ua.host, self.ua.port)
        data = ("%s %s SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bK%s;rport\r\n"
                "Max-Forwards: 70\r\nFrom: <%s>;tag=t%s\r\nTo: <%s>\r\nCall-ID: %s\r\n"
                "CSeq: %d %s\r\n%sContent-Length: 0\r\n\r\n" % (
                    method, uri, self.ua.host, self.ua.port, branch or uuid.uuid4().hex, aor,
                    self.call_id[:8], to, call_id or self.call_id, self.cseq, method, extra))
        self.ua.send(data.encode(), (self.node.host, self.node.port))
        return final(self.ua)

    def challenge(self, algorithm, **kw):
        answer = self.request(**kw)
        assert answer is not None and answer.status in (401, 407), answer
        name = "www-authenticate" if answer.status == 401 else "proxy-authenticate"
        for value in answer.values(name):
            if challenge_params(value)["algorithm"] == algorithm:
                return answer, value
        raise AssertionError("no %s challenge in %r" % (algorithm, answer.values(name)))

    def register(self, algorithm="SHA-256", password=None, user="alice", nc=1, challenge=None,
                 **kw):
        if challenge is None:
            _, challenge = self.challenge(algorithm, user=user, **kw)
        creds = credentials(challenge, "REGISTER", "sip:example.test", user,
                            password or PASSWORDS[user], nc=nc, algorithm=algorithm)
        return self.request(user=user, auth=creds, **kw), challenge


@pytest.fixture
def phone(net):
    phones = []

    def make(node, host=None):
        p = Phone(host or net.host, node)
        phones.append(p)
        return p
    yield make
    for p in phones:
        p.close()


def test_the_shipped_example_challenges_and_accepts_its_users(net, phone):
    node = example_node(net)
    p = phone(node)
    answer, _ = p.challenge("SHA-256")
    assert [challenge_params(v)["algorithm"] for v in answer.values("www-authenticate")] == [
        "SHA-256", "MD5"]
    assert {challenge_params(v)["realm"] for v in answer.values("www-authenticate")} == {"example.test"}
    for algorithm in ("SHA-256", "MD5"):
        assert p.register(algorithm)[0].status == 200
        assert p.register(algorithm, user="bob", aor="sip:bob@example.test")[0].status == 200
    assert p.register("MD5", password="sip-demo-Plover-7318")[0].status == 401
    # INVITE and MESSAGE from our users: 407.
    for method in ("INVITE", "MESSAGE"):
        assert p.request(method, uri="sip:bob@example.test").status == 407


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256", "SHA-512-256"])
def test_each_algorithm_is_accepted(net, phone, algorithm):
    p = phone(node_with(net))
    answer, _ = p.register(algorithm)
    assert answer.status == 200
    assert [c.uri.port for c in answer.contacts] == [p.ua.port]


def test_wrong_password_replay_forged_and_stale_are_refused(net, phone):
    p = phone(node_with(net, auth="nonce_expires_s = 10"))
    assert p.register(password="not-the-Password-1")[0].status == 401
    ok, challenge = p.register(nc=1)
    assert ok.status == 200
    # The same nonce and nonce-count again, in a new transaction: a replay.
    assert p.register(nc=1, challenge=challenge)[0].status == 401
    assert p.register(nc=2, challenge=challenge)[0].status == 200
    forged = challenge.replace(challenge_params(challenge)["nonce"], "A" * 43)
    assert p.register(challenge=forged)[0].status == 401
    import time
    time.sleep(11)
    stale, _ = p.register(nc=3, challenge=challenge)
    assert stale.status == 401
    assert all(challenge_params(v).get("stale") == "true" for v in stale.values("www-authenticate"))


def test_registering_someone_elses_aor_is_403(net, phone):
    p = phone(node_with(net))
    _, challenge = p.challenge("SHA-256", aor="sip:bob@example.test")
    creds = credentials(challenge, "REGISTER", "sip:example.test", "alice", PASSWORDS["alice"])
    answer = p.request(aor="sip:bob@example.test", auth=creds)
    assert answer.status == 403


def test_trusted_peers_skip_digest_others_are_challenged(net, phone):
    trunk = next_host()
    node = node_with(net, acl='trusted = ["%s/32"]' % trunk)
    assert phone(node, trunk).request().status == 200
    assert phone(node).request().status == 401


@requires_sipp
def test_sipp_registers_and_calls_answering_challenges(net):
    # SIPp 3.6 computes MD5 digests only: a node offering MD5.
    node = node_with(net, auth='algorithms = ["MD5"]', algorithms=("MD5",))
    reg = net.sipp("reg", "-sf", scenario("register_auth.xml"), node.host + ":5060",
                   "-p", "5081", "-m", "1", "-au", "alice", "-ap", PASSWORDS["alice"],
                   "-s", "alice")
    assert reg.wait() == 0
    uas = net.sipp("uas", "-sn", "uas", "-p", "5070")
    uac = net.sipp("uac", "-sf", scenario("uac_auth_call.xml"), "%s:5070" % net.host,
                   "-rsa", "%s:5060" % node.host, "-p", "5080", "-m", "2", "-r", "10",
                   "-au", "alice", "-ap", PASSWORDS["alice"], "-s", "bob")
    assert uac.wait() == 0
    uas.stop()
    statuses = [m.status for m in uac.received()]
    assert statuses.count(407) == 2 and statuses.count(200) == 4  # 2 INVITE + 2 BYE
    invites = [m for m in uas.received() if getattr(m, "method", None) == "INVITE"]
    assert len(invites) == 2
    # Our credentials stopped at the node.
    assert not any(m.has("proxy-authorization") for m in invites)
    regs = [m for d, m in reg.messages() if d == "sent" and getattr(m, "method", "") == "REGISTER"]
    assert len(regs) == 2 and regs[1].has("authorization")
