"""
RFC 3261 section 16 rules that only show on the wire, driven in-process
with raw datagrams (tests/test_proxy.py's Node): what a mutation of the
proxy used to get past every other test.
"""

from tests.test_proxy import FOREIGN, UAC, Node, in_dialog, invite, reply


def test_in_dialog_reinvite_gets_no_record_route():
    # RFC 3261 16.6 step 4 / 12.2: the route set is fixed by the request
    # that created the dialog; a re-INVITE (To tag set) is not
    # record-routed again, while the initial INVITE is.
    node = Node()
    node.send(invite())
    initial, = node.to(FOREIGN, node.out())
    assert [str(r.uri) for r in initial.record_routes] == ["sip:127.0.0.1:5060;lr"]
    node.send(in_dialog("sip:bob@127.0.0.1:5070", "INVITE", "<sip:127.0.0.1:5060;lr>")
              .replace(b"z9hG4bKuac1", b"z9hG4bKuac2").replace(b"CSeq: 1 ", b"CSeq: 2 "))
    reinvite, = node.to(FOREIGN, node.out())
    assert reinvite.method == "INVITE" and reinvite.to_tag == "b1"
    assert not reinvite.has("record-route")


def test_provisional_restarts_timer_c():
    # RFC 3261 16.7 step 2: a provisional other than 100 resets Timer C.
    # A 180 at t=100 with Timer C at 180 s moves the deadline to t=280.
    node = Node(timer_c=180)
    node.send(invite())
    fwd, = node.to(FOREIGN, node.out())
    node.send(reply(fwd, 100), FOREIGN)  # stops Timer A/B; does not reset C
    node.out()
    node.h.advance(100, step=1)
    node.send(reply(fwd, 180), FOREIGN)
    assert [m.status for m in node.to(UAC, node.out())] == [180]
    node.h.advance(179.8, step=1)  # t = 279.8, past the first deadline
    sent = node.out()
    assert node.to(FOREIGN, sent) == [] and node.to(UAC, sent) == []
    node.h.advance(0.4)  # t = 280.2
    cancel, = node.to(FOREIGN, node.out())
    assert cancel.method == "CANCEL" and cancel.top_via.branch == fwd.top_via.branch
    node.send(reply(cancel, 200), FOREIGN)
    node.send(reply(fwd, 487), FOREIGN)
    assert [m.status for m in node.to(UAC, node.out())] == [487]


def test_timer_c_without_any_provisional_reset_fires_on_time():
    # The other side of the rule: a 100 alone does not reset Timer C, so a
    # branch that only said Trying is cancelled at t=180 (16.8).
    node = Node(timer_c=180)
    node.send(invite())
    fwd, = node.to(FOREIGN, node.out())
    node.send(reply(fwd, 100), FOREIGN)
    node.out()
    node.h.advance(100, step=1)
    node.send(reply(fwd, 100), FOREIGN)
    node.h.advance(79.8, step=1)
    assert node.to(FOREIGN, node.out()) == []
    node.h.advance(0.4)
    cancel, = node.to(FOREIGN, node.out())
    assert cancel.method == "CANCEL" and cancel.top_via.branch == fwd.top_via.branch


def test_timer_c_on_a_branch_that_never_answered_is_408_without_cancel():
    # RFC 3261 16.8: with no provisional response there is nothing to
    # cancel; the branch is taken as a 408 and no CANCEL is sent.
    node = Node(timer_c=5)  # shorter than Timer B (32 s): Timer C decides
    node.send(invite())
    node.out()
    node.h.advance(4.9)
    assert [m.status for m in node.to(UAC, node.out()) if m.status >= 200] == []
    node.h.advance(0.2)
    sent = node.out()
    assert [m.status for m in node.to(UAC, sent) if m.status >= 200] == [408]
    assert [m.method for m in node.to(FOREIGN, sent)] == []

