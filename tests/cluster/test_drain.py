"""The drain gate and the cluster's shared Record-Route name, in-process."""

import pytest

from sipcluster.cluster.drain import DrainGate
from sipcluster.proxy.forwarding import Reject
from sipcluster.sip.message import parse_message
from tests.harness import Harness
from tests.sipdata import INVITE


class FakeMembership:
    def __init__(self, nodes):
        self.nodes = nodes
        self.updates = []

    def update(self, **changes):
        from twisted.internet import defer
        self.updates.append(changes)
        return defer.succeed(None)


def gate(action="reject", nodes=None):
    membership = FakeMembership(nodes or {})
    g = DrainGate(None, membership, "/sc", "a", action, retry_after=20)
    return g, membership


def test_active_node_lets_everything_through():
    g, _ = gate()
    g(parse_message(INVITE))


def test_draining_refuses_new_invites_only():
    g, membership = gate()
    g._set(True)
    assert membership.updates == [{"state": "draining"}]
    with pytest.raises(Reject) as e:
        g(parse_message(INVITE))
    assert e.value.status == 503 and ("Retry-After", "20") in e.value.extra
    in_dialog = parse_message(INVITE.replace(b"To: Bob <sip:bob@biloxi.example.com>",
                                             b"To: Bob <sip:bob@biloxi.example.com>;tag=x"))
    g(in_dialog)  # re-INVITE in a running dialog passes
    bye = parse_message(INVITE.replace(b"INVITE sip:", b"BYE sip:").replace(b"314159 INVITE", b"314160 BYE"))
    g(bye)
    g._set(False)
    g(parse_message(INVITE))
    assert membership.updates[-1] == {"state": "active"}


def test_redirect_to_an_active_node():
    nodes = {"a": {"state": "draining", "addresses": ["udp:127.0.0.2:5060"]},
             "b": {"state": "draining", "addresses": ["udp:127.0.0.3:5060"]},
             "c": {"state": "active", "addresses": ["tcp:127.0.0.4:5060", "udp:127.0.0.4:5060"]}}
    g, _ = gate("redirect", nodes)
    g._set(True)
    with pytest.raises(Reject) as e:
        g(parse_message(INVITE))
    assert e.value.status == 302
    assert e.value.extra == [("Contact", "<sip:bob@127.0.0.4:5060>")]
    del nodes["c"]
    with pytest.raises(Reject) as e:
        g(parse_message(INVITE))
    assert e.value.status == 503  # nowhere to send it


def test_cluster_name_in_record_route_and_taken_as_ours():
    h = Harness()
    h.layer.set_cluster_name("sip.example.test")
    assert str(h.layer.record_route_uri("udp")) == "sip:sip.example.test;lr"
    assert str(h.layer.record_route_uri("tcp")) == "sip:sip.example.test;transport=tcp;lr"
    assert h.layer.is_local("SIP.example.test", 5060)
    assert not h.layer.is_local("other.example.test", 5060)
    h.layer.set_cluster_name("sip.example.test:5070")
    assert str(h.layer.record_route_uri("udp")) == "sip:sip.example.test:5070;lr"
