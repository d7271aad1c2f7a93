# -*- test-case-name: tests.test_routing_hook -*-
"""
Programmable routing (routing.hook = "package.module:function"): after the
rules chose (or did not), the operator's function sees a read-only view of
the request and of the candidate targets, and returns new targets, the
name of a destination set, a rejection, or None to leave the choice as it
is.  It may return a Deferred, bounded by routing.hook_timeout_s.  A hook
that raises, times out or returns something else answers 500 and logs one
line: an operator's bug never takes the node's traceback log with it.
"""

import importlib
from collections import namedtuple

from twisted.internet import defer
from twisted.logger import Logger

from sipcluster.proxy.forwarding import Target
from sipcluster.proxy.pipeline import Respond
from sipcluster.sip.errors import SIPError
from sipcluster.sip.uri import SipURI, parse_uri

Candidate = namedtuple("Candidate", "uri next_hop q")
Candidate.__doc__ = "A candidate target as the hook sees it: strings (next_hop may be None) and q."


class Reject(Exception):
    """What a hook returns (or raises) to answer the request: status and reason."""

    def __init__(self, status, reason=None):
        Exception.__init__(self, status, reason)
        self.status = status
        self.reason = reason


class RequestView:
    """
    A read-only view of a request for hooks: strings, never the message
    itself (a hook cannot change what the node forwards behind its back).
    """

    __slots__ = ("method", "uri", "from_uri", "to_uri", "call_id", "source", "_request")

    def __init__(self, context):
        request = context.request
        self.method = request.method
        self.uri = str(request.uri)
        self.from_uri = str(request.from_.uri)
        self.to_uri = str(request.to.uri)
        self.call_id = request.call_id
        source = context.source
        self.source = (source.transport, source.host, source.port) if source is not None else None
        self._request = request

    def header(self, name):
        """The first value of header C{name}, or None."""
        return self._request.header(name)

    def values(self, name):
        """Every value of header C{name} (a list of strings)."""
        return list(self._request.values(name))


def load_hook(text):
    """
    The callable C{"package.module:function"} names; "" is no hook.

    @raise ValueError: what could not be imported or found.
    """
    if not text:
        return None
    module_name, sep, name = text.partition(":")
    if not sep or not module_name or not name:
        raise ValueError('expected "package.module:function", got "%s"' % text)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise ValueError("cannot import %s: %s" % (module_name, e)) from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ValueError("%s has no function %s" % (module_name, name))
    return function


class RoutingHook:
    """
    Calls the hook and turns its answer into targets or an answer.

    @ivar function: the hook.
    @ivar clock: provides IReactorTime (the timeout).
    @ivar sets: name -> L{DestinationSet}, for hooks answering a set name.
    """

    log = Logger()

    def __init__(self, function, clock, timeout, sets, name="hook"):
        self.function = function
        self.clock = clock
        self.timeout = timeout
        self.sets = sets
        self.name = name
        self.failures = 0

    def __call__(self, context, targets):
        """
        Targets (a list), None (the hook left the choice as it was), or a
        Deferred of either; raises L{Respond}.
        """
        candidates = tuple(Candidate(str(t.uri), str(t.next_hop) if t.next_hop else None, t.q)
                           for t in targets or ())
        try:
            result = self.function(RequestView(context), candidates)
        except Exception as e:
            raise self._failed(e) from None
        if isinstance(result, defer.Deferred):
            context.waiting()
            return self._bounded(result).addCallbacks(
                lambda r: self._interpret(context, targets, r), self._errback)
        return self._interpret(context, targets, result)

    def _bounded(self, d):
        timer = self.clock.callLater(self.timeout, d.cancel)

        def done(result):
            if timer.active():
                timer.cancel()
            return result
        return d.addBoth(done)

    def _errback(self, failure):
        if failure.check(Respond):
            return failure
        if failure.check(defer.CancelledError):
            raise self._failed(None, "no answer within %ss" % self.timeout)
        raise self._failed(failure.value)

    def _interpret(self, context, targets, result):
        try:
            return self._targets_of(context, targets, result)
        except Respond:
            raise
        except Exception as e:
            raise self._failed(e) from None

    def _targets_of(self, context, targets, result):
        if result is None:
            return targets
        if isinstance(result, Reject):
            raise Respond(result.status, result.reason)
        if isinstance(result, str):
            if result not in self.sets:
                raise ValueError("returned %r, which is no destination set" % result)
            return self.sets[result].targets(context)
        if isinstance(result, (list, tuple)):
            out = []
            for item in result:
                if isinstance(item, Candidate):
                    out.append(Target(_sip_uri(item.uri), item.q,
                                      next_hop=_sip_uri(item.next_hop) if item.next_hop else None))
                elif isinstance(item, str):
                    out.append(Target(_sip_uri(item)))
                else:
                    raise ValueError("returned a list holding %r" % (item,))
            if not out:
                raise Respond(404)
            return out
        raise ValueError("returned %r (expected targets, a set name, a Reject or None)"
                         % (result,))

    def _failed(self, error, what=None):
        if isinstance(error, Reject):
            return Respond(error.status, error.reason)
        self.failures += 1
        what = what or "%s: %s" % (type(error).__name__, error)
        # One line, no traceback: the operator's code, not ours.
        self.log.error("routing hook {hook} failed: {what}", hook=self.name, what=what)
        return Respond(500, "Server Internal Error (routing hook)")


def _sip_uri(text):
    try:
        uri = parse_uri(text)
    except SIPError:
        uri = None
    if not isinstance(uri, SipURI):
        raise ValueError("returned %r, not a SIP URI" % (text,))
    return uri
