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

from twisted.logger import Logger

from sipcluster.location.interface import Binding, aor_key
from sipcluster.proxy.forwarding import Reject
from sipcluster.sip.errors import SIPError
from sipcluster.sip.grammar import unquote
from sipcluster.sip.uri import SipURI
from sipcluster.transport.base import bare_host

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


class Registrar:
    """
    @ivar location: an L{ILocationService}.
    @ivar forwarder: the proxy's L{Forwarder} (local responses, our domains).
    """

    log = Logger()

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
        self.stats = {"registered": 0, "rejected": 0, "queries": 0}

    # -- entry point -------------------------------------------------------------

    def handle(self, server_tx):
        """Process a REGISTER (a server transaction's request)."""
        request = server_tx.request
        try:
            path = _path(request)
            aor, changes = self.changes_for(request, server_tx.source, path)
        except Reject as r:
            self.stats["rejected"] += 1
            self._respond(server_tx, r.status, r.reason, r.extra)
            return
        except SIPError as e:
            self.stats["rejected"] += 1
            self._respond(server_tx, e.status, e.reason)
            return
        if changes is None:
            self.stats["queries"] += 1
            d = self.location.bindings(aor)
        else:
            d = self.location.update(aor, changes)

        def stored(bindings):
            if changes:
                self.stats["registered"] += 1
            self._respond(server_tx, 200, extra=self._binding_headers(bindings, path))

        def failed(failure):
            # Not stored, so not acknowledged (the client retries later).
            self.log.failure("storing bindings of {aor} failed", failure, aor=aor)
            self._respond(server_tx, 503, "Service Unavailable (location store)",
                          [("Retry-After", "5")])
        d.addCallbacks(stored, failed)
        d.addErrback(self._internal_error, server_tx)
        return d

    def _internal_error(self, failure, server_tx):
        # A bug must still answer the REGISTER (500), not leave it hanging.
        self.log.failure("answering a REGISTER failed", failure)
        if getattr(server_tx, "state", "trying") in ("trying", "proceeding"):  # stateless: no state
            self._respond(server_tx, 500, "Server Internal Error")

    # -- RFC 3261 10.3 ------------------------------------------------------------

    def changes_for(self, request, source, path):
        """
        The AOR and the bindings a REGISTER adds, refreshes or removes
        (None for a query), C{path} (from L{_path}) stored with them.
        Raises L{Reject}.
        """
        # Step 2: extensions the registrar must understand.
        unsupported = [t for t in request.option_tags("require") if t not in SUPPORTED]
        if unsupported:
            raise Reject(420, extra=[("Unsupported", ", ".join(unsupported))])
        # Step 5: the address-of-record is the To URI, in one of our domains.
        to_uri = request.to.uri
        aor = aor_key(to_uri)
        if aor is None or not self.forwarder.is_our_domain(to_uri):
            raise Reject(404, "Not Found (not an address-of-record of this domain)")
        if not request.has("contact"):
            return aor, None
        now = self.clock.seconds()
        call_id = request.call_id
        cseq = request.cseq.number
        current = {str(b.contact): b for b in self.location.lookup(aor)}
        if request.is_star_contact:
            # Step 6: "*" removes everything, only with Expires: 0.
            if request.expires != 0:
                raise Reject(400, "Contact * requires Expires: 0")
            changes = []
            for binding in current.values():
                self._check_order(binding, call_id, cseq)
                changes.append(Binding(aor, binding.contact, now, call_id=call_id, cseq=cseq))
            return aor, changes
        header_expires = request.expires
        changes = []
        for contact in request.contacts:
            uri = contact.uri
            if not isinstance(uri, SipURI):
                raise Reject(400, "Contact must be a SIP URI")
            expires = contact.expires
            if expires is None:
                expires = header_expires if header_expires is not None else self.default_expires
            if 0 < expires < self.min_expires:
                # Step 7: 423 tells the client the shortest we accept.
                raise Reject(423, extra=[("Min-Expires", str(self.min_expires))])
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

    @staticmethod
    def _check_order(binding, call_id, cseq):
        # Step 7: for the same Call-ID the CSeq must grow.
        if binding.call_id == call_id and cseq <= binding.cseq:
            raise Reject(400, "Invalid CSeq number (out of order)")

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
        if outbound or source.transport != "udp":
            # Connection-oriented and outbound flows: reuse the flow (RFC
            # 5626 5.3; RFC 3261 18 would otherwise open a new connection
            # that a NAT will not let in).
            return flow
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

    def _respond(self, server_tx, status, reason=None, extra=()):
        server_tx.respond(self.forwarder.local_response(server_tx.request, status, reason, extra))
