# -*- test-case-name: tests.test_registrar -*-
"""
The registrar (RFC 3261 10.3) for the domains a node serves, with Path
(RFC 3327), the basics of outbound (RFC 5626: +sip.instance, reg-id, flows)
and NAT detection: a contact that is not reachable as written is bound to
the address the REGISTER came from, and the original Contact is kept.

It answers 200 only once the location service has stored the change.
"""

import ipaddress
import time
from email.utils import formatdate

from twisted.internet import defer
from twisted.logger import Logger

from sipcluster.location.interface import Binding, aor_key
from sipcluster.proxy.pipeline import TARGETS, Respond, Stage, error_status
from sipcluster.schema import ConfigSection, Key
from sipcluster.sip.grammar import unquote
from sipcluster.sip.uri import SipURI
from sipcluster.transport.base import bare_host, same_ip

CONFIG = ConfigSection("registrar", {
    "enabled": Key(bool, True, "Answer REGISTER for the served domains (RFC 3261 10.3)."),
    "default_expires": Key(int, 3600, "Binding lifetime when the REGISTER names none, in seconds.", minimum=1),
    "min_expires": Key(int, 60, "Shorter requested lifetimes get 423 Interval Too Brief with this Min-Expires.", minimum=1),
    "max_expires": Key(int, 86400, "Longer requested lifetimes are cut to this, in seconds.", minimum=1),
    "nat_detect": Key(bool, True, "Bind a contact that is private or differs from the REGISTER's source to that source address."),
})


# Option tags this registrar implements (RFC 3261 10.3 step 2).
SUPPORTED = frozenset(["path", "outbound"])


def is_private(host):
    """Whether C{host} is a literal address no one outside its network can reach."""
    try:
        address = ipaddress.ip_address(bare_host(host))
    except ValueError:
        return False
    return address.is_private and not address.is_loopback


def _path(request):
    """
    The Path of a REGISTER from a client that supports it (RFC 3327), as
    written: stored with the bindings (the Route set of every request to
    them) and echoed in the 200.  Parsed first, so a malformed one is
    refused (ParseError, 400) before anything is stored.
    """
    if "path" not in request.option_tags("supported"):
        return []
    request.paths
    return request.values("path")


