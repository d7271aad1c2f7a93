# -*- test-case-name: tests.test_transaction -*-
"""
The interfaces around the transaction layer: its user (a proxy core) and
the owner of a client transaction (a response context).  Kept apart from
the layer so that the compiled build leaves them pure Python:
zope.interface reads an interface's methods as plain functions.
"""

from zope.interface import Interface


class ITransactionUser(Interface):
    """What sits on the transaction layer (RFC 3261 17): a proxy core."""

    def request_received(server_tx):
        """A new request (not ACK or CANCEL) in a new server transaction."""

    def cancel_received(cancel_tx, invite_tx):
        """A CANCEL, with the INVITE transaction it cancels, or None."""

    def ack_received(ack, source):
        """
        An ACK matching no transaction (the ACK for a 2xx, RFC 3261
        13.2.2.4), to be forwarded end to end.
        """

    def stray_response(response, source):
        """A response matching no client transaction."""


class IClientTransactionOwner(Interface):
    """What a client transaction reports to (a proxy's response context)."""

    def response_received(tx, response):
        """A response to the transaction's request (retransmissions absorbed)."""

    def timed_out(tx):
        """Timer B or F fired: no final response came (RFC 3261 17.1)."""

    def transport_failed(tx):
        """The request could not be sent (RFC 3261 17.1.4)."""
