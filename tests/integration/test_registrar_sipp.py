"""
The registrar and NAT traversal of a real node, on the wire: SIPp
registering users from an injection file, calls to registered users
(including a forked one), a NATed registration, STUN on the SIP port.
"""

import struct
import uuid

from tests.integration.nodes import UDPAgent, requires_sipp, scenario

pytestmark = requires_sipp


def register(agent, host, user, contact, cseq=1, call_id=None, expires=3600):
    call_id = call_id or uuid.uuid4().hex
    data = ("REGISTER sip:{h} SIP/2.0\r\nVia: SIP/2.0/UDP {a}:{p};branch=z9hG4bK{b};rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:{u}@{h}>;tag=r{b}\r\nTo: <sip:{u}@{h}>\r\n"
            "Call-ID: {c}\r\nCSeq: {s} REGISTER\r\nContact: {contact}\r\nExpires: {e}\r\n"
            "Content-Length: 0\r\n\r\n").format(
                h=host, a=agent.host, p=agent.port, b=uuid.uuid4().hex[:12], u=user, c=call_id,
                s=cseq, contact=contact, e=expires)
    agent.send(data.encode(), (host, 5060))
    return agent.recv(3)


def test_register_users_from_injection_file_then_call_one(net):
    net.node()
    users = net.tmp / "users.csv"
    lines = ["SEQUENTIAL"] + ["user%d;%d;%s" % (i, 6000 + i, net.host) for i in range(30)]
    lines.append("bob;5070;%s" % net.host)
    lines.append("alice;5080;%s" % net.host)
    users.write_text("\n".join(lines) + "\n")
    reg = net.sipp("reg", "-sf", scenario("register.xml"), "%s:5060" % net.host, "-p", "5090",
                   "-inf", str(users), "-m", "32", "-r", "50")
    assert reg.wait() == 0
    oks = [m for m in reg.received() if m.status == 200]
    assert len(oks) == 32
    assert str(oks[7].contacts[0].uri) == "sip:user7@%s:6007" % net.host
    # Every binding is there: query one.
    probe = UDPAgent(net.host)
    try:
        data = ("REGISTER sip:{h} SIP/2.0\r\nVia: SIP/2.0/UDP {a}:{p};branch=z9hG4bKq1;rport\r\n"
                "Max-Forwards: 70\r\nFrom: <sip:user21@{h}>;tag=q\r\nTo: <sip:user21@{h}>\r\n"
                "Call-ID: query-1\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n").format(
                    h=net.host, a=probe.host, p=probe.port)
        probe.send(data.encode(), (net.host, 5060))
        answer = probe.recv(3)
        assert answer.status == 200
        assert [str(c.uri) for c in answer.contacts] == ["sip:user21@%s:6021" % net.host]
    finally:
        probe.close()
    # A call from alice (registered at :5080) to bob reaches the contact bob
    # registered.
    uas = net.sipp("uas", "-sf", scenario("uas_answer.xml"), "-p", "5070", "-m", "1")
    uac = net.sipp("uac", "-sf", scenario("uac_dialog.xml"), "%s:5060" % net.host, "-s", "bob",
                   "-key", "caller", "alice", "-p", "5080", "-m", "1")
    assert uac.wait() == 0
    assert uas.wait(10) == 0
    got = uas.received()
    assert [m.method for m in got] == ["INVITE", "ACK", "BYE"]
    assert str(got[0].uri) == "sip:bob@%s:5070" % net.host
    assert str(got[0].from_.uri) == "sip:alice@%s" % net.host


def test_forking_to_two_registered_contacts_one_answers(net):
    net.node()
    agent = UDPAgent(net.host)
    try:
        for port in (5071, 5072):
            answer = register(agent, net.host, "bob", "<sip:bob@%s:%d>" % (net.host, port),
                              cseq=port, call_id="bob-reg")
            assert answer.status == 200
        assert len(answer.contacts) == 2
    finally:
        agent.close()
    ringing = net.sipp("ring", "-sf", scenario("uas_ring_cancel.xml"), "-p", "5071", "-m", "1")
    answering = net.sipp("answer", "-sf", scenario("uas_answer.xml"), "-p", "5072", "-m", "1")
    uac = net.sipp("uac", "-sf", scenario("uac_dialog.xml"), "%s:5060" % net.host, "-s", "bob",
                   "-key", "caller", "carol", "-p", "5080", "-m", "1")
    assert uac.wait() == 0
    assert answering.wait(10) == 0
    assert ringing.wait(10) == 0
    assert [m.method for m in ringing.received()] == ["INVITE", "CANCEL", "ACK"]
    assert [m.method for m in answering.received()] == ["INVITE", "ACK", "BYE"]
    statuses = [m.status for m in uac.received() if m.cseq.method == "INVITE"]
    assert statuses.count(200) >= 1 and 487 not in statuses


def test_natted_registration_is_reached_at_its_source(net):
    net.node()
    phone = UDPAgent(net.host)  # "behind NAT": a private Contact, another source
    caller = UDPAgent(net.host)
    try:
        answer = register(phone, net.host, "alice", "<sip:alice@192.168.1.20:5060>")
        assert answer.status == 200
        assert [str(c.uri) for c in answer.contacts] == ["sip:alice@192.168.1.20:5060"]
        invite = ("INVITE sip:alice@{h} SIP/2.0\r\nVia: SIP/2.0/UDP {a}:{p};branch=z9hG4bKn1;rport\r\n"
                  "Max-Forwards: 70\r\nFrom: <sip:carol@{h}>;tag=c\r\nTo: <sip:alice@{h}>\r\n"
                  "Call-ID: nat-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").format(
                      h=net.host, a=caller.host, p=caller.port)
        caller.send(invite.encode(), (net.host, 5060))
        got = phone.recv(3)
        assert got is not None and got.method == "INVITE"
        assert str(got.uri) == "sip:alice@192.168.1.20:5060"
    finally:
        phone.close()
        caller.close()


def test_stun_binding_on_the_sip_port(net):
    net.node()
    agent = UDPAgent(net.host)
    try:
        txid = uuid.uuid4().bytes[:12]
        agent.sock.sendto(struct.pack("!HHI12s", 1, 0, 0x2112A442, txid), (net.host, 5060))
        agent.sock.settimeout(3)
        data, _ = agent.sock.recvfrom(2048)
        kind, length, cookie, rtxid = struct.unpack_from("!HHI12s", data)
        assert (kind, cookie, rtxid) == (0x0101, 0x2112A442, txid)
        atype, alen, _, family, xport, xaddr = struct.unpack_from("!HHBBHI", data, 20)
        assert atype == 0x0020 and family == 1
        assert xport ^ 0x2112 == agent.port
        assert (xaddr ^ 0x2112A442).to_bytes(4, "big") == bytes(int(x) for x in agent.host.split("."))
    finally:
        agent.close()
