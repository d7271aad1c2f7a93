# -*- test-case-name: tests.test_routing_destinations -*-
"""
Health probes of destination sets (Kamailio dispatcher's ds_ping_interval,
ds_probing_threshold, ds_inactive_threshold, ds_ping_reply_codes): every
probe interval each destination of a set gets an OPTIONS (RFC 3261 11)
through the transaction layer; an answer with an alive status within the
probe timeout counts as a success, anything else as a failure, and the
set's thresholds turn those into up and down.  Each node probes on its own
and routes on what it can itself reach.
"""

import uuid

from twisted.application import service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from sipcluster.sip.message import Request


class DestinationProbes(service.Service):
    """
    @param sets: the L{DestinationSet}s with a probe interval.
    @param forwarder: the L{Forwarder} (transport, resolution of next hops).
    @param transactions: the L{TransactionLayer} the OPTIONS go through.
    @param clock: provides IReactorTime.
    """

    log = Logger()
    name = "destination-probes"

    def __init__(self, sets, forwarder, transactions, clock, node_id="sipcluster"):
        self.sets = list(sets)
        self.forwarder = forwarder
        self.transactions = transactions
        self.clock = clock
        self.node_id = node_id
        self.sent = 0
        self.pending = {}
        self._loops = []
        self._starting = None

    def startService(self):
        service.Service.startService(self)
        # The first round as soon as the node is up (its SIP listeners
        # start after this service): it knows within one probe timeout
        # which destinations are there.
        self._starting = self.clock.callLater(0, self._start_loops)

    def _start_loops(self):
        self._starting = None
        for dset in self.sets:
            loop = LoopingCall(self.probe_set, dset)
            loop.clock = self.clock
            loop.start(dset.probe_interval, now=True).addErrback(
                lambda f: self.log.failure("probing failed", f))
            self._loops.append(loop)

    def stopService(self):
        service.Service.stopService(self)
        if self._starting is not None and self._starting.active():
            self._starting.cancel()
        self._starting = None
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        for probe in list(self.pending.values()):
            probe.abandon()
        self.pending.clear()

    def replace(self, sets):
        """Probe C{sets} from now on (a reload): the old rounds stop, new ones start."""
        running = self.running
        if running:
            self.stopService()
        self.sets = list(sets)
        if running:
            self.startService()

    def probe_set(self, dset):
        for destination in dset.destinations:
            pending = self.pending.get(id(destination))
            if pending is not None:
                # Still unanswered when the next one is due (a timeout
                # equal to the interval): that one failed.
                pending.failed()
            self.probe(destination)

    def probe(self, destination):
        """Send one OPTIONS to C{destination}; its outcome goes to the destination."""
        forwarder = self.forwarder
        uri = destination.uri
        transport = forwarder.transport_for(uri)
        probe = _Probe(self, destination)
        self.pending[id(destination)] = probe
        d = forwarder.resolve(uri, transport)
        # (The first of the addresses RFC 3263 gives: a probe tells whether
        # the destination as the proxy would reach it first answers.)
        d.addCallback(lambda peers: probe.send(self._options(destination, transport), peers[0]))
        d.addErrback(lambda f: probe.failed(None))
        self.sent += 1
        return probe

    def _options(self, destination, transport):
        request = Request("OPTIONS", destination.uri)
        request.push_via(self.forwarder.transport.make_via(
            transport, "z9hG4bK" + uuid.uuid4().hex[:20]))
        request.add("Max-Forwards", 70)
        request.add("From", "<sip:probe@%s>;tag=%s" % (self.node_id, uuid.uuid4().hex[:10]))
        request.add("To", "<%s>" % destination.uri)
        request.add("Call-ID", uuid.uuid4().hex)
        request.add("CSeq", "1 OPTIONS")
        request.add("Content-Length", 0)
        return request

    def done(self, probe):
        if self.pending.get(id(probe.destination)) is probe:
            del self.pending[id(probe.destination)]


class _Probe:
    """The client transaction owner of one probe, and its own timeout."""

    def __init__(self, probes, destination):
        self.probes = probes
        self.destination = destination
        self.tx = None
        self.finished = False
        self.timer = probes.clock.callLater(destination.set.probe_timeout, self.failed, None)

    def send(self, request, peer):
        if not self.finished:
            self.tx = self.probes.transactions.start_client(request, peer, self)

    def _finish(self, status):
        if self.finished:
            return False
        self.finished = True
        if self.timer.active():
            self.timer.cancel()
        self.destination.last_probe = (self.probes.clock.seconds(), status)
        self.probes.done(self)
        return True

    def abandon(self):
        self.finished = True
        if self.timer.active():
            self.timer.cancel()
        if self.tx is not None:
            self.tx.terminate()

    def response_received(self, tx, response):
        if response.status < 200 or not self._finish(response.status):
            return
        self.destination.answered(self.destination.set.alive_status(response.status))

    def failed(self, tx=None):
        if not self._finish(None):
            return
        if self.tx is not None and self.tx.state != "terminated":
            # Unanswered within the probe timeout: the transaction's own
            # Timer F (32 s) is no use to us.
            self.tx.terminate()
        self.destination.failed()

    timed_out = transport_failed = failed
