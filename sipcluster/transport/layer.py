# -*- test-case-name: tests.test_transport -*-
"""
The transport layer: owns the listeners and the connection table, turns
received bytes into validated messages for its receiver (the transaction
layer or a stateless proxy), answers unparseable requests itself, and sends
requests and responses to where RFC 3261 18 says they go.
"""

import hashlib
import socket

from twisted.internet import defer
from twisted.logger import Logger

from sipcluster.counts import Counts
from sipcluster.nat.stun import StunServer
from sipcluster.sip.errors import SIPError
from sipcluster.sip.grammar import remember
from sipcluster.sip.message import Request, make_response, parse_message
from sipcluster.sip.uri import SipURI, format_hostport
from sipcluster.sip.via import Via
from sipcluster.transport.base import (
    Peer, bare_host, response_destination, same_ip, stamp_via)
from sipcluster.transport.tcp import ConnectionTable, SIPStreamFactory
from sipcluster.transport.interfaces import ITransportReceiver  # noqa: F401 (named here too)
from sipcluster.transport.udp import SIPDatagramProtocol, listen_udp


# How many is_local answers a layer keeps before it starts again.
_IS_LOCAL_SIZE = 1024


class TransportError(Exception):
    """A message could not be sent (RFC 3261 17.1.4 / 18.4)."""


