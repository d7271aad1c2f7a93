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
  - L{RadiusAccounting}: a dialog stage sending Accounting-Request Start
    when a call is answered, Stop when its BYE passes, Failed for failed
    attempts (accounting.failed_calls), each record kept in a spool
    directory on disk from the moment it exists until a server
    acknowledged it (L{AccountingSpool}).
"""

import io
import json
import os

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from sipcluster.proxy.pipeline import DIALOG, Stage
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
    "accounting_spool": Key(str, "", "Directory accounting records wait in until a server acknowledged them (one file each, kept across restarts and outages); needed with accounting_servers."),
    "accounting_retry_s": Key(float, 5.0, "While no accounting server answers, try the oldest waiting record again this often, in seconds.", minimum=0.1, maximum=3600),
}, check=lambda values, sections: _check(values, sections))


def _check(values, sections):
    from sipcluster.schema import CrossKeyError
    if values["accounting_servers"]:
        spool = values["accounting_spool"]
        if not spool:
            raise CrossKeyError("radius.accounting_spool", "expected a directory (records wait there until acknowledged)")
        if not os.path.isdir(spool) or not os.access(spool, os.W_OK):
            raise CrossKeyError("radius.accounting_spool", 'expected a writable directory, got "%s"' % spool)
        if sections["node"]["mode"] != "stateful":
            raise CrossKeyError("radius.accounting_servers", 'needs node.mode = "stateful" (accounting follows dialogs)')


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



# -- accounting ----------------------------------------------------------------

# RFC 2866 5.10.
TERMINATE_USER_REQUEST = 1
TERMINATE_SESSION_TIMEOUT = 5


class AccountingSpool:
    """
    Records waiting for an acknowledgement, one JSON file each in
    C{directory}, named so that they sort in the order they were made.
    A record is written (to a temporary name, renamed into place, then
    fsynced off the reactor) before it is sent, and removed only once a
    server acknowledged it, so neither an outage nor a restart loses one.
    """

    log = Logger()

    def __init__(self, directory, reactor, in_thread=None):
        from twisted.internet import threads
        self.directory = directory
        self.reactor = reactor
        self._in_thread = in_thread or (lambda f, *a: threads.deferToThreadPool(
            reactor, reactor.getThreadPool(), f, *a))
        self._seq = 0

    def waiting(self):
        """(name, record) of every record on disk, oldest first."""
        out = []
        for name in sorted(os.listdir(self.directory)):
            if not name.endswith(".acct"):
                continue
            try:
                with open(os.path.join(self.directory, name), "rb") as f:
                    out.append((name, json.loads(f.read().decode("utf-8"))))
            except (OSError, ValueError) as e:
                self.log.warn("accounting spool {name}: {why}", name=name, why=e)
        if out:
            self._seq = max(self._seq, int(out[-1][0].split("-", 1)[0]) + 1)
        return out

    def add(self, record):
        """Write C{record}; its name."""
        self._seq += 1
        name = "%013d%06d-%s.acct" % (int(self.reactor.seconds() * 1000), self._seq % 10 ** 6,
                                      record["status"].lower())
        path = os.path.join(self.directory, name)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(json.dumps(record, sort_keys=True).encode("utf-8"))
            f.flush()
        os.replace(tmp, path)
        self._in_thread(self._fsync, path).addErrback(
            lambda f: self.log.failure("fsync of {name} failed", f, name=name))
        return name

    @staticmethod
    def _fsync(path):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return  # already acknowledged and removed
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self, name):
        try:
            os.unlink(os.path.join(self.directory, name))
        except FileNotFoundError:
            pass


class RadiusAccounting(Stage):
    """
    The dialog stage of RADIUS accounting (RFC 2866): Start when the 2xx
    to an initial INVITE goes upstream, Stop when the final response to
    its BYE does (Acct-Session-Time from the Start this node or another
    one recorded: the cluster's dialog registry when there is one), and
    Failed for attempts answered with a failure when C{failed_calls}.
    Acct-Session-Id is the Call-ID; the parties are Calling-Station-Id
    (From) and Called-Station-Id (To); the cause is Acct-Terminate-Cause
    and the SIP status (Sip-Response-Code, as Kamailio's acc module).
    C{dialogs} gives the node's dialog registry (or None), consulted for
    calls answered through another node.

    Records go through the L{AccountingSpool} and are sent oldest first,
    at most C{window} at a time; while no server answers, the oldest is
    tried again every C{retry} seconds and the rest wait.

    @ivar stats: counters: queued, acknowledged, unavailable.
    """

    log = Logger()
    name = "radius-accounting"
    points = (DIALOG,)
    needs_transactions = True
    config_key = "radius.accounting_servers"

    def __init__(self, client, spool, clock, nas_identifier, failed_calls=False, dialogs=None,
                 retry=5.0, window=32, max_duration=14400):
        self.client = client
        self.spool = spool
        self.clock = clock
        self.nas_identifier = nas_identifier
        self.failed_calls = failed_calls
        self.dialogs = dialogs
        self.retry = retry
        self.window = window
        self.max_duration = max_duration
        self._started = {}  # dialog key -> start time, for the Stop's duration
        self._queue = []  # (name, record) not yet sent
        self._in_flight = 0
        self._later = None
        self._paused = False
        self.running = False
        self.stats = dict.fromkeys(("queued", "acknowledged", "unavailable"), 0)

    def start(self):
        self.running = True
        registry = self.dialogs() if self.dialogs is not None else None
        if registry is not None and self.dialog_expired not in registry.on_end:
            # Calls whose BYE never came: the registry ends them.
            registry.on_end.append(self.dialog_expired)
        self._queue = self.spool.waiting()
        if self._queue:
            self.log.info("{count} accounting records waiting in the spool", count=len(self._queue))
        self._pump()

    def stop(self):
        self.running = False
        if self._later is not None and self._later.active():
            self._later.cancel()

    # -- dialog events ------------------------------------------------------------------

    @staticmethod
    def _key(call_id, from_tag, to_tag):
        return "%s;%s;%s" % (call_id, from_tag or "", to_tag or "")

    def _parties(self, request):
        from sipcluster.cluster.dialogs import _uri_text
        return _uri_text(request, "from"), _uri_text(request, "to")

    def dialog_confirmed(self, request, response):
        now = self.clock.seconds()
        self._forget_old(now)
        self._started[self._key(request.call_id, request.from_tag, response.to_tag)] = now
        calling, called = self._parties(request)
        self._record({"status": "Start", "call_id": request.call_id, "from": calling,
                      "to": called, "time": now, "sip_status": response.status})

    def dialog_ended(self, request, response):
        now = self.clock.seconds()
        started = None
        for key in (self._key(request.call_id, request.from_tag, request.to_tag),
                    self._key(request.call_id, request.to_tag, request.from_tag)):
            started = self._started.pop(key, None)
            registry = self.dialogs() if self.dialogs is not None else None
            if started is None and registry is not None:
                record = registry.dialogs.get(key)
                started = record.get("started") if record else None
            if started is not None:
                break
        calling, called = self._parties(request)
        self._record({"status": "Stop", "call_id": request.call_id, "from": calling,
                      "to": called, "time": now, "sip_status": response.status,
                      "duration": int(round(now - started)) if started is not None else 0,
                      "cause": TERMINATE_USER_REQUEST})

    def dialog_expired(self, record):
        """
        A dialog-end hook of the dialog registry: a call whose BYE never
        came within cluster.dialog_max_s gets its Stop (Session-Timeout).
        Every other end is seen as a BYE or a failure above.
        """
        if record.get("state") != "expired":
            return
        for key in [k for k in self._started if k.startswith(record.get("call_id", "") + ";")]:
            del self._started[key]
        self._record({"status": "Stop", "call_id": record.get("call_id"),
                      "from": record.get("from"), "to": record.get("to"),
                      "time": self.clock.seconds(), "sip_status": 0,
                      "duration": int(round(record.get("duration") or 0)),
                      "cause": TERMINATE_SESSION_TIMEOUT})

    def call_failed(self, request, response, started):
        if not self.failed_calls:
            return
        calling, called = self._parties(request)
        self._record({"status": "Failed", "call_id": request.call_id, "from": calling,
                      "to": called, "time": self.clock.seconds(), "sip_status": response.status})

    def _forget_old(self, now):
        # Dialogs whose BYE never came this way: bounded by the longest call.
        if len(self._started) > 1000:
            limit = now - self.max_duration
            for key in [k for k, t in self._started.items() if t < limit]:
                del self._started[key]

    # -- sending ------------------------------------------------------------------------

    def _record(self, record):
        name = self.spool.add(record)
        self.stats["queued"] += 1
        self._queue.append((name, record))
        self._pump()

    def _pump(self):
        while self.running and not self._paused and self._queue and \
                self._in_flight < self.window:
            name, record = self._queue.pop(0)
            self._send(name, record)

    def packet(self, record):
        """The Accounting-Request of C{record}."""
        request = self.client.acct_packet(User_Name=_user_of(record["from"]))
        request["Acct-Status-Type"] = record["status"]
        request["Acct-Session-Id"] = record["call_id"]
        request["Calling-Station-Id"] = record["from"] or ""
        request["Called-Station-Id"] = record["to"] or ""
        request["Event-Timestamp"] = int(record["time"])
        # RFC 2866 5.2: how long it waited (an outage, the spool).
        request["Acct-Delay-Time"] = max(0, int(self.clock.seconds() - record["time"]))
        request["NAS-Identifier"] = self.nas_identifier
        if record["sip_status"]:
            request["Sip-Response-Code"] = int(record["sip_status"])
        if record["status"] == "Stop":
            request["Acct-Session-Time"] = int(record["duration"])
            request["Acct-Terminate-Cause"] = int(record["cause"])
        return request

    def _send(self, name, record):
        self._in_flight += 1
        d = self.client.send(self.packet(record))

        def acknowledged(reply):
            self._in_flight -= 1
            self.spool.remove(name)
            self.stats["acknowledged"] += 1
            self._pump()

        def unanswered(failure):
            self._in_flight -= 1
            self.stats["unavailable"] += 1
            # Back to the front, in order; wait before trying again.
            self._queue.insert(0, (name, record))
            self._queue.sort(key=lambda item: item[0])
            if not self._paused:
                self._paused = True
                self.log.warn("no RADIUS accounting server answers: {count} records kept in "
                              "the spool, retrying every {retry} s", count=len(self._queue),
                              retry=self.retry)
                self._later = self.clock.callLater(self.retry, self._resume)
        d.addCallbacks(acknowledged, unanswered)
        d.addErrback(lambda f: self.log.failure("accounting failed", f))

    def _resume(self):
        self._later = None
        if not self.running or not self._queue:
            self._paused = False
            return
        # One record first: if it is answered, the rest follow.
        name, record = self._queue.pop(0)
        self._in_flight += 1

        def acknowledged(reply):
            self._in_flight -= 1
            self.spool.remove(name)
            self.stats["acknowledged"] += 1
            self.log.info("RADIUS accounting answers again")
            self._paused = False
            self._pump()

        def unanswered(failure):
            self._in_flight -= 1
            self.stats["unavailable"] += 1
            self._queue.insert(0, (name, record))
            if self.running:
                self._later = self.clock.callLater(self.retry, self._resume)
        self.client.send(self.packet(record)).addCallbacks(acknowledged, unanswered)


def _user_of(uri):
    """The user part of a URI as text (User-Name of an accounting record)."""
    text = uri or ""
    if ":" in text and "@" in text:
        return text.split(":", 1)[1].split("@", 1)[0]
    return text
