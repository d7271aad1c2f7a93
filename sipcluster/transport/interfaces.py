# -*- test-case-name: tests.test_transport -*-
"""
The interface of what the transport layer hands messages to.  Kept apart
from the layer so that the compiled build leaves it pure Python:
zope.interface reads an interface's methods as plain functions.
"""

from zope.interface import Interface


class ITransportReceiver(Interface):
    """What the transport layer hands valid messages to: the transaction
    layer, or a stateless proxy."""

    def request_received(request, source):
        """A request, its top Via stamped with received/rport (RFC 3261 18.2.1)."""

    def response_received(response, source):
        """A response."""