def _reuse_port_socket(host, port, family):
    """A bound, non-blocking UDP socket with SO_REUSEPORT set."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


class TransportLayer:
    """
    @ivar receiver: gets C{request_received(request, source)} and
        C{response_received(response, source)}.
    @ivar stats: counters (received, sent, rejected, dropped...).
    """

    # (An extension type in the compiled build, its hot methods called in C
    # by the modules that know its type: see layer.pxd.  It keeps a
    # __dict__ for what tests and callers attach or replace.)
    __slots__ = ("reactor", "listen_addresses", "advertise", "max_message_size", "server_header",
                 "reuse_port", "private_port", "listen_tcp", "receiver", "stats", "stun", "trace",
                 "resolver", "udp", "tcp", "ports", "table", "cluster_name", "_sent_by",
                 "_record_route", "_record_route_uris", "_sent_by_text", "_local", "_is_local",
                 "_local_ports", "__dict__")

    log = Logger()

    def __init__(self, reactor, listen, advertise="", max_message_size=65535,
                 idle_timeout=600, max_connections=10000, server_header="",
                 reuse_port=False, private_port=False, listen_tcp=True, stun=False,
                 cluster_name=None, trace=False, resolver=None):
        self.reactor = reactor
        self.listen_addresses = list(listen)
        self.advertise = advertise
        self.max_message_size = max_message_size
        self.server_header = server_header
        self.reuse_port = reuse_port
        self.private_port = private_port
        self.listen_tcp = listen_tcp
        self.receiver = None
        self.stats = Counts()
        # A STUN server sharing the UDP ports (RFC 5389 5: told apart from
        # SIP by the first byte), or None.
        self.stun = StunServer(self.stats) if stun else None
        # One debug line per message in and out (log.level = "debug"); a
        # flag, so that nothing is formatted at other levels.
        self.trace = trace
        # What finds the addresses of a Via sent-by named by host name (RFC
        # 3263 5): a SIPResolver, or None.
        self.resolver = resolver
        self.udp = []
        self.tcp = []
        self.ports = []
        self.table = ConnectionTable(self, reactor, idle_timeout, max_connections, max_message_size)
        self._sent_by = {}
        self._record_route = {}
        self._record_route_uris = {}
        self._sent_by_text = set()
        self._local = set()
        self._forget_local()
        self.cluster_name = None
        if cluster_name:
            self.set_cluster_name(cluster_name)

    # -- lifecycle ----------------------------------------------------------

    def listen(self):
        """Open every listen address; raises on a port already in use."""
        for address in self.listen_addresses:
            if address.transport == "udp":
                self._listen_udp(address.host, address.port)
            elif address.transport == "tcp":
                if not self.listen_tcp:
                    continue
                factory = SIPStreamFactory(self.table, address.host, address.port)
                port = self.reactor.listenTCP(address.port, factory, interface=address.host)
                self.ports.append(port)
                self.tcp.append(factory)
                self._add_local("tcp", address.host, port.getHost().port)
                if self.table.bind_host is None and address.host not in ("0.0.0.0", "::"):
                    self.table.bind_host = address.host
            else:
                raise TransportError("transport %s is not available yet" % address.transport)

    def _listen_udp(self, host, port):
        proto = SIPDatagramProtocol(self, host, port)
        proto.stun = self.stun
        if self.reuse_port:
            # Several worker processes share the port; the kernel keeps each
            # source address on one of them.
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = _reuse_port_socket(host, port, family)
            listening = listen_udp(self.reactor, port, proto, host, sock)
            sock.close()
        else:
            listening = listen_udp(self.reactor, port, proto, host)
        self.ports.append(listening)
        self.udp.append(proto)
        self._add_local("udp", host, listening.getHost().port)
        proto.port = listening.getHost().port
        if self.private_port:
            # A port of this worker alone, written into the Via of what it
            # forwards, so responses come back to the worker that holds the
            # transaction.
            private = SIPDatagramProtocol(self, host, 0)
            plistening = listen_udp(self.reactor, 0, private, host)
            private.port = plistening.getHost().port
            self.ports.append(plistening)
            self.udp.insert(0, private)
            self._add_address(host, private.port)
            self._record_route_uris.clear()
            if not self.advertise:
                # Via names the private port; Record-Route keeps the shared
                # one so that in-dialog requests may reach any worker.
                self._sent_by["udp"] = self._sent_by[_side("udp", host)] = (host, private.port)
                self._sent_by_text.add("%s:%d" % (host, private.port))

    def _add_local(self, transport, host, port):
        self._record_route_uris.clear()
        self._add_address(host, port)
        # The first address of each transport, and the first of each
        # address family for it: what goes into Via and Record-Route toward
        # a next hop of that family (RFC 3261 18.2.1: the next hop answers
        # to the Via's sent-by).
        for key in (transport, _side(transport, host)):
            if key in self._sent_by:
                continue
            if self.advertise:
                adv_host, _, adv_port = self.advertise.rpartition(":")
                if adv_host and adv_port.isdigit() and not adv_host.endswith(":"):
                    self._sent_by[key] = (adv_host, int(adv_port))
                else:
                    self._sent_by[key] = (self.advertise, port)
                self._add_address(*self._sent_by[key])
            else:
                self._sent_by[key] = (host, port)
            sent_host, sent_port = self._sent_by[key]
            self._sent_by_text.add("%s:%d" % (sent_host, sent_port))
            self._record_route[key] = self._sent_by[key]

    def stop(self):
        """Close listeners and connections; a Deferred fires when done."""
        self.table.close_all()
        ds = [defer.maybeDeferred(p.stopListening) for p in self.ports]
        self.ports = []
        return defer.DeferredList(ds)

    # -- addresses ----------------------------------------------------------

    def sent_by(self, transport, v6=None):
        """
        (host, port) for the Via we add when sending over C{transport}, to
        an IPv6 next hop when C{v6} (None: not known).
        """
        sent_by = self._sent_by
        if v6 is not None:
            found = sent_by.get(transport + ("6" if v6 else "4"))
            if found is not None:
                return found
        return sent_by.get(transport) or next(iter(sent_by.values()))

    def make_via(self, transport, branch, v6=None):
        host, port = self.sent_by(transport, v6)   # (compiled: str, their methods C calls)
        via_transport = transport.upper()
        if host.count(":") > 1 and not host.startswith("["):
            host = "[%s]" % host
        # RFC 3581 3: ask the next hop to answer to the port we sent from.
        # (Its text written here at once, as Via's str would write it: one
        # format rather than the general one over its parameters.)
        return Via(via_transport, host, port, {"branch": branch, "rport": None},
                   _text="SIP/2.0/%s %s;branch=%s;rport" % (via_transport,
                                                            format_hostport(host, port), branch))

    def set_cluster_name(self, name):
        """
        Record-Route with the cluster's shared name (host or host:port)
        instead of this node's address, so in-dialog requests may reach any
        node; every node takes that name for its own.
        """
        host, _, port = name.rpartition(":") if name.count(":") == 1 else (name, "", "")
        self.cluster_name = (host.lower(), int(port) if port.isdigit() else None)
        self._record_route_uris.clear()
        self._forget_local()

    def record_route_uri(self, transport, v6=None):
        """
        Our URI for Record-Route when facing C{transport} (lr, RFC 3261
        16.6 step 4), on the IPv6 side when C{v6}.  Made once per side (it
        changes only with the listeners and the cluster name).
        """
        key = (transport, v6)
        uri = self._record_route_uris.get(key)
        if uri is None:
            uri = self._record_route_uris[key] = self._make_record_route_uri(transport, v6)
        return uri

    def _make_record_route_uri(self, transport, v6):
        if self.cluster_name is not None:
            host, port = self.cluster_name
        else:
            key = transport if v6 is None else transport + ("6" if v6 else "4")
            host, port = self._record_route.get(key) or self._record_route.get(transport) or \
                self.sent_by(transport, v6)
        if host.count(":") > 1 and not host.startswith("["):
            host = "[%s]" % host
        params = {"lr": None}
        if transport != "udp":
            params = {"transport": transport, "lr": None}
        return SipURI(host, port=port, params=params)

    def _add_address(self, host, port):
        """One more host:port of ours (is_local's answers are asked again)."""
        self._local.add((bare_host(host), port))
        self._forget_local()

    def _forget_local(self):
        """Our addresses changed: what was answered about them no longer holds."""
        self._is_local = {}
        self._local_ports = None

    def is_local(self, host, port):
        """
        Whether host:port is one of this node's addresses (or the cluster's
        name).  Asked several times per request, mostly of the same few
        hosts: the answers are kept (a bounded memo: the hosts come from
        the requests).
        """
        memo = self._is_local
        key = (host, port)
        answer = memo.get(key)
        if answer is None:
            answer = remember(memo, key, self._find_local(host, port), _IS_LOCAL_SIZE)
        return answer

    def _find_local(self, host, port):
        host = bare_host(host)
        if self.cluster_name is not None and host.lower() == self.cluster_name[0] and \
                (self.cluster_name[1] is None or self.cluster_name[1] == port or port in (5060, 5061)):
            return True
        for local_host, local_port in self._local:
            if local_port == port and (local_host == host or same_ip(local_host, host)):
                return True
        return False

    def mentions_local(self, text):
        """
        Whether C{text} contains one of our sent-by host:port strings: a
        cheap filter before parsing a Via to see if it is ours.
        """
        for needle in self._sent_by_text:
            if needle in text:
                return True
        return False

    def local_ports(self):
        """The ports of our addresses (a frozenset, made again when they change)."""
        ports = self._local_ports
        if ports is None:
            ports = self._local_ports = frozenset([port for _, port in self._local])
        return ports

    # -- receiving ----------------------------------------------------------

    def data_received(self, data, source, stream=False):
        self.stats["received"] += 1
        try:
            message = parse_message(data, self.max_message_size, stream)
            message.validate()
        except SIPError as e:
            self._reject(e, source)
            return
        except Exception:
            # The message layer promises SIPError only; if that promise is
            # ever broken, one bad packet must still not take the node down.
            self.stats["dropped"] += 1
            self.log.failure("unexpected error parsing a message from {source}", source=source)
            return
        if self.trace:
            self._trace("in", message, source.peer, _local_of(source))
        if isinstance(message, Request):
            stamp_via(message, source)
            self.receiver.request_received(message, source)
        else:
            self.receiver.response_received(message, source)

    def _reject(self, error, source):
        request = error.message
        if isinstance(request, Request) and request.method != "ACK" and request.has("via"):
            self.stats["rejected"] += 1
            via_ok = _top_via_ok(request)
            if via_ok:
                stamp_via(request, source)
            if self.trace:
                self._trace("in", request, source.peer, _local_of(source))
            response = make_response(request, error.status, error.reason, _to_tag_for(request))
            if self.server_header:
                response.add("Server", self.server_header)
            self.send_response_now(response, source, fallback_only=not via_ok)
        else:
            self.stats["dropped"] += 1
            if self.trace:
                self.log.debug("in dropped {source} -> {local}: {why}", source=str(source.peer),
                               local=_local_of(source), why=error.reason)

    # -- sending --------------------------------------------------------------

    def udp_for(self, host):
        """The UDP listener to send to C{host} from (matching address family)."""
        want_v6 = ":" in host
        for proto in self.udp:
            if (":" in proto.host) == want_v6:
                return proto
        if self.udp:
            return self.udp[0]
        raise TransportError("no UDP listener")

    def send_request(self, request, peer):
        """
        Send C{request} to C{peer}.  Returns a Deferred that fails with
        L{TransportError} when it could not be sent.
        """
        if self.trace:
            self._trace("out", request, self.sent_by_text(peer.transport), peer)
        return self._send_data(request.to_bytes(), peer)

    def send_data(self, data, peer):
        """
        Send the bytes of a request (a retransmission, or a keepalive) to
        C{peer}.  Returns a Deferred failing with L{TransportError} when
        they could not be sent.
        """
        if self.trace and len(data) > 4:
            # Parsed again only at log.level = "debug".
            self._trace_data(data, peer)
        return self._send_data(data, peer)

    def send_request_now(self, request, peer):
        """
        L{send_request} without a Deferred where none is needed: over UDP
        the request is written now and the answer is True, or the
        L{TransportError} (returned, not raised) saying why it could not
        be; over a stream, the Deferred of L{send_request} (a connection
        may have to be made).
        """
        if self.trace:
            self._trace("out", request, self.sent_by_text(peer.transport), peer)
        if peer.transport == "udp":
            return self._send_datagram(request.to_bytes(), peer)
        return self._send_data(request.to_bytes(), peer)

    def send_data_now(self, data, peer):
        """L{send_data} as L{send_request_now} is L{send_request}."""
        if peer.transport == "udp":
            if self.trace and len(data) > 4:
                self._trace_data(data, peer)
            return self._send_datagram(data, peer)
        return self.send_data(data, peer)

    def _send_datagram(self, data, peer):
        """Write C{data} to C{peer} over UDP: True, or the TransportError."""
        try:
            proto = self.udp_for(peer.host)
        except TransportError as e:
            return e
        if proto.send(data, peer):
            self.stats["sent"] += 1
            return True
        return TransportError("UDP send to %s failed" % (peer,))

    def _send_data(self, data, peer):
        if peer.transport == "udp":
            sent = self._send_datagram(data, peer)
            return defer.succeed(True) if sent is True else defer.fail(sent)
        if peer.transport == "tcp":
            d = self.table.connect(peer)
            return d.addCallback(self._write_stream, data, peer).addErrback(_not_connected, peer)
        return defer.fail(TransportError("unsupported transport %s" % peer.transport))

    def _write_stream(self, proto, data, peer):
        if not proto.send(data):
            raise TransportError("connection to %s closed" % (peer,))
        self.stats["sent"] += 1
        return True

    def send_response(self, response, source=None, fallback_only=False):
        """
        Send C{response} where RFC 3261 18.2.2 and RFC 3581 4 say: over the
        connection the request came on when it is still open, else to the
        address in the top Via.  Errors are logged and counted; a Deferred
        is returned for those who care.
        """
        sent = self.send_response_now(response, source, fallback_only)
        if sent is True or sent is False:
            return defer.succeed(sent)
        return sent

    def response_peer(self, response, source=None):
        """
        Where C{response} goes when not over the connection its request
        came on: the L{Peer} of its top Via (RFC 3261 18.2.2, RFC 3581 4),
        else, the Via missing or unusable, back where the request came from
        (C{source}), else None.
        """
        try:
            return response_destination(response)
        except SIPError:
            return source.peer if source is not None else None

    def send_response_now(self, response, source=None, fallback_only=False, peer=None):
        """
        L{send_response} without a Deferred where none is needed: True or
        False (sent, or not: counted) when it was written at once (over
        UDP, or the connection the request came on), else the Deferred of
        L{send_response} (a connection to make, a sent-by to resolve).
        C{peer}: the L{response_peer} of an earlier response with the same
        top Via (a server transaction's), found again otherwise.
        """
        if not response.has("via"):
            self.stats["dropped"] += 1
            return False
        data = response.to_bytes()
        if self.trace:
            self._trace("out", response, None, source.peer if source is not None else None)
        if source is not None and source.transport != "udp":
            if source.local.send(data):
                self.stats["sent"] += 1
                return True
        if fallback_only:
            peer = source.peer
        elif peer is None:
            peer = self.response_peer(response, source)
            if peer is None:
                self.stats["send_errors"] += 1
                return False
        if peer.transport == "udp":
            if source is not None and source.transport == "udp":
                # Leave from the socket the request came in on (RFC 3581 4).
                local = source.local
            elif not is_name(peer.host) and self.udp:
                local = self.udp_for(peer.host)
            else:
                local = None
            if local is not None:
                # Sent now (a failed send is counted by the listener).
                if local.send(data, peer):
                    self.stats["sent"] += 1
                    return True
                return False
        elif peer.transport != "tcp":
            peer = Peer("tcp" if peer.transport in ("tls", "sctp") else "udp", peer.host, peer.port)
        if is_name(peer.host):
            # A sent-by that is a name, with no received to say where the
            # request came from: RFC 3263 5 finds it.
            d = self._by_sent_by(data, response, None)
        else:
            d = self._send_data(data, peer)
            if peer.transport != "udp":
                # RFC 3261 18.2.2: the connection is gone and a new one to
                # the received address failed: RFC 3263 5, from the sent-by.
                d.addErrback(self._by_sent_by_after, data, response)
        return d.addErrback(self._response_failed, peer)

    def _by_sent_by_after(self, failure, data, response):
        return self._by_sent_by(data, response, failure)

    def _response_failed(self, failure, peer):
        self.stats["send_errors"] += 1
        self.log.info("cannot send response to {peer}: {why}", peer=str(peer),
                      why=failure.getErrorMessage())
        return False

    def _by_sent_by(self, data, response, failure):
        """
        Send a response the way RFC 3263 5 says: to the addresses its top
        Via's sent-by name resolves to (SRV for the Via's transport when it
        has no port, else A/AAAA), each in turn until one takes it.
        """
        via = response.top_via
        host = bare_host(via.host)
        if self.resolver is None or not is_name(host):
            return failure if failure is not None else defer.fail(
                TransportError("cannot resolve %s" % host))
        transport = via.transport.lower()
        uri = SipURI(host, port=via.port, params={"transport": transport})
        d = self.resolver.resolve(uri, (transport,))

        def next_peer(peers):
            if not peers:
                raise TransportError("no address of %s took the response" % host)
            d = self._send_data(data, peers[0])
            d.addErrback(lambda f: next_peer(peers[1:]))
            return d
        return d.addCallback(next_peer)


    # -- the debug trace ---------------------------------------------------

    def sent_by_text(self, transport):
        host, port = self.sent_by(transport)
        return "%s:%s" % (transport, format_hostport(host, port))

    def _trace_data(self, data, peer):
        try:
            message = parse_message(data)
        except SIPError:
            self.log.debug("out unparseable message -> {destination}", destination=str(peer))
            return
        self._trace("out", message, self.sent_by_text(peer.transport), peer)

    def _trace(self, direction, message, source, destination):
        """One line per message: what, Call-ID, CSeq, from, to, transaction (branch)."""
        what = message.method if isinstance(message, Request) else str(message.status)
        cseq = _or_dash(lambda: "%d %s" % (message.cseq.number, message.cseq.method))
        via = _or_dash(lambda: message.top_via)
        if source is None:
            source = _or_dash(lambda: self.sent_by_text(via.transport.lower()))
        if destination is None:
            destination = _or_dash(lambda: response_destination(message))
        self.log.debug(
            "{direction} {what} call-id={call_id} cseq={cseq} {source} -> {destination} "
            "tx={branch}", direction=direction, what=what,
            call_id=_or_dash(lambda: message.call_id), cseq=cseq, source=str(source),
            destination=str(destination), branch=_or_dash(lambda: via.branch))


def is_name(host):
    """Whether C{host} (no brackets) is a host name rather than an address."""
    # Asked of the destination of every response sent: the answer of the
    # few hosts a node talks to is remembered (bounded: emptied when full).
    memo = _IS_NAME
    answer = memo.get(host)
    if answer is None:
        answer = _is_name(host)
        if len(memo) >= 4096:
            memo.clear()
        memo[host] = answer
    return answer


_IS_NAME = {}


def _is_name(host):
    if ":" in host:
        return False
    parts = host.split(".")
    if len(parts) != 4:
        return True
    for part in parts:
        if not part.isdigit():
            return True
    return False


def _not_connected(failure, peer):
    if failure.check(TransportError):
        return failure
    raise TransportError("cannot connect to %s: %s" % (peer, failure.getErrorMessage()))


def _side(transport, host):
    """The key of C{transport} for the address family of C{host}: "udp4", "tcp6"..."""
    return transport + ("6" if ":" in host else "4")


def _or_dash(read):
    """What C{read()} gives, or "-" when the message does not have it (or it does not parse)."""
    try:
        value = read()
    except Exception:
        return "-"
    return "-" if value is None else value


def _to_tag_for(request):
    """
    A To tag for a response of our own when the request had none (RFC 3261
    8.2.6.2), the same for its retransmissions; None when its To cannot be
    read.
    """
    try:
        if request.to_tag is not None:
            return None
        seed = "%s\x00%s" % (request.call_id, request.from_tag)
    except SIPError:
        return None
    return hashlib.md5(seed.encode("utf-8", "surrogateescape")).hexdigest()[:10]


def _local_of(source):
    """The local end (transport:host:port) a message arrived at."""
    local = source.local
    host, port = getattr(local, "host", None), getattr(local, "port", None)
    if host is None and getattr(local, "transport", None) is not None:
        address = local.transport.getHost()
        host, port = address.host, address.port
    if host is None:
        return source.transport
    return "%s:%s" % (source.transport, format_hostport(host, port or 0))


def _top_via_ok(request):
    try:
        return request.top_via is not None
    except SIPError:
        return False
