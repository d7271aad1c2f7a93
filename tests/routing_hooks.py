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


views = []


def records(request, candidates):
    """Notes what a hook is shown of the request, and leaves the choice as it was."""
    views.append((request.method, request.uri, request.from_uri, request.to_uri, request.call_id,
                  request.source, request.values("x-tier"), candidates))
    return None


def by_answer(request, candidates):
    """Answers what the Request-URI's user names (for the error cases)."""
    user = request.uri.split("@")[0].split(":")[1]
    return {
        "noset": "nope",
        "mailto": ["mailto:bob@example.test"],
        "unparseable": ["sip:bob@"],
        "number": [42],
        "empty": [],
        "hop": [Candidate("sip:bob@lb.test", "sip:127.0.0.1:5073", 0.5),
                Candidate("sip:bob@127.0.0.1:5072", None, 1.0)],
        "raises": None,
    }[user]


def rejects_later(request, candidates):
    d = defer.Deferred()
    pending.append(d)
    return d


def raises_reject(request, candidates):
    raise Reject(486, "Busy Here (hook)")
