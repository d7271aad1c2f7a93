"""
The request pipeline on real twistd nodes, on the wire: the defects real
clients found (REGISTER through an outbound proxy, a To that does not
parse, third-party registrations over TCP, a target that is the node
itself), one debug line per message, log.level, and readable reason
phrases.
"""

import os
import re
import socket
import subprocess
import sys
import time
import uuid

import pytest

from sipcluster.sip.framing import StreamFramer
from sipcluster.sip.message import parse_message
from tests.integration.nodes import ROOT, UDPAgent, next_host


def request(agent, node, method, uri, to="sip:alice@example.test", frm=None, extra="",
            call_id=None, cseq=1, transport="UDP"):
    """The bytes of a request from C{agent} (host, port) to C{node}."""
    frm = frm or to
    return ("{m} {uri} SIP/2.0\r\nVia: SIP/2.0/{t} {a}:{p};branch=z9hG4bK{b};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <{f}>;tag=f{b}\r\nTo: <{to}>\r\nCall-ID: {c}\r\n"
            "CSeq: {n} {m}\r\n{extra}Content-Length: 0\r\n\r\n").format(
                m=method, uri=uri, t=transport, a=agent[0], p=agent[1], b=uuid.uuid4().hex[:10],
                f=frm, to=to, c=call_id or uuid.uuid4().hex, n=cseq, extra=extra).encode()


