# -*- test-case-name: tests.test_proxy -*-
"""
A stateless proxy (RFC 3261 16.11): the transport layer's receiver with no
transactions.  Requests go to one target with a branch derived from the
request, so retransmissions, CANCEL and ACK follow the same path; responses
go back by their Via.
"""

from twisted.logger import Logger

from sipcluster.proxy.forwarding import Reject
from sipcluster.proxy.stateful import forward_response_stateless, forward_stateless


class StatelessResponder:
    """
    What a server transaction offers a request handler (the registrar),
    without the state: responses go straight back by the Via.
    """

    def __init__(self, transport, request, source):
        self.transport = transport
        self.request = request
        self.source = source

    def respond(self, response):
        self.transport.send_response(response, self.source)


class StatelessProxy:
    log = Logger()

    def __init__(self, transport, forwarder):
        self.transport = transport
        self.forwarder = forwarder
        self.local_methods = {}
        self.admission = []
        transport.receiver = self

    def request_received(self, request, source):
        handler = self.local_methods.get(request.method)
        if handler is not None and self.forwarder.is_our_domain(request.uri) \
                and not request.has("route"):
            handler(StatelessResponder(self.transport, request, source))
            return
        if request.method == "OPTIONS" and self.forwarder.addressed_to_us(request):
            self.transport.send_response(self.forwarder.options_response(request), source)
            return
        for check in self.admission:
            try:
                check(request)
            except Reject as r:
                if request.method != "ACK":
                    self.transport.send_response(self.forwarder.local_response(
                        request, r.status, r.reason, r.extra), source)
                return
        forward_stateless(self.forwarder, request, source, self.log)

    def response_received(self, response, source):
        forward_response_stateless(self.forwarder, response)
