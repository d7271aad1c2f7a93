# -*- test-case-name: tests.test_radius -*-
"""
The AAA server interface: RADIUS (RFC 2865, RFC 2866) on UDP, with
pyrad's packet encoding and a Twisted DatagramProtocol of our own (pyrad's
client blocks).

  - L{RadiusClient}: requests with retransmission, a timeout per try and
    the next server (a secondary) when one stops answering.
  - L{RadiusDigest}: digest verification through RADIUS as Kamailio's
    auth_radius does it (draft-sterman-aaa-sip: Digest-Response and
    Digest-Attributes, which FreeRADIUS's digest module accepts), for
    L{sipcluster.policy.auth}.  The nonce (its signature, age and counts)
    stays ours; the server only says whether the response is right.
"""

import io

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from sipcluster.schema import ConfigSection, Key

# The attributes we send and read (RFC 2865, 2866, 2869; Digest-* from
# draft-sterman-aaa-sip-00 as FreeRADIUS's dictionary.iana has them;
# Sip-Response-Code as Kamailio's dictionary).
DICTIONARY = """\
ATTRIBUTE User-Name 1 string
ATTRIBUTE NAS-IP-Address 4 ipaddr
ATTRIBUTE Service-Type 6 integer
ATTRIBUTE Reply-Message 18 string
ATTRIBUTE Class 25 octets
ATTRIBUTE Called-Station-Id 30 string
ATTRIBUTE Calling-Station-Id 31 string
ATTRIBUTE NAS-Identifier 32 string
ATTRIBUTE Acct-Status-Type 40 integer
ATTRIBUTE Acct-Delay-Time 41 integer
ATTRIBUTE Acct-Session-Id 44 string
ATTRIBUTE Acct-Session-Time 46 integer
ATTRIBUTE Acct-Terminate-Cause 49 integer
ATTRIBUTE Event-Timestamp 55 integer
ATTRIBUTE Message-Authenticator 80 octets
ATTRIBUTE Sip-Response-Code 102 integer
ATTRIBUTE Digest-Response 206 string
ATTRIBUTE Digest-Attributes 207 octets
VALUE Service-Type Sip-Session 15
VALUE Acct-Status-Type Start 1
VALUE Acct-Status-Type Stop 2
VALUE Acct-Status-Type Failed 15
"""

# draft-sterman-aaa-sip-00 3.4: the sub-attributes of Digest-Attributes.
DIGEST_SUB = {"realm": 1, "nonce": 2, "method": 3, "uri": 4, "qop": 5, "algorithm": 6,
              "body_digest": 7, "cnonce": 8, "nc": 9, "username": 10}


def server_list(values):
    for text in values:
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError('expected "host:port", e.g. "127.0.0.1:1812", got "%s"' % text)
    return list(values)


CONFIG = ConfigSection("radius", {
    "servers": Key(list, [], 'RADIUS authentication servers, "host:port", the primary first, then secondaries tried when it stops answering.',
                   check=server_list),
    "accounting_servers": Key(list, [], 'RADIUS accounting servers, "host:port" (usually port 1813), in the same order of preference.',
                              check=server_list),
    "secret": Key(str, "", "The shared secret of the servers (RFC 2865 3)."),
    "timeout_s": Key(float, 2.0, "How long one try waits for an answer, in seconds.", minimum=0.1, maximum=30),
    "retries": Key(int, 2, "Retransmissions to one server before the next is tried.", minimum=0, maximum=10),
    "nas_identifier": Key(str, "", "NAS-Identifier of our requests; empty: the node id."),
})


def parse_server(text):
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


class RadiusUnavailable(Exception):
    """No server answered: every try of every server timed out."""


def dictionary():
    from pyrad.dictionary import Dictionary
    return Dictionary(io.StringIO(DICTIONARY))


class _Pending:
    __slots__ = ("packet", "data", "deferred", "servers", "server", "tries", "timer")


