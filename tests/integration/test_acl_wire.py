"""
IP access lists on a real twistd node: a denied source answered 403 or
dropped, a source outside the allow list refused, others served.
"""

import pytest

from tests.integration.nodes import UDPAgent, next_host
from tests.integration.test_pipeline_wire import final, request


def node_with(net, acl):
    path = net.tmp / "acl.toml"
    path.write_text('[sip]\ndomains = ["example.test"]\n[acl]\n' + acl)
    return net.node("--config", str(path))


def options_from(agent, node):
    agent.send(request((agent.host, agent.port), node, "OPTIONS", "sip:%s:%d" % (node.host, node.port)),
               (node.host, node.port))
    return final(agent, timeout=2)


@pytest.mark.parametrize("action,expected", [("reject", 403), ("drop", None)])
def test_denied_source_is_refused_others_served(net, action, expected):
    denied, other = next_host(), next_host()
    node = node_with(net, 'deny = ["%s/32"]\ndeny_action = "%s"\n' % (denied, action))
    bad, good = UDPAgent(denied), UDPAgent(other)
    try:
        answer = options_from(bad, node)
        assert (answer and answer.status) == expected
        if expected is None:
            assert bad.recv_all(1.0) == []  # not late either
        assert options_from(good, node).status == 200
    finally:
        bad.close()
        good.close()


def test_allow_list_refuses_every_other_source(net):
    outside = next_host()
    # The node's own address stays allowed (the test harness pings it).
    node = node_with(net, 'allow = ["%s/32", "::1"]\n' % net.host)
    inside, stranger = UDPAgent(net.host), UDPAgent(outside)
    try:
        assert options_from(inside, node).status == 200
        assert options_from(stranger, node).status == 403
    finally:
        inside.close()
        stranger.close()
