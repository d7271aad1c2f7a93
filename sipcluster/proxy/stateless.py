# -*- test-case-name: tests.test_proxy -*-
"""
A stateless proxy (RFC 3261 16.11): the transport layer's receiver with no
transactions.  Requests go to one target with a branch derived from the
request, so retransmissions, CANCEL and ACK follow the same path; responses
go back by their Via.
"""

from twisted.logger import Logger

from sipcluster.proxy.stateful import forward_response_stateless, forward_stateless


class StatelessProxy:
    log = Logger()

    def __init__(self, transport, forwarder):
        self.transport = transport
        self.forwarder = forwarder
        transport.receiver = self

    def request_received(self, request, source):
        if request.method == "OPTIONS" and self.forwarder.addressed_to_us(request):
            self.transport.send_response(self.forwarder.options_response(request), source)
            return
        forward_stateless(self.forwarder, request, source, self.log)

    def response_received(self, response, source):
        forward_response_stateless(self.forwarder, response)