class RadiusClient(DatagramProtocol):
    """
    Sends RADIUS requests from one UDP port of its own and matches the
    answers by identifier and authenticator (RFC 2865 3).

    @param reactor: provides IReactorUDP and IReactorTime.
    @param servers: [(host, port)], the first preferred.
    @ivar stats: counters: sent, retransmitted, answered, timeouts (servers
        given up on), unavailable (requests no server answered).
    """

    log = Logger()

    def __init__(self, reactor, servers, secret, timeout=2.0, retries=2, interface=""):
        self.reactor = reactor
        self.servers = list(servers)
        self.secret = secret.encode("utf-8") if isinstance(secret, str) else secret
        self.timeout = timeout
        self.retries = retries
        self.interface = interface
        self.dict = dictionary()
        self.port = None
        self._pending = {}  # identifier -> _Pending
        self._next_id = 0
        self.stats = dict.fromkeys(("sent", "retransmitted", "answered", "timeouts",
                                    "unavailable"), 0)

    def start(self):
        if self.port is None:
            self.port = self.reactor.listenUDP(0, self, interface=self.interface)

    def stop(self):
        for pending in list(self._pending.values()):
            self._give_up(pending, RadiusUnavailable("RADIUS client stopped"))
        if self.port is not None:
            port, self.port = self.port, None
            return port.stopListening()

    # -- packets ----------------------------------------------------------------

    def auth_packet(self, **attributes):
        from pyrad import packet
        return packet.AuthPacket(code=packet.AccessRequest, secret=self.secret, dict=self.dict,
                                 **attributes)

    def acct_packet(self, **attributes):
        from pyrad import packet
        return packet.AcctPacket(code=packet.AccountingRequest, secret=self.secret,
                                 dict=self.dict, **attributes)

    def _free_id(self):
        for _ in range(256):
            ident = self._next_id
            self._next_id = (self._next_id + 1) % 256
            if ident not in self._pending:
                return ident
        return None

    def send(self, request):
        """
        Send C{request} (from L{auth_packet} or L{acct_packet}): a
        Deferred firing with the verified reply packet, or failing with
        L{RadiusUnavailable}.
        """
        from pyrad import packet
        ident = self._free_id()
        if ident is None or self.port is None:
            self.stats["unavailable"] += 1
            return defer.fail(RadiusUnavailable("no RADIUS identifier free" if self.port
                                                else "RADIUS client not started"))
        request.id = ident
        if request.code == packet.AccessRequest:
            # RFC 3579 3.2 / BlastRADIUS: servers may insist on it.
            request.add_message_authenticator()
        pending = _Pending()
        pending.packet = request
        pending.data = request.RequestPacket()
        pending.deferred = defer.Deferred()
        pending.servers = list(self.servers)
        pending.server = None
        pending.tries = 0
        pending.timer = None
        self._pending[ident] = pending
        self._next_server(pending)
        return pending.deferred

    def _next_server(self, pending):
        if not pending.servers:
            self.stats["unavailable"] += 1
            self._give_up(pending, RadiusUnavailable("no RADIUS server answered"))
            return
        pending.server = pending.servers.pop(0)
        pending.tries = 0
        self._transmit(pending)

    def _transmit(self, pending):
        pending.tries += 1
        if pending.tries > 1:
            self.stats["retransmitted"] += 1
        else:
            self.stats["sent"] += 1
        self.transport.write(pending.data, pending.server)
        pending.timer = self.reactor.callLater(self.timeout, self._timed_out, pending)

    def _timed_out(self, pending):
        pending.timer = None
        if pending.tries <= self.retries:
            self._transmit(pending)
            return
        self.stats["timeouts"] += 1
        self.log.warn("RADIUS server {host}:{port} did not answer", host=pending.server[0],
                      port=pending.server[1])
        self._next_server(pending)

    def _give_up(self, pending, error):
        self._pending.pop(pending.packet.id, None)
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.deferred.errback(error)

    def datagramReceived(self, data, addr):
        from pyrad import packet
        if len(data) < 20:
            return
        pending = self._pending.get(data[1])
        if pending is None or pending.server is None or \
                (addr[0], addr[1]) != (pending.server[0], pending.server[1]):
            return  # late, or not from the server asked
        try:
            reply = pending.packet.CreateReply(packet=data)
        except (packet.PacketError, Exception):
            self.log.warn("RADIUS answer from {addr} does not decode", addr=addr)
            return
        if not pending.packet.VerifyReply(reply, data):
            # Forged, or another secret: not an answer (RFC 2865 3).
            self.log.warn("RADIUS answer from {addr} fails its authenticator", addr=addr)
            return
        self.stats["answered"] += 1
        del self._pending[pending.packet.id]
        if pending.timer is not None and pending.timer.active():
            pending.timer.cancel()
        pending.deferred.callback(reply)


def digest_attributes(params, method):
    """The Digest-Attributes values (sub-attribute, length, value) of one answer."""
    values = {"realm": params.get("realm"), "nonce": params.get("nonce"), "method": method,
              "uri": params.get("uri"), "qop": params.get("qop"),
              "algorithm": params.get("algorithm"), "cnonce": params.get("cnonce"),
              "nc": params.get("nc"), "username": params.get("username")}
    out = []
    for name, number in DIGEST_SUB.items():
        value = values.get(name)
        if value:
            raw = value.encode("utf-8")
            if len(raw) > 253:
                raise ValueError("digest parameter %s too long for RADIUS" % name)
            out.append(bytes([number, len(raw) + 2]) + raw)
    return out


class RadiusDigest:
    """
    Asks RADIUS whether a digest response is right: an Access-Request
    with User-Name, Digest-Response and Digest-Attributes, Service-Type
    Sip-Session (what FreeRADIUS's digest module and Kamailio's
    auth_radius exchange).  L{verify} fires True (Access-Accept), False
    (Access-Reject), or fails with L{RadiusUnavailable}.

    @ivar ready: always True (nothing to load).
    """

    ready = True

    def __init__(self, client, nas_identifier):
        self.client = client
        self.nas_identifier = nas_identifier

    def verify(self, params, method):
        from pyrad import packet
        request = self.client.auth_packet(User_Name=params["username"])
        request["Digest-Response"] = params["response"]
        request["Digest-Attributes"] = digest_attributes(params, method)
        request["Service-Type"] = "Sip-Session"
        request["NAS-Identifier"] = self.nas_identifier
        d = self.client.send(request)
        return d.addCallback(lambda reply: reply.code == packet.AccessAccept)

