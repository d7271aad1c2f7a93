# -*- test-case-name: tests.test_nat -*-
"""
Keepalives toward contacts behind NAT, so their NAT bindings stay open
(RFC 5626 3.5 in spirit): every interval, each UDP binding that has a
reachable-at address gets either an OPTIONS request or a CRLF CRLF ping.
With OPTIONS, a binding whose keepalive goes unanswered can be removed.
"""

import uuid

from twisted.application import service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from sipcluster.location.interface import Binding
from sipcluster.sip.message import Request
from sipcluster.transport.base import Peer


class KeepaliveService(service.Service):
    """
    @ivar method: "options" or "crlf".
    @ivar remove_unanswered: remove a binding whose OPTIONS timed out.
    """

    log = Logger()
    name = "nat-keepalive"

    def __init__(self, location, transport, transactions, clock, interval, method="options",
                 remove_unanswered=False, domain="localhost"):
        self.location = location
        self.transport = transport
        self.transactions = transactions
        self.clock = clock
        self.interval = interval
        self.method = method if transactions is not None else "crlf"
        self.remove_unanswered = remove_unanswered
        self.domain = domain
        self.sent = 0
        self.removed = 0
        self._loop = LoopingCall(self.run_once)
        self._loop.clock = clock

    def startService(self):
        service.Service.startService(self)
        self._loop.start(self.interval, now=False)

    def stopService(self):
        service.Service.stopService(self)
        if self._loop.running:
            self._loop.stop()

    def run_once(self):
        for binding in self.location.all_bindings():
            received = binding.received
            if received is None or received[0] != "udp":
                continue
            peer = Peer("udp", received[1], received[2])
            if self.method == "crlf":
                self.transport.send_data(b"\r\n\r\n", peer).addErrback(lambda f: None)
            else:
                self.transactions.start_client(self._options(binding), peer, _Probe(self, binding))
            self.sent += 1

    def _options(self, binding):
        request = Request("OPTIONS", binding.contact)
        request.push_via(self.transport.make_via("udp", "z9hG4bK" + uuid.uuid4().hex[:20]))
        request.add("Max-Forwards", 70)
        request.add("From", "<sip:keepalive@%s>;tag=%s" % (self.domain, uuid.uuid4().hex[:10]))
        request.add("To", "<%s>" % binding.contact)
        request.add("Call-ID", uuid.uuid4().hex)
        request.add("CSeq", "1 OPTIONS")
        request.add("Content-Length", 0)
        return request

    def unanswered(self, binding):
        if not self.remove_unanswered:
            return
        self.removed += 1
        self.log.info("removing unanswering binding {contact} of {aor}",
                      contact=str(binding.contact), aor=binding.aor)
        self.location.update(binding.aor, [Binding(binding.aor, binding.contact, 0)])


class _Probe:
    """Client transaction owner for one keepalive OPTIONS: any answer is life."""

    def __init__(self, service, binding):
        self.service = service
        self.binding = binding

    def response_received(self, tx, response):
        pass

    def timed_out(self, tx):
        self.service.unanswered(self.binding)

    transport_failed = timed_out