class Registrar(Stage):
    """
    The first target selection stage: a REGISTER for one of our domains,
    with no Route left after route pre-processing (RFC 3261 16.4, so one
    sent through an outbound proxy naming this node counts), is answered
    here (10.3) instead of being forwarded.

    @ivar location: an L{ILocationService}.
    @ivar forwarder: the proxy's L{Forwarder} (local responses, our domains).
    """

    log = Logger()
    name = "registrar"
    points = (TARGETS,)

    def __init__(self, location, forwarder, clock, default_expires=3600, min_expires=60,
                 max_expires=86400, nat_detect=True, node_id=None):
        self.location = location
        self.forwarder = forwarder
        self.clock = clock
        self.default_expires = default_expires
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.nat_detect = nat_detect
        self.node_id = node_id
        self.stats = {"registered": 0, "rejected": 0, "queries": 0, "retransmissions": 0}

    # -- entry point -------------------------------------------------------------

    def targets(self, context):
        request = context.request
        if request.method != "REGISTER" or request.has("route") or \
                not self.forwarder.is_our_domain(request.uri):
            return None
        return self.handle(context)

    def handle(self, context):
        """
        Process a REGISTER; its C{context} has C{request}, C{source} and
        C{respond(response)}.  Returns a Deferred firing once answered.
        """
        request = context.request
        try:
            path = _path(request)
            aor, changes = self.changes_for(request, context.source, path)
        except Exception as e:
            self.stats["rejected"] += 1
            status, reason, headers = error_status(e)
            if status == 500:
                self.log.failure("answering a REGISTER failed")
            self._respond(context, status, reason, headers)
            return defer.succeed(None)
        if changes is None:
            self.stats["queries"] += 1
            d = self.location.bindings(aor)
        else:
            d = self.location.update(aor, changes)

        def stored(bindings):
            if changes:
                self.stats["registered"] += 1
            self._respond(context, 200, headers=self._binding_headers(bindings, path))

        def failed(failure):
            # Not stored, so not acknowledged (the client retries later).
            self.log.failure("storing bindings of {aor} failed", failure, aor=aor)
            self._respond(context, 503, "Service Unavailable (location store)",
                          [("Retry-After", "5")])
        d.addCallbacks(stored, failed)
        d.addErrback(self._internal_error, context)
        return d

    def _internal_error(self, failure, context):
        # A bug must still answer the REGISTER (500), not leave it hanging.
        self.log.failure("answering a REGISTER failed", failure)
        self._respond(context, 500, "Server Internal Error")

    # -- RFC 3261 10.3 ------------------------------------------------------------

    def changes_for(self, request, source, path):
        """
        The AOR and the bindings a REGISTER adds, refreshes or removes
        (None for a query), C{path} (from L{_path}) stored with them.
        Raises L{Respond}.
        """
        # Step 2: extensions the registrar must understand.
        unsupported = [t for t in request.option_tags("require") if t not in SUPPORTED]
        if unsupported:
            raise Respond(420, headers=[("Unsupported", ", ".join(unsupported))])
        # Step 5: the address-of-record is the To URI, in one of our domains.
        to_uri = request.to.uri
        aor = aor_key(to_uri)
        if aor is None or not self.forwarder.is_our_domain(to_uri):
            raise Respond(404, "Not Found (not an address-of-record of this domain)")
        if not request.has("contact"):
            return aor, None
        now = self.clock.seconds()
        call_id = request.call_id
        cseq = request.cseq.number
        current = {str(b.contact): b for b in self.location.lookup(aor)}
        if request.is_star_contact:
            # Step 6: "*" removes everything, only with Expires: 0.
            if request.expires != 0:
                raise Respond(400, "Contact * requires Expires: 0")
            changes = []
            for binding in current.values():
                self._check_order(binding, call_id, cseq)
                changes.append(Binding(aor, binding.contact, now, call_id=call_id, cseq=cseq))
            return aor, changes
        header_expires = request.expires
        if self._is_retransmission(request, current, call_id, cseq, header_expires):
            # The same REGISTER again (a phone failing over to another node
            # after ours stored it but died before answering): answer with
            # the bindings as they are, changing nothing.
            self.stats["retransmissions"] += 1
            return aor, None
        changes = []
        for contact in request.contacts:
            uri = contact.uri
            if not isinstance(uri, SipURI):
                raise Respond(400, "Contact must be a SIP URI")
            expires = contact.expires
            if expires is None:
                expires = header_expires if header_expires is not None else self.default_expires
            if 0 < expires < self.min_expires:
                # Step 7: 423 tells the client the shortest we accept.
                raise Respond(423, headers=[("Min-Expires", str(self.min_expires))])
            expires = min(expires, self.max_expires)
            existing = current.get(str(uri))
            if existing is not None:
                self._check_order(existing, call_id, cseq)
            instance = contact.param("+sip.instance")
            reg_id = contact.param("reg-id")
            received = None if path else self._reachable_at(
                uri, request.top_via, source, instance is not None and reg_id is not None)
            changes.append(Binding(
                aor, uri, now + expires if expires else now, q=contact.q, call_id=call_id,
                cseq=cseq, path=path, received=received,
                instance=unquote(instance) if instance else None,
                reg_id=reg_id, node=self.node_id))
        return aor, changes

    def _is_retransmission(self, request, current, call_id, cseq, header_expires):
        """
        Whether C{request} repeats the REGISTER that made the C{current}
        bindings: same Call-ID and CSeq, and each contact bound as it asks
        (present with its q and Path when it asks for a lifetime, absent
        when it asked for removal).  A different request with an equal CSeq
        is still out of order (RFC 3261 10.3 step 7).
        """
        seen = False
        for contact in request.contacts:
            existing = current.get(str(contact.uri))
            expires = contact.expires
            if expires is None:
                expires = header_expires if header_expires is not None else self.default_expires
            if existing is None:
                if expires != 0:
                    return False
                continue
            if existing.call_id != call_id or existing.cseq != cseq or expires == 0 or \
                    existing.q != contact.q:
                return False
            seen = True
        return seen

    @staticmethod
    def _check_order(binding, call_id, cseq):
        # Step 7: for the same Call-ID the CSeq must grow.
        if binding.call_id == call_id and cseq <= binding.cseq:
            raise Respond(400, "Invalid CSeq number (out of order)")

    def _reachable_at(self, uri, via, source, outbound):
        """
        Where requests for this contact must go, when not to the contact
        itself: the flow it registered over (RFC 5626), or its real source
        when it is behind NAT.  NAT is detected as Kamailio's nathelper
        does by default: a private Contact address, or a top Via whose
        sent-by is not where the packet came from.  A public contact
        registered by a third party from elsewhere is left alone.
        """
        flow = (source.transport, source.host, source.port)
        if outbound:
            # RFC 5626 5.3: requests for this contact go over its flow.
            return flow
        if source.transport != "udp":
            # A connection-oriented UA registering itself (its contact on
            # the connection's host, or a private address, or its Via
            # naming another host than the connection's: a NAT) is reached
            # over its connection: a new one toward it may not get through
            # a NAT or firewall (RFC 5923's reasoning).  A contact of
            # another host registered by a UA that is where its Via says (a
            # third-party registration) is reachable as written.
            if is_private(uri.host) or same_ip(bare_host(uri.host), source.host):
                return flow
            if self.nat_detect and not same_ip(bare_host(via.host), source.host):
                return flow
            return None
        if not self.nat_detect:
            return None
        via_moved = bare_host(via.host) != source.host or (via.port or 5060) != source.port
        if is_private(uri.host) or via_moved:
            return flow
        return None

    # -- the 200 ------------------------------------------------------------------

    def _binding_headers(self, bindings, path):
        now = self.clock.seconds()
        extra = []
        for binding in bindings:
            remaining = max(0, int(binding.expires_at - now + 0.5))
            params = ";expires=%d" % remaining
            if binding.q != 1.0:
                params += ";q=%s" % ("%.3f" % binding.q).rstrip("0").rstrip(".")
            if binding.instance:
                params += ';+sip.instance="%s"' % binding.instance
            if binding.reg_id:
                params += ";reg-id=%s" % binding.reg_id
            extra.append(("Contact", "<%s>%s" % (binding.contact, params)))
        for value in path:
            extra.append(("Path", value))  # RFC 3327 5.3
        if any(b.reg_id for b in bindings):
            extra.append(("Require", "outbound"))  # RFC 5626 6
        extra.append(("Date", formatdate(time.time(), usegmt=True)))
        return extra

    def _respond(self, context, status, reason=None, headers=()):
        context.respond(self.forwarder.local_response(context.request, status, reason, headers))
