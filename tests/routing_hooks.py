"""Routing hooks for tests/test_routing_hook.py (routing.hook names these)."""

from twisted.internet import defer

from sipcluster.routing.hook import Candidate, Reject

seen = []
pending = []


def by_user(request, candidates):
    """Sends carol to a fixed URI, mallory away, dave to the set, others as the rules chose."""
    seen.append((request.method, request.uri, request.header("x-tier"), candidates))
    user = request.uri.split("@")[0].split(":")[1]
    if user == "carol":
        return ["sip:carol@127.0.0.1:5072"]
    if user == "mallory":
        return Reject(403, "Forbidden (hook)")
    if user == "dave":
        return "lb"
    if user == "erin":
        return [Candidate("sip:erin@lb.test", "sip:127.0.0.1:5073", 1.0)]
    return None


def broken(request, candidates):
    raise KeyError("oops")


def wrong(request, candidates):
    return 42


def later(request, candidates):
    d = defer.Deferred()
    pending.append(d)
    return d
