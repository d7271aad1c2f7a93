# -*- test-case-name: tests.test_transaction -*-
"""
The transaction layer: matches requests to server transactions (RFC 3261
17.2.3, with the RFC 2543 fallback) and responses to client transactions
(17.1.3), creates transactions, and hands new requests to its transaction
user (L{ITransactionUser}).
"""


from zope.interface import classImplements

from sipcluster.counts import Counts
from sipcluster.sip.via import MAGIC_COOKIE
from sipcluster.transaction.interfaces import IClientTransactionOwner, ITransactionUser  # noqa: F401
from sipcluster.transport.interfaces import ITransportReceiver
from sipcluster.transaction.client import (
    ClientInviteTransaction, ClientNonInviteTransaction)
from sipcluster.transaction.server import (
    ServerInviteTransaction, ServerNonInviteTransaction)
from sipcluster.transaction.timers import TimerHeap, TimerValues


def server_key(request):
    """
    The key a request is matched to a server transaction by.  ACK and
    CANCEL map to their INVITE's key by the caller swapping the method.
    """
    via = request._top_via()   # (compiled: C calls on the typed message, here and below)
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.params.get("branch")
    if branch and branch.startswith(MAGIC_COOKIE):
        return (branch, via._sent_by(), method)
    # RFC 3261 17.2.3 fallback for RFC 2543 peers.
    return ("2543", str(request._request_uri()), request._tag("from"), request._call_id(),
            request._cseq().number, str(via), method)


def key_text(key):
    """
    A server transaction's key (L{server_key}) as one text, the same for the
    same key on every node and worker: what a proxy hashes into the branches
    it makes for the transaction.  (A repr of the nested tuple would do, at
    several times the cost.)
    """
    if len(key) == 3:
        branch, sent_by, method = key
        return "%s\x00%s\x00%s\x00%s" % (branch, sent_by[0], sent_by[1], method)
    return "\x00".join([str(part) for part in key])


class TransactionLayer:
    """
    @ivar transport: the L{TransportLayer}; this layer is its receiver.
    @ivar clock: an IReactorTime driving every timer.
    @ivar timer_heap: the L{TimerHeap} every transaction timer runs on.
    """

    # (An extension type in the compiled build: see layer.pxd.)
    __slots__ = ("transport", "clock", "timers", "timer_heap", "tu", "servers", "clients", "stats")

    def __init__(self, transport, clock, timers=None, tu=None):
        self.transport = transport
        self.clock = clock
        self.timers = timers or TimerValues()
        self.timer_heap = TimerHeap(clock, self.timers.resolution)
        self.tu = tu
        self.servers = {}
        self.clients = {}
        self.stats = Counts()
        transport.receiver = self

    # -- from the transport ---------------------------------------------------

    def request_received(self, request, source):
        key = server_key(request)
        method = request.method
        tx = self.servers.get(key)
        if method == "ACK":
            if tx is not None and isinstance(tx, ServerInviteTransaction) and tx.receive_ack(request):
                return
            self.tu.ack_received(request, source)
            return
        if tx is not None:
            self.stats["retransmissions"] += 1
            tx.receive_request(request)
            return
        if method == "INVITE":
            tx = ServerInviteTransaction(self, key, request, source)
        else:
            tx = ServerNonInviteTransaction(self, key, request, source)
        self.servers[key] = tx
        if method == "CANCEL":
            invite_tx = self.servers.get(key[:-1] + ("INVITE",))
            self.tu.cancel_received(tx, invite_tx)
        else:
            self.tu.request_received(tx)

    def response_received(self, response, source):
        via = response._top_via()
        cseq = response._cseq()
        tx = self.clients.get((via.params.get("branch"), cseq.method)) if cseq is not None else None
        if tx is not None:
            tx.receive_response(response)
        else:
            self.tu.stray_response(response, source)

    # -- from the transaction user ------------------------------------------------

    def start_client(self, request, peer, owner):
        """
        Send C{request} (whose top Via we added) to C{peer} in a new client
        transaction reporting to C{owner}.
        """
        via = request._top_via()
        key = (via.params.get("branch"), request.method)
        cls = ClientInviteTransaction if request.method == "INVITE" else ClientNonInviteTransaction
        tx = cls(self, key, request, peer, owner)
        self.clients[key] = tx
        tx.start()
        return tx

    def remove(self, tx):
        table = self.servers if tx.key in self.servers and self.servers[tx.key] is tx else self.clients
        if table.get(tx.key) is tx:
            del table[tx.key]


# (Declared here rather than by @implementer, which an extension type cannot
# take as a decorator; zope.interface records it all the same.)
classImplements(TransactionLayer, ITransportReceiver)
