"""sipcluster.policy.acl: allow, deny and trusted source networks, on a whole node in memory."""

import pytest

from sipcluster import config
from sipcluster.config import ConfigError
from sipcluster.policy.acl import AccessList, source_address
from tests.harness import NodeHarness
from tests.sipdata import crlf


def options(branch="z9hG4bKacl1", user="alice"):
    return crlf("""\
OPTIONS sip:{user}@example.test SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5090;branch={branch};rport
Max-Forwards: 70
From: <sip:{user}@example.test>;tag=f1
To: <sip:{user}@example.test>
Call-ID: acl-{branch}
CSeq: 1 OPTIONS
Content-Length: 0

""".format(branch=branch, user=user))


def node(mode="stateful", **acl):
    return NodeHarness({"node": {"mode": mode}, "sip": {"domains": ["example.test"]},
                        "acl": acl})


_branches = iter(range(10**6))


def answers(h, addr, branch=None):
    h.receive(options(branch or "z9hG4bKacl%d" % next(_branches)), addr)
    return [m.status for m, a in h.sent() if a == addr]


@pytest.mark.parametrize("mode", ["stateful", "stateless"])
def test_denied_sources_get_403_and_others_pass(mode):
    h = node(mode, deny=["192.0.2.0/24", "2001:db8::/32"])
    assert answers(h, ("192.0.2.7", 5090)) == [403]
    assert answers(h, ("2001:db8::5", 5090)) == [403]
    # Not denied: on to the location service (no binding: 404 for OPTIONS to a user).
    assert answers(h, ("198.51.100.1", 5090)) == [404]
    assert h.node.acl.stats["rejected"] == 2


@pytest.mark.parametrize("mode", ["stateful", "stateless"])
def test_drop_answers_nothing_and_leaves_no_transaction(mode):
    h = node(mode, deny=["192.0.2.0/24"], deny_action="drop")
    assert answers(h, ("192.0.2.7", 5090)) == []
    h.advance(40)
    assert h.sent() == []
    if mode == "stateful":
        assert not h.node.transactions.servers
    # A retransmission is dropped the same way.
    assert answers(h, ("192.0.2.7", 5090), "z9hG4bKsame") == []
    assert answers(h, ("192.0.2.7", 5090), "z9hG4bKsame") == []
    assert h.node.acl.stats["dropped"] == 3


def test_allow_list_refuses_everything_outside_it():
    h = node(allow=["10.0.0.0/8", "::1/128"])
    assert answers(h, ("10.1.2.3", 5090)) == [404]
    assert answers(h, ("::1", 5090)) == [404]
    assert answers(h, ("172.16.0.1", 5090)) == [403]


def test_deny_wins_over_allow_and_trusted():
    stage = AccessList(allow=["10.0.0.0/8"], deny=["10.9.0.0/16"], trusted=["10.9.9.9"])
    assert stage.verdict("10.9.9.9") == "deny"
    assert stage.verdict("10.1.1.1") == "allow"
    assert stage.verdict("not-an-address") == "deny"


def test_verdicts_are_remembered_by_source_and_bounded(monkeypatch):
    stage = AccessList(allow=["10.0.0.0/8"], deny=["10.9.0.0/16"], trusted=["10.8.0.1"])
    sources = {"10.9.9.9": "deny", "10.1.1.1": "allow", "10.8.0.1": "trusted",
               "172.16.0.1": "deny", "not-an-address": "deny"}
    for host, verdict in sources.items():
        assert stage.verdict(host) == verdict
    assert stage._verdicts == sources
    # Asked again: from the memo, nothing parsed.
    from sipcluster.policy import acl
    monkeypatch.setattr(acl, "source_address", None)
    for host, verdict in sources.items():
        assert stage.verdict(host) == verdict
    monkeypatch.undo()
    stage.VERDICTS_SIZE = 2
    stage._verdicts.clear()
    for host in ("10.9.9.9", "10.1.1.1", "10.8.0.1"):
        stage.verdict(host)
    assert stage._verdicts == {"10.8.0.1": "trusted"}


def test_trusted_peers_are_marked_for_authentication():
    stage = AccessList(trusted=["203.0.113.0/24"], allow=["10.0.0.0/8"])
    assert stage.verdict("203.0.113.9") == "trusted"  # trusted implies allowed

    class Context:
        vars = {}
        source = type("S", (), {"host": "203.0.113.9"})()
    context = Context()
    assert stage.on_request(context) is None
    assert context.vars == {"trusted": True}


def test_ipv4_mapped_sources_match_ipv4_networks():
    assert str(source_address("::ffff:192.0.2.1")) == "192.0.2.1"
    assert AccessList(deny=["192.0.2.0/24"]).verdict("::ffff:192.0.2.1") == "deny"


def test_no_lists_no_stage():
    assert node().node.acl is None
    assert "acl" not in [s.name for s in node().node.pipeline.stages]


def test_acl_runs_before_admission_stages():
    h = NodeHarness({"acl": {"deny": ["192.0.2.0/24"]}, "cluster": {"max_dialogs": 5}})
    assert [s.name for s in h.node.pipeline.request] == ["acl", "dialog-limit"]


def test_a_bad_network_is_a_config_error():
    with pytest.raises(ConfigError) as e:
        config.build({"acl": {"deny": ["10.0.0.0/8", "10.0.0.300/8"]}}, "n.toml")
    assert str(e.value).startswith('n.toml: acl.deny: item 1 ("10.0.0.300/8"): expected a network')
