# -*- test-case-name: tests.test_registrar,tests.test_nat -*-
"""The location service interface and the binding it stores."""

from zope.interface import Attribute, Interface

from sipcluster.sip.uri import SipURI, pct_decode


def aor_key(uri):
    """
    The address-of-record key of a SIP URI (RFC 3261 10.3 step 5): scheme
    sip (sips and sip share bindings), user unescaped, host lower-cased, no
    port or parameters.  None for a URI without user part or not SIP.
    """
    if not isinstance(uri, SipURI) or uri.user is None:
        return None
    return "sip:%s@%s" % (pct_decode(uri.user), uri.host.lower())


class Binding:
    """
    One contact bound to an address-of-record.

    @ivar contact: the Contact URI as registered (a L{SipURI}).
    @ivar expires_at: absolute time (the clock's seconds) it expires.
    @ivar q: preference, 0..1.
    @ivar path: the Path route set (a list of URI strings, RFC 3327).
    @ivar received: (transport, host, port) the REGISTER came from, when
        the contact is behind NAT or bound to a flow; requests go there.
    """

    __slots__ = ("aor", "contact", "expires_at", "q", "call_id", "cseq", "path",
                 "received", "instance", "reg_id", "node")

    def __init__(self, aor, contact, expires_at, q=1.0, call_id="", cseq=0,
                 path=(), received=None, instance=None, reg_id=None, node=None):
        self.aor = aor
        self.contact = contact
        self.expires_at = expires_at
        self.q = q
        self.call_id = call_id
        self.cseq = cseq
        self.path = list(path)
        self.received = received
        self.instance = instance
        self.reg_id = reg_id
        self.node = node

    def __repr__(self):
        return "<Binding %s -> %s q=%s>" % (self.aor, self.contact, self.q)


class ILocationService(Interface):
    """Bindings of addresses-of-record to contacts."""

    def lookup(aor):
        """
        The current (unexpired) bindings of C{aor}, highest q first.  Must
        answer from memory, without waiting on I/O: it is on the path of
        every INVITE.
        """

    def bindings(aor):
        """A Deferred firing with the current bindings of C{aor}."""

    def update(aor, changes):
        """
        Apply C{changes} (a list of L{Binding} to add or refresh; a binding
        with expires_at <= now removes the contact) atomically.  The
        Deferred fires with the resulting bindings once they are stored
        durably, and only then may a REGISTER be answered 200.
        """

    def all_bindings():
        """Every current binding, from memory (keepalives, inspection)."""

    aors = Attribute("How many addresses-of-record have bindings.")
