# -*- test-case-name: tests.test_routing_emergency -*-
"""
Emergency calls: a request for an RFC 5031 emergency service URN
(urn:service:sos and its sub-services, urn:service:sos.police...) or for a
configured emergency number (112, 911...) is marked first thing, so that
call admission and draining let it through (a full or draining node still
takes it, RFC 5031 and RFC 6443's "never refuse an emergency call" in
spirit), then routed through the dedicated destination set
(routing.emergency_set), and its CDR says emergency = true.
"""

from collections import OrderedDict

from sipcluster.proxy.pipeline import REQUEST, TARGETS, Stage
from sipcluster.routing.prefix import dialled_digits
from sipcluster.routing.rules import user_of

# context.vars key every request stage that refuses calls must honour.
EMERGENCY = "emergency"
SOS = "urn:service:sos"
# Emergency Call-IDs remembered for their CDRs at most (the oldest go first).
REMEMBERED = 10000


def is_emergency(request, numbers):
    """Whether C{request} calls an emergency service (RFC 5031 URN or a configured number)."""
    uri = request.uri
    if getattr(uri, "scheme", "").lower() == "urn":
        text = str(uri).lower()
        # RFC 5031 4.2: "sos" and its sub-services ("sos.fire").
        return text == SOS or text.startswith(SOS + ".")
    return bool(numbers) and dialled_digits(user_of(uri)) in numbers


class EmergencyMark(Stage):
    """
    A request stage placed before every other: marks emergency calls in
    C{context.vars} for the stages after it.

    @ivar calls: Call-IDs of emergency calls not yet accounted (their CDRs
        are marked, then the Call-ID forgotten).
    """

    name = "emergency"
    points = (REQUEST,)

    def __init__(self, numbers):
        self.numbers = frozenset(dialled_digits(n) for n in numbers)
        self.calls = OrderedDict()
        self.marked = 0

    def on_request(self, context):
        request = context.request
        if request.to_tag is None and is_emergency(request, self.numbers):
            context.vars[EMERGENCY] = True
            self.marked += 1
            if request.method == "INVITE":
                self.calls[request.call_id] = True
                if len(self.calls) > REMEMBERED:
                    self.calls.popitem(last=False)
        return None

    def mark_cdr(self, record):
        """An on_end hook of the dialog registry: the CDR of an emergency call says so."""
        call_id = record.get("call_id")
        if call_id in self.calls:
            record["emergency"] = True
            self.calls.pop(call_id, None)


class EmergencyRouting(Stage):
    """The first target stage: emergency calls go to their set, before any rule."""

    name = "emergency-routing"
    points = (TARGETS,)

    def __init__(self, dset):
        self.set = dset

    def targets(self, context):
        if not context.vars.get(EMERGENCY):
            return None
        return self.set.targets(context)
