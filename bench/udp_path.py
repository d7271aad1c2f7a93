"""
What one received datagram costs the reactor, piece by piece (not a test):
each step sends one datagram to a listening UDP port on loopback and then
runs one piece of the path, as a node woken for one datagram does.  Run it
under callgrind with two step counts and take the difference, so start-up
cancels:

    valgrind --tool=callgrind --callgrind-out-file=/tmp/a python bench/udp_path.py iteration 2000
    valgrind --tool=callgrind --callgrind-out-file=/tmp/b python bench/udp_path.py iteration 6000
    # (totals of b - totals of a) / 4000 = instructions per datagram

The pieces, each including the ones above it in the list:

    send       the harness's own sendto and a bare recvfrom (subtract it)
    eagain     and a second recvfrom raising BlockingIOError, caught
    doread     Port.doRead instead (recvfrom, EAGAIN, datagramReceived)
    dispatch   epoll and reactor._doReadOrWrite (doRead), as doPoll does but
               without its log.callWithLogger (the log context of the event)
    poll       reactor.doIteration(0): epoll, callWithLogger, _doReadOrWrite
    iteration  one whole mainLoop iteration (runUntilCurrent, timeout too)
    relay      iteration, the protocol writing the datagram on as
               bench/twisted_floor.py does (Port.write), the sink drained
    relaysock  relay with socket.sendto instead of Port.write, as
               SIPDatagramProtocol.send does

    node       a stateless node (build_node, as twistd builds it) listening on
               HOST:5060, forwarding an INVITE to the sink; run from a tree
               with PYTHONPATH=TREE to measure that tree's node

--port sip uses the SIP listeners' port (sipcluster.transport.udp.SIPPort)
instead of twisted.internet.udp.Port; --reactor sip the node's reactor
(sipcluster.reactor.SIPReactor, twistd --reactor=sipepoll) instead of
Twisted's epoll reactor.
"""

import socket
import sys

from twisted.internet import epollreactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.udp import Port

HOST = "127.0.5.90"
DATAGRAM = b"INVITE sip:bob@example.com SIP/2.0\r\n" + b"x" * 600


class Sink(DatagramProtocol):
    def datagramReceived(self, data, addr):
        pass


class Relay(DatagramProtocol):
    def __init__(self, to):
        self.to = to

    def datagramReceived(self, data, addr):
        self.transport.write(data, self.to)


class SocketRelay(Relay):
    def datagramReceived(self, data, addr):
        self.transport.socket.sendto(data, self.to)


INVITE = (
    "INVITE sip:service@{host}:{port} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP {host}:5080;branch=z9hG4bK-1-1-0\r\n"
    "From: sipp <sip:sipp@{host}:5080>;tag=1SIPpTag001\r\n"
    "To: service <sip:service@{host}:{port}>\r\n"
    "Call-ID: 1-1@{host}\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: sip:sipp@{host}:5080\r\n"
    "Max-Forwards: 70\r\n"
    "Content-Length: 0\r\n\r\n")


def node(reactor, sink):
    """A stateless node on HOST:5060, and the INVITE it forwards to the sink."""
    from sipcluster import config
    from sipcluster.node import build_node
    cfg = config.load(None, {"node.mode": "stateless", "sip.domains": ["example.test"],
                             "sip.listen": ["udp:%s:5060" % HOST], "node.id": "bench"})
    build_node(cfg, reactor).startService()
    return (HOST, 5060), INVITE.format(host=HOST, port=sink.getsockname()[1]).encode()


def main(piece, steps, port_class, reactor_class):
    reactor = reactor_class()
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((HOST, 0))
    to = sink.getsockname()
    if piece == "node":
        address, datagram = node(reactor, sink)
        sendto = socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto
        for _ in range(steps):
            sendto(datagram, address)
            reactor.runUntilCurrent()
            reactor.doIteration(reactor.timeout() or 0)
            sink.recvfrom(8192)
        return
    proto = {"relay": Relay(to), "relaysock": SocketRelay(to)}.get(piece, Sink())
    port = port_class(0, proto, HOST, reactor=reactor)
    port.startListening()
    address = (HOST, port.getHost().port)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sendto = sender.sendto
    sock = port.socket
    for _ in range(steps):
        sendto(DATAGRAM, address)
        if piece == "send":
            sock.recvfrom(8192)
        elif piece == "eagain":
            sock.recvfrom(8192)
            try:
                sock.recvfrom(8192)
            except OSError as e:
                e.args[0]
        elif piece == "doread":
            port.doRead()
        elif piece == "dispatch":
            for fd, event in reactor._poller.poll(0, 4):
                reactor._doReadOrWrite(reactor._selectables[fd], fd, event)
        elif piece == "poll":
            reactor.doIteration(0)
        else:
            reactor.runUntilCurrent()
            reactor.doIteration(reactor.timeout() or 0)
            if piece != "iteration":
                sink.recvfrom(8192)
    port.stopListening()


if __name__ == "__main__":
    args = sys.argv[1:]
    port_class = Port
    reactor_class = epollreactor.EPollReactor
    while args[0].startswith("--"):
        if args[:2] == ["--port", "sip"]:
            from sipcluster.transport.udp import SIPPort as port_class
        elif args[:2] == ["--reactor", "sip"]:
            from sipcluster.reactor import SIPReactor as reactor_class
        args = args[2:]
    main(args[0], int(args[1]), port_class, reactor_class)