def final(agent, timeout=5):
    """The first final response C{agent} receives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = agent.recv(deadline - time.monotonic())
        if message is None:
            return None
        if getattr(message, "status", 0) >= 200:
            return message
    return None


class TCPAgent:
    """A TCP connection to a node, reading whole SIP messages."""

    def __init__(self, host, node):
        self.sock = socket.create_connection((node.host, node.port), timeout=5,
                                             source_address=(host, 0))
        self.host, self.port = self.sock.getsockname()
        self.framer = StreamFramer()
        self.pending = []

    def send(self, data):
        self.sock.sendall(data)

    def recv(self, timeout=3.0):
        deadline = time.monotonic() + timeout
        while not self.pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                return None
            if not data:
                return None
            self.pending += [parse_message(m) for m in self.framer.feed(data)
                             if isinstance(m, bytes)]
        return self.pending.pop(0)

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("mode", ["stateful", "stateless"])
def test_register_through_an_outbound_proxy_reaches_the_registrar(net, mode):
    # The way most phones are set up (baresip's outbound=, sipsak -f):
    # Route names the node, the Request-URI is the domain (RFC 3261 16.4).
    node = net.node("--domain", "example.test", "--mode", mode)
    phone = UDPAgent(net.host)
    try:
        phone.send(request((phone.host, phone.port), node, "REGISTER", "sip:example.test",
                           extra="Route: <sip:%s:5060;lr>\r\nContact: <sip:alice@%s:%d>\r\n" % (
                               node.host, phone.host, phone.port)), (node.host, 5060))
        answer = final(phone)
        assert answer is not None and answer.status == 200, answer
        assert [str(c.uri) for c in answer.contacts] == ["sip:alice@%s:%d" % (phone.host, phone.port)]
        # ... and the binding is used: an INVITE for alice reaches the phone.
        caller = UDPAgent(net.host)
        caller.send(request((caller.host, caller.port), node, "INVITE", "sip:alice@example.test",
                            frm="sip:bob@example.test"), (node.host, 5060))
        delivered = [m for m in phone.recv_all(2) if getattr(m, "method", None) == "INVITE"]
        assert [str(m.uri) for m in delivered[:1]] == ["sip:alice@%s:%d" % (phone.host, phone.port)]
        caller.close()
    finally:
        phone.close()


@pytest.mark.parametrize("mode", ["stateful", "stateless"])
def test_max_forwards_zero_register_is_483_in_both_modes(net, mode):
    node = net.node("--domain", "example.test", "--mode", mode)
    phone = UDPAgent(net.host)
    data = request((phone.host, phone.port), node, "REGISTER", "sip:example.test",
                   extra="Proxy-Require: foo\r\nContact: <sip:alice@%s:%d>\r\n" % (phone.host, phone.port))
    phone.send(data.replace(b"Max-Forwards: 70", b"Max-Forwards: 0"), (node.host, 5060))
    assert final(phone).status == 483
    # Nothing was stored: a query lists no binding.
    phone.send(request((phone.host, phone.port), node, "REGISTER", "sip:example.test"), (node.host, 5060))
    answer = final(phone)
    assert answer.status == 200 and answer.contacts == []
    phone.close()


@pytest.mark.parametrize("mode", ["stateful", "stateless"])
def test_unparseable_to_uri_is_400_not_forwarded(net, mode):
    node = net.node("--domain", "example.test", "--mode", mode)
    caller, callee = UDPAgent(net.host), UDPAgent(net.host)
    caller.send(request((caller.host, caller.port), node, "INVITE",
                        "sip:bob@%s:%d" % (callee.host, callee.port),
                        to="sip:bob@exa mple.test", frm="sip:alice@example.test"), (node.host, 5060))
    answer = final(caller)
    assert answer is not None and answer.status == 400 and "exa mple.test" in answer.reason
    assert callee.recv(1) is None  # never forwarded
    caller.close()
    callee.close()


def test_third_party_register_over_tcp_delivers_to_the_registered_contact(net):
    node = net.node("--domain", "example.test")
    # Carol's UA listens on TCP at an address of its own.
    carol_host = next_host()
    listener = socket.socket()
    listener.bind((carol_host, 0))
    listener.listen(4)
    listener.settimeout(5)
    carol = listener.getsockname()
    # A secretary's UA registers carol's contact for her, over TCP.
    secretary = TCPAgent(net.host, node)
    secretary.send(request((secretary.host, secretary.port), node, "REGISTER", "sip:example.test",
                           to="sip:carol@example.test", frm="sip:secretary@example.test",
                           transport="TCP", extra="Contact: <sip:carol@%s:%d;transport=tcp>\r\n" % carol))
    assert secretary.recv().status == 200
    caller = UDPAgent(net.host)
    caller.send(request((caller.host, caller.port), node, "INVITE", "sip:carol@example.test",
                        to="sip:carol@example.test", frm="sip:bob@example.test"), (node.host, 5060))
    try:
        conn, _ = listener.accept()
    except socket.timeout:
        pytest.fail("the INVITE never reached carol's contact (secretary got: %r)" % secretary.recv(1))
    conn.settimeout(5)
    framer = StreamFramer()
    got = []
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        got = [m for m in framer.feed(conn.recv(65535)) if isinstance(m, bytes)]
    assert parse_message(got[0]).method == "INVITE"
    assert secretary.recv(1) is None  # not over the registering connection
    for s in (conn, listener):
        s.close()
    secretary.close()
    caller.close()


def test_own_tcp_registration_is_still_reached_over_its_connection(net):
    # The registering UA itself (contact on its own host): its connection
    # is reused, as a UA behind a firewall needs.
    node = net.node("--domain", "example.test")
    phone = TCPAgent(net.host, node)
    phone.send(request((phone.host, phone.port), node, "REGISTER", "sip:example.test",
                       transport="TCP", extra="Contact: <sip:alice@%s:5999;transport=tcp>\r\n" % phone.host))
    assert phone.recv().status == 200
    caller = UDPAgent(net.host)
    caller.send(request((caller.host, caller.port), node, "INVITE", "sip:alice@example.test",
                        frm="sip:bob@example.test"), (node.host, 5060))
    message = phone.recv(5)
    assert message is not None and message.method == "INVITE"
    phone.close()
    caller.close()


@pytest.mark.parametrize("registered_over", ["udp", "tcp"])
def test_a_target_that_is_the_node_itself_gets_a_final_answer_over_tcp(net, registered_over):
    # A phone on another host registers a contact pointing back at the node
    # (;transport=tcp); a caller on TCP then calls that user.
    node = net.node("--domain", "example.test")
    contact = "Contact: <sip:loop@%s:5060;transport=tcp>\r\n" % node.host
    if registered_over == "udp":
        phone = UDPAgent(next_host())
        phone.send(request((phone.host, phone.port), node, "REGISTER", "sip:example.test",
                           extra=contact), (node.host, 5060))
        assert final(phone).status == 200
    else:
        phone = TCPAgent(next_host(), node)
        phone.send(request((phone.host, phone.port), node, "REGISTER", "sip:example.test",
                           transport="TCP", extra=contact))
        assert phone.recv().status == 200
    caller = TCPAgent(net.host, node)
    caller.send(request((caller.host, caller.port), node, "INVITE", "sip:alice@example.test",
                        frm="sip:bob@example.test", transport="TCP"))
    statuses = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(s >= 200 for s in statuses):
        message = caller.recv(deadline - time.monotonic())
        if message is None:
            break
        statuses.append(message.status)
    assert [s for s in statuses if s >= 200][:1] in ([482], [483]), statuses
    phone.close()
    caller.close()


def _config(net, text):
    path = os.path.join(str(net.tmp), "node.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


@pytest.mark.parametrize("mode", ["stateful", "stateless"])
def test_debug_level_logs_one_line_per_message_in_and_out(net, mode):
    node = net.node("--domain", "example.test", "--mode", mode,
                    "--config", _config(net, '[log]\nlevel = "debug"\n'))
    caller, callee = UDPAgent(net.host), UDPAgent(net.host)
    call_id = "trace-%s" % uuid.uuid4().hex[:8]
    caller.send(request((caller.host, caller.port), node, "OPTIONS",
                        "sip:bob@%s:%d" % (callee.host, callee.port), call_id=call_id,
                        to="sip:bob@example.test"), (node.host, 5060))
    forwarded = callee.recv(3)
    assert forwarded is not None
    branch = forwarded.top_via.branch
    reply = ("SIP/2.0 200 OK\r\n%s\r\nFrom: %s\r\nTo: %s;tag=t\r\nCall-ID: %s\r\nCSeq: 1 OPTIONS\r\n"
             "Content-Length: 0\r\n\r\n" % ("\r\n".join("Via: %s" % v for v in forwarded.values("via")),
                                            forwarded.header("from"), forwarded.header("to"), call_id))
    callee.send(reply.encode(), (node.host, 5060))
    assert final(caller).status == 200
    node.wait_log("out 200 call-id=%s" % call_id)
    lines = [l for l in node.log(tail=None).splitlines() if "call-id=%s" % call_id in l]
    hop = "udp:%s:%d" % (node.host, 5060)
    expected = [
        "in OPTIONS call-id=%s cseq=1 OPTIONS udp:%s:%d -> %s" % (call_id, caller.host, caller.port, hop),
        "out OPTIONS call-id=%s cseq=1 OPTIONS %s -> udp:%s:%d tx=%s" % (
            call_id, hop, callee.host, callee.port, branch),
        "in 200 call-id=%s cseq=1 OPTIONS udp:%s:%d -> %s tx=%s" % (
            call_id, callee.host, callee.port, hop, branch),
        "out 200 call-id=%s cseq=1 OPTIONS %s -> udp:%s:%d tx=" % (call_id, hop, caller.host, caller.port),
    ]
    assert len(lines) == 4, lines
    for line, want in zip(lines, expected):
        assert want in line, (line, want)
    caller.close()
    callee.close()


def test_info_level_logs_nothing_per_message_and_warn_hides_info(net):
    node = net.node("--domain", "example.test")
    caller = UDPAgent(net.host)
    caller.send(request((caller.host, caller.port), node, "OPTIONS", "sip:%s:5060" % node.host,
                        call_id="quiet-1"), (node.host, 5060))
    assert final(caller).status == 200
    time.sleep(0.3)
    assert "quiet-1" not in node.log(tail=None)
    assert "listening on" in node.log(tail=None)
    node.stop()
    seen = len(node.log(tail=None))  # the next node appends to the same file
    other = net.node("--domain", "example.test", "--node-id", "warn-node",
                     "--config", _config(net, '[log]\nlevel = "warn"\n'))
    other.stop()
    text = other.log(tail=None)[seen:]
    assert "starting up" in text and "listening on" not in text
    caller.close()


def test_reason_phrase_shows_undecodable_bytes_readably(net):
    node = net.node("--domain", "example.test")
    caller = UDPAgent(net.host)
    data = request((caller.host, caller.port), node, "OPTIONS", "sip:%s:5060" % node.host)
    caller.send(data.replace(b"CSeq: 1 OPTIONS\r\n", b"C\xa4eq: 1 OPTIONS\r\nCSeq: 1 OPTIONS\r\n"),
                (node.host, 5060))
    answer = final(caller)
    assert answer.status == 400
    assert answer.reason == 'Malformed header line "C?eq: 1 OPTIONS"'
    caller.close()


def test_cli_help_is_plain_text():
    result = subprocess.run([sys.executable, "-m", "sipcluster.cli", "--help"], capture_output=True,
                            text=True, timeout=30, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0
    assert not re.search(r"[CLIB]\{", result.stdout), result.stdout
    assert "sipcluster command" in result.stdout


def test_own_answers_to_faulty_requests_carry_a_to_tag(net):
    # RFC 3261 8.2.6.2, also for what the transport layer refuses itself.
    node = net.node("--domain", "example.test")
    caller = UDPAgent(net.host)
    data = request((caller.host, caller.port), node, "OPTIONS", "sip:%s:5060" % node.host)
    caller.send(data.replace(b" SIP/2.0\r\n", b" SIP/3.0\r\n", 1), (node.host, 5060))
    answer = final(caller)
    assert answer.status == 505 and answer.to_tag
    caller.send(data.replace(b"Max-Forwards: 70", b"Max-Forwards: lots"), (node.host, 5060))
    answer = final(caller)
    assert answer.status == 400 and answer.to_tag
    caller.close()


def test_unknown_method_for_the_node_is_501(net):
    node = net.node("--domain", "example.test")
    caller = UDPAgent(net.host)
    caller.send(request((caller.host, caller.port), node, "FOO", "sip:%s:5060" % node.host),
                (node.host, 5060))
    answer = final(caller)
    assert answer.status == 501 and "OPTIONS" in answer.header("allow")
    caller.send(request((caller.host, caller.port), node, "INVITE", "sip:%s:5060" % node.host),
                (node.host, 5060))
    assert final(caller).status == 404  # known, but nobody here takes calls
    caller.close()


def test_tcp_registration_from_behind_a_nat_is_reached_over_its_connection(net):
    # baresip over TCP: its connection leaves from 127.0.0.1 while its Via
    # and Contact name the address it listens on.
    node = net.node("--domain", "example.test")
    listening = next_host()
    phone = TCPAgent(net.host, node)
    data = request((listening, 5080), node, "REGISTER", "sip:example.test", transport="TCP",
                   extra="Contact: <sip:alice@%s:5080;transport=tcp>\r\n" % listening)
    phone.send(data)
    assert phone.recv().status == 200
    caller = UDPAgent(net.host)
    caller.send(request((caller.host, caller.port), node, "INVITE", "sip:alice@example.test",
                        frm="sip:bob@example.test"), (node.host, 5060))
    message = phone.recv(5)
    assert message is not None and message.method == "INVITE"
    phone.close()
    caller.close()


def test_the_example_configuration_starts_a_node(net):
    # ops/node.example.toml (every key at its default), started for real;
    # only the listen addresses move to this test's own (options win).
    node = net.node("--config", os.path.join(ROOT, "ops", "node.example.toml"))
    caller = UDPAgent(net.host)
    caller.send(request((caller.host, caller.port), node, "OPTIONS", "sip:%s:5060" % node.host),
                (node.host, 5060))
    assert final(caller).status == 200
    caller.close()
