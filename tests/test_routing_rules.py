"""
Routing rules (sipcluster.routing.rules) and prefix tables
(sipcluster.routing.prefix): the [routing] section validated with one line
naming file and key, every match and action, first match wins, the
implicit last rule, on a whole node in memory.
"""

import pytest

from sipcluster import config
from sipcluster.config import ConfigError
from sipcluster.routing.prefix import PrefixTable, dialled_digits, read_prefix_file
from tests.test_proxy import FOREIGN, UAC, Node, invite, reply

SET = {"lb": {"destinations": ["sip:127.0.0.51:5060", "sip:127.0.0.52:5060"]}}


def routed(rules, sets=None, **kwargs):
    return Node(settings={"routing": {"rules": rules, "sets": sets or {}}}, **kwargs)


def final_to_caller(node, out=None):
    out = node.out() if out is None else out
    return [m for m in node.to(UAC, out) if m.status >= 200]


def requests_to(node, addr, out):
    return [m for m in node.to(addr, out) if hasattr(m, "method")]


# -- configuration --------------------------------------------------------------

def write(tmp_path, text):
    path = tmp_path / "node.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text,fragment", [
    ('[[routing.rules]]\nuser_regex = "(("\nreject = 403\n',
     "routing.rules[0].user_regex: expected a regular expression"),
    ('[[routing.rules]]\nreject = 403\n[[routing.rules]]\nmethod = "INVITE"\nreject = 403\n',
     "routing.rules[1].method: unknown key"),
    ('[[routing.rules]]\nreject = 200\n', "routing.rules[0].reject: expected a status from 400"),
    ('[[routing.rules]]\nuser = "a"\n', "routing.rules[0]: expected exactly one action"),
    ('[[routing.rules]]\nreject = 403\nuri = "sip:a@b"\n', "expected exactly one action"),
    ('[[routing.rules]]\nsource = "10.0.0.0/33"\nreject = 403\n', "routing.rules[0].source: expected a network"),
    ('[[routing.rules]]\nuri = "mailto:a@b"\n', "routing.rules[0].uri: expected a sip: or sips: URI"),
    ('[[routing.rules]]\nset = "nope"\n', 'routing.rules[0].set: expected the name of a set of routing.sets, got "nope"'),
    ('[[routing.rules]]\nprefixes = {"44" = "uk"}\n', "routing.rules[0].prefixes: prefix 44 names set"),
    ('[[routing.rules]]\nprefix_file = "/nonexistent.csv"\n', "routing.rules[0].prefix_file: /nonexistent.csv: cannot read"),
    ('[[routing.rules]]\nlisten = "udp:1.2.3.4"\nreject = 403\n', "routing.rules[0].listen: expected"),
    ('[[routing.rules]]\nheader_regex = "x"\nreject = 403\n', "routing.rules[0].header_regex: needs header"),
    ('[routing]\nrules = ["x"]\n', "routing.rules: expected an array of tables"),
])
def test_rule_errors_name_file_and_key(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        config.load(path)
    message = str(e.value)
    assert message.startswith(path + ": ") and "\n" not in message
    assert fragment in message, message


def test_a_valid_rule_file_loads(tmp_path):
    prefixes = tmp_path / "prefixes.csv"
    prefixes.write_text("# prefix,set\n44,lb\n+1-212,lb\n\n")
    path = write(tmp_path, '''
[[routing.rules]]
methods = ["INVITE", "message"]
domain = "LB.test"
set = "lb"
[[routing.rules]]
prefix_file = "%s"
[routing.sets.lb]
destinations = ["sip:127.0.0.51:5060"]
''' % prefixes)
    cfg = config.load(path)
    first, second = cfg.routing.rules
    assert first.action == "set" and first.argument == "lb"
    assert second.action == "prefix" and second.prefixes.longest("12125550100") == ("1212", "lb")


# -- prefix tables ------------------------------------------------------------------

def test_longest_prefix_wins():
    table = PrefixTable([("4", "a"), ("44", "b"), ("4420", "c"), ("", "any")])
    assert table.longest("442071234567") == ("4420", "c")
    assert table.longest("441234") == ("44", "b")
    assert table.longest("49") == ("4", "a")
    assert table.longest("1") == ("", "any")
    assert len(table) == 4
    assert PrefixTable([("44", "b")]).longest("4") is None


def test_prefixes_of_one_length_share_a_table_and_a_prefix_given_again_is_replaced():
    table = PrefixTable([("44", "uk"), ("33", "fr"), ("4420", "london")])
    table.add("44", "united kingdom")
    assert table.longest("4412") == ("44", "united kingdom")
    assert table.longest("3312") == ("33", "fr")
    assert table.longest("442071") == ("4420", "london")
    assert len(table) == 3 and table.lengths == (4, 2)


def test_dialled_digits_drop_plus_and_visual_separators():
    assert dialled_digits("+44-20.7(123)") == "44207123"
    assert dialled_digits("4420;phone-context=x") == "4420"
    assert dialled_digits(None) == ""


def test_prefix_file_errors_name_the_line(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("44,uk\nabc,uk\n")
    with pytest.raises(ValueError) as e:
        read_prefix_file(str(path))
    assert "line 2" in str(e.value)


# -- matches and actions on a node ----------------------------------------------------

def test_next_hop_keeps_the_request_uri():
    node = routed([{"domain": "lb.test", "next_hop": "sip:127.0.0.1:5071"}])
    node.send(invite("sip:bob@lb.test"))
    (fwd,) = requests_to(node, ("127.0.0.1", 5071), node.out())
    assert str(fwd.uri) == "sip:bob@lb.test" and fwd.max_forwards == 69


def test_uri_rewrites_the_request_uri():
    node = routed([{"user": "bob", "uri": "sip:voicemail@127.0.0.1:5071"}])
    node.send(invite("sip:bob@lb.test"))
    (fwd,) = requests_to(node, ("127.0.0.1", 5071), node.out())
    assert str(fwd.uri) == "sip:voicemail@127.0.0.1:5071"


def test_reject_and_redirect_answer_the_request():
    node = routed([
        {"from_user": "mallory", "reject": 403, "reason": "Forbidden (rule)"},
        {"user_prefix": "0900", "redirect": ["sip:premium@127.0.0.1:5071"], "status": 301},
    ])
    node.send(invite().replace(b"sip:alice@", b"sip:mallory@"))
    (answer,) = final_to_caller(node)
    assert (answer.status, answer.reason) == (403, "Forbidden (rule)")
    node.send(invite("sip:0900123@lb.test", branch="z9hG4bKr2"))
    (answer,) = final_to_caller(node)
    assert answer.status == 301
    assert [str(c.uri) for c in answer.contacts] == ["sip:premium@127.0.0.1:5071"]


def test_first_match_wins_and_no_match_routes_as_before():
    node = routed([
        {"methods": ["MESSAGE"], "reject": 488},
        {"user_regex": "^b.b$", "reject": 480},
        {"user_regex": "^bob", "reject": 486},
    ])
    node.send(invite())  # bob: the second rule, not the third
    assert [m.status for m in final_to_caller(node)] == [480]
    node.send(invite("sip:carol@127.0.0.1:5070", branch="z9hG4bKr3"))
    # No rule: the Request-URI as written (the implicit last rule).
    assert requests_to(node, FOREIGN, node.out())


@pytest.mark.parametrize("rule,matches", [
    ({"source": ["127.0.0.0/8"]}, True),
    ({"source": "10.0.0.0/8"}, False),
    ({"transport": "udp"}, True),
    ({"transport": ["tcp"]}, False),
    ({"listen": "udp:127.0.0.1:5060"}, True),
    ({"listen": "tcp:127.0.0.1:5060"}, False),
    ({"header": "X-Gold"}, True),
    ({"header": "X-Silver"}, False),
    ({"header": "X-Gold", "header_regex": "^yes"}, True),
    ({"header": "X-Gold", "header_regex": "^no"}, False),
    ({"from_domain": "EXAMPLE.test"}, True),
    ({"from_domain": "other.test"}, False),
    ({"domain": "127.0.0.1"}, True),
    ({"user": ["alice", "bob"]}, True),
    ({"user": "carol"}, False),
    ({"resource_priority": "ets.0"}, True),
    ({"resource_priority": "wps.1"}, False),
    ({"methods": "invite", "user_prefix": ["b", "c"], "source": "127.0.0.1/32"}, True),
])
def test_each_match(rule, matches):
    node = routed([dict(rule, reject=499)])
    node.send(invite(extra="X-Gold: yes please\nResource-Priority: wps.3, ets.0\n"))
    statuses = [m.status for m in final_to_caller(node)]
    assert statuses == ([499] if matches else []), statuses


def test_prefix_rules_route_by_the_longest_prefix_and_pass_when_none(tmp_path):
    sets = {"uk": {"destinations": ["sip:127.0.0.1:5071"]},
            "london": {"destinations": ["sip:127.0.0.1:5072"]}}
    node = routed([{"prefixes": {"44": "uk", "4420": "london"}},
                   {"reject": 404, "reason": "No route"}], sets)
    node.send(invite("sip:+442071234567@gw.test"))
    assert requests_to(node, ("127.0.0.1", 5072), node.out())
    node.send(invite("sip:441234@gw.test", branch="z9hG4bKp2"))
    assert requests_to(node, ("127.0.0.1", 5071), node.out())
    node.send(invite("sip:331234@gw.test", branch="z9hG4bKp3"))
    # No prefix: the rule does not match, the next one does.
    assert [(m.status, m.reason) for m in final_to_caller(node)] == [(404, "No route")]


def test_in_dialog_requests_and_route_sets_bypass_the_rules():
    node = routed([{"reject": 403}])
    bye = invite("sip:bob@127.0.0.1:5070", method="BYE").replace(
        b"To: Bob <sip:bob@example.test>", b"To: Bob <sip:bob@example.test>;tag=b1")
    node.send(bye)
    assert requests_to(node, FOREIGN, node.out())
    node.send(invite(branch="z9hG4bKroute", extra="Route: <sip:127.0.0.1:5070;lr>\n"))
    assert requests_to(node, FOREIGN, node.out())


def test_the_location_action_delivers_to_registered_users():
    node = routed([{"domain": "core.test", "location": True}])
    # core.test is not a served domain: only the rule sends it to location.
    node.bind("bob", (("127.0.0.1", 5071), 1.0))
    node.send(invite("sip:bob@example.test"))
    assert requests_to(node, ("127.0.0.1", 5071), node.out())
    node.send(invite("sip:nobody@core.test", branch="z9hG4bKl2"))
    assert [m.status for m in final_to_caller(node)] == [404]


def test_the_rules_stage_sits_before_location():
    node = routed([{"reject": 403}], SET)
    names = [s.name for s in node.pipeline.targets]
    assert names == ["registrar", "local", "routing", "location", "request-uri"]


def test_the_stateless_mode_routes_by_rules_too():
    node = routed([{"domain": "lb.test", "next_hop": "sip:127.0.0.1:5071"}], stateless=True)
    node.send(invite("sip:bob@lb.test"))
    (fwd,) = requests_to(node, ("127.0.0.1", 5071), node.out())
    node.send(reply(fwd, 200), ("127.0.0.1", 5071))
    assert [m.status for m in final_to_caller(node)] == [200]


def tcp_request(node, data, peer=("127.0.0.1", 40999), local=("127.0.0.1", 5060)):
    """Deliver C{data} over a TCP connection accepted by the node; what it writes back."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport
    factory = [f for port, f, _, interface in node.h.reactor.tcpServers
               if (interface, port) == local][0]
    transport = StringTransport(hostAddress=IPv4Address("TCP", *local),
                                peerAddress=IPv4Address("TCP", *peer))
    protocol = factory.buildProtocol(IPv4Address("TCP", *peer))
    protocol.makeConnection(transport)
    protocol.dataReceived(data)
    return transport.value()


@pytest.mark.parametrize("listen,refused", [
    ("tcp:127.0.0.1:5060", True), ("udp:127.0.0.1:5060", False), ("tcp:127.0.0.1:5062", False)])
def test_a_listen_match_knows_the_tcp_address_a_request_arrived_on(listen, refused):
    node = routed([{"listen": listen, "reject": 499}])
    answer = tcp_request(node, invite().replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
    assert (b"SIP/2.0 499 " in answer) == refused


def test_a_listen_match_knows_which_udp_socket_a_request_came_to():
    node = Node(settings={"sip": {"listen": ["udp:127.0.0.1:5060", "udp:127.0.0.1:5062",
                                             "tcp:127.0.0.1:5060"]},
                          "routing": {"rules": [{"listen": "udp:127.0.0.1:5062", "reject": 499}],
                                      "sets": {}}})
    node.h.receive(invite(), UAC, to=("127.0.0.1", 5062))
    assert [m.status for m in final_to_caller(node)] == [499]
    node.h.receive(invite(branch="z9hG4bKuac2"), UAC, to=("127.0.0.1", 5060))
    assert final_to_caller(node) == []


# Each configuration error, whole: the operator reads exactly this line (after the file name).
RULE_ERRORS = [
    ('[[routing.rules]]\nuser_regex = "(("\nreject = 403\n',
     'routing.rules[0].user_regex: expected a regular expression, got "((" (missing ), unterminated subpattern at position 1)'),
    ('[[routing.rules]]\nreject = 200\n',
     'routing.rules[0].reject: expected a status from 400 to 699, got 200'),
    ('[[routing.rules]]\nreject = 700\n',
     'routing.rules[0].reject: expected a status from 400 to 699, got 700'),
    ('[[routing.rules]]\nreject = "x"\n',
     'routing.rules[0].reject: expected a status from 400 to 699, got "x"'),
    ('[[routing.rules]]\nuser = "a"\n',
     'routing.rules[0]: expected exactly one action of set, uri, next_hop, location, reject, redirect, got none'),
    ('[[routing.rules]]\nreject = 403\nuri = "sip:a@b"\n',
     'routing.rules[0]: expected exactly one action of set, uri, next_hop, location, reject, redirect, got uri, reject'),
    ('[[routing.rules]]\nsource = "10.0.0.0/33"\nreject = 403\n',
     'routing.rules[0].source: expected a network like "10.0.0.0/8", got "10.0.0.0/33"'),
    ('[[routing.rules]]\nuri = "mailto:a@b"\n',
     'routing.rules[0].uri: expected a sip: or sips: URI, got "mailto:a@b"'),
    ('[[routing.rules]]\nset = "nope"\n',
     'routing.rules[0].set: expected the name of a set of routing.sets, got "nope"'),
    ('[[routing.rules]]\nprefixes = {"44" = "uk"}\n',
     'routing.rules[0].prefixes: prefix 44 names set "uk", which is not in routing.sets'),
    ('[[routing.rules]]\nlisten = "udp:1.2.3.4"\nreject = 403\n',
     'routing.rules[0].listen: expected "transport:host:port", e.g. "udp:127.0.0.1:5060"'),
    ('[[routing.rules]]\nheader_regex = "x"\nreject = 403\n',
     'routing.rules[0].header_regex: needs header (the header it matches)'),
    ('[routing]\nrules = ["x"]\n',
     "routing.rules: expected an array of tables, got ['x']"),
    ('[[routing.rules]]\nmethods = 3\nreject = 403\n',
     'routing.rules[0].methods: expected methods (a string or a list of them), got 3'),
    ('[[routing.rules]]\nuser = ["a", 3]\nreject = 403\n',
     "routing.rules[0].user: expected users (a string or a list of them), got ['a', 3]"),
    ('[[routing.rules]]\nauthenticate = "yes"\nreject = 403\n',
     'routing.rules[0].authenticate: expected true or false, got "yes"'),
    ('[[routing.rules]]\ntransport = "sctp"\nreject = 403\n',
     'routing.rules[0].transport: expected udp, tcp, tls, ws or wss, got "sctp"'),
    ('[[routing.rules]]\nuri = 5\n',
     'routing.rules[0].uri: expected a sip: or sips: URI, got 5'),
    ('[[routing.rules]]\nuri = "sip:bob@"\n',
     'routing.rules[0].uri: expected a sip: or sips: URI, got "sip:bob@"'),
    ('[[routing.rules]]\nuser_regex = 5\nreject = 403\n',
     'routing.rules[0].user_regex: expected a regular expression, got 5'),
    ('[[routing.rules]]\nreject = 403\nreason = 5\n',
     'routing.rules[0].reason: expected a string'),
    ('[[routing.rules]]\nlocation = 1\n',
     'routing.rules[0].location: expected true'),
    ('[[routing.rules]]\nreject = 403\nallow = "10.0.0.0/33"\n',
     'routing.rules[0].allow: expected a network like "10.0.0.0/8", got "10.0.0.0/33"'),
    ('[[routing.rules]]\nreject = 403\ndeny = ["10.0.0.0/8", 5]\n',
     "routing.rules[0].deny: expected networks (a string or a list of them), got ['10.0.0.0/8', 5]"),
    ('[[routing.rules]]\nredirect = ["mailto:x"]\n',
     'routing.rules[0].redirect: expected a sip: or sips: URI, got "mailto:x"'),
    ('[[routing.rules]]\nheader = 5\nreject = 403\n',
     'routing.rules[0].header: expected a header name, got 5'),
    ('[[routing.rules]]\nheader = "X-A"\nheader_regex = "(("\nreject = 403\n',
     'routing.rules[0].header_regex: expected a regular expression, got "((" (missing ), unterminated subpattern at position 1)'),
    ('[[routing.rules]]\nresource_priority = 5\nreject = 403\n',
     'routing.rules[0].resource_priority: expected namespace.priority values (a string or a list of them), got 5'),
    ('[[routing.rules]]\nprefixes = 5\n',
     'routing.rules[0].prefixes: expected a table of "digits" = "set", got 5'),
    ('[[routing.rules]]\nprefixes = {"4x" = "uk"}\n',
     'routing.rules[0].prefixes: expected a table of "digits" = "set", got {\'4x\': \'uk\'}'),
    ('[[routing.rules]]\nfrom_domain = 5\nreject = 403\n',
     'routing.rules[0].from_domain: expected domains (a string or a list of them), got 5'),
    ('[[routing.rules]]\ndomain = [5]\nreject = 403\n',
     'routing.rules[0].domain: expected domains (a string or a list of them), got [5]'),
    ('[[routing.rules]]\nuser_prefix = 5\nreject = 403\n',
     'routing.rules[0].user_prefix: expected prefixes (a string or a list of them), got 5'),
    ('[[routing.rules]]\nfrom_user = 3\nreject = 403\n',
     'routing.rules[0].from_user: expected users (a string or a list of them), got 3'),
    ('[[routing.rules]]\nnext_hop = "tel:+1"\n',
     'routing.rules[0].next_hop: expected a sip: or sips: URI, got "tel:+1"'),
    ('[[routing.rules]]\nredirect = []\n',
     'routing.rules[0].redirect: expected contact URIs (a string or a list of them), got []'),
    ('[[routing.rules]]\nredirect = "sip:a@b"\nstatus = 200\n',
     'routing.rules[0].status: expected a status from 300 to 399, got 200'),
    ('[[routing.rules]]\nreject = 403\nbogus = 1\n',
     'routing.rules[0].bogus: unknown key (matches: methods, user, user_prefix, user_regex, domain, from_user, from_domain, source, transport, listen, header, header_regex, resource_priority, prefixes, prefix_file; actions: set, uri, next_hop, location, reject, redirect)'),
    ('[routing]\nrules = 5\n',
     'routing.rules: expected an array of tables, got 5'),
    ('[[routing.rules]]\nset = 5\n',
     'routing.rules[0].set: expected the name of a set, got 5'),
    ('[[routing.rules]]\nprefix_file = 5\n',
     'routing.rules[0].prefix_file: expected a file name'),
]


@pytest.mark.parametrize("text,message", RULE_ERRORS)
def test_each_rule_error_in_full(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert str(e.value) == "%s: %s" % (path, message)


@pytest.mark.parametrize("acl,refused", [
    ({"allow": "10.0.0.0/8"}, True), ({"allow": ["127.0.0.0/8"]}, False),
    ({"deny": "127.0.0.1/32"}, True), ({"deny": ["10.0.0.0/8"]}, False),
])
def test_a_rule_with_only_an_allow_or_only_a_deny_list(acl, refused):
    node = routed([dict(acl, name="trunk", uri="sip:gw@127.0.0.1:5070")])
    node.send(invite())
    out = node.out()
    if refused:
        (final,) = final_to_caller(node, out)
        assert (final.status, final.reason) == (403, "Forbidden (trunk)")
        assert requests_to(node, FOREIGN, out) == []
    else:
        assert [str(m.uri) for m in requests_to(node, FOREIGN, out)] == ["sip:gw@127.0.0.1:5070"]


def test_a_location_rule_forwards_to_the_registered_contact_or_answers_404():
    from sipcluster.location.interface import Binding
    from sipcluster.sip.uri import parse_uri
    node = routed([{"user": ["bob", "carol"], "location": True}, {"reject": 499}])
    aor = "sip:bob@example.test"
    node.location.update(aor, [Binding(aor, parse_uri("sip:bob@127.0.0.1:5070"), 3600)])
    node.send(invite("sip:bob@example.test"))
    assert [str(m.uri) for m in requests_to(node, FOREIGN, node.out())] == ["sip:bob@127.0.0.1:5070"]
    node.send(invite("sip:carol@example.test", branch="z9hG4bKuac3").replace(b"call-1@", b"call-3@"))
    assert [m.status for m in final_to_caller(node)] == [404]


def test_dialled_digits_drop_separators_plus_and_parameters():
    assert dialled_digits("+44-20;phone-context=example.test;isub=7") == "4420"
    assert dialled_digits("+1 (212) 555.0100") == "12125550100"
    assert dialled_digits("") == "" and dialled_digits(None) == ""


def test_a_prefix_as_long_as_the_number_matches_it():
    table = PrefixTable([("44", "uk"), ("4420", "london"), ("", "world")])
    assert table.longest("44") == ("44", "uk")
    assert table.longest("4420") == ("4420", "london")
    assert table.longest("442") == ("44", "uk")
    assert table.longest("1") == ("", "world")
    assert len(table) == 3


def test_a_prefix_file_skips_comments_and_blank_lines_and_names_a_bad_line(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text("  # indented comment\r\n44,uk\r\n\r\n,\r\n+1-212 , nyc \r\n")
    assert read_prefix_file(str(good)) == [("44", "uk"), ("1212", "nyc")]
    for line, shown in (("44,", "44,"), ("4x,uk", "4x,uk"), ("44,uk,extra", "44,uk,extra")):
        bad = tmp_path / "bad.csv"
        bad.write_text("# set by prefix\n%s\n" % line)
        with pytest.raises(ValueError) as e:
            read_prefix_file(str(bad))
        assert str(e.value) == '%s line 2: expected "prefix,value" (digits, then a name), got %r' % (
            bad, shown)


MORE_RULE_ERRORS = [
    ('[[routing.rules]]\ntransport = 5\nreject = 403\n',
     'routing.rules[0].transport: expected transports (a string or a list of them), got 5'),
    ('[[routing.rules]]\nlisten = 5\nreject = 403\n',
     'routing.rules[0].listen: expected listen addresses (a string or a list of them), got 5'),
    ('[[routing.rules]]\nredirect = "sip:a@b"\nstatus = 400\n',
     'routing.rules[0].status: expected a status from 300 to 399, got 400'),
    ('[[routing.rules]]\nredirect = "sip:a@b"\nstatus = true\n',
     'routing.rules[0].status: expected a status from 300 to 399, got True'),
    ('[[routing.rules]]\nreject = true\n',
     'routing.rules[0].reject: expected a status from 400 to 699, got True'),
    ('[[routing.rules]]\nprefixes = {"44" = "gw"}\nreject = 403\n'
     '[routing.sets.gw]\ndestinations = ["sip:a"]\n',
     'routing.rules[0].reject: a prefix table names the set itself: give no other action'),
    ('[routing]\nemergency_set = "sos"\n',
     'routing.emergency_set: expected the name of a set of routing.sets, got "sos"'),
]


@pytest.mark.parametrize("text,message", MORE_RULE_ERRORS)
def test_more_rule_errors_in_full(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert str(e.value) == "%s: %s" % (path, message)


def test_values_at_the_bounds_are_accepted(tmp_path):
    path = write(tmp_path, '''
[[routing.rules]]
reject = 400
[[routing.rules]]
reject = 699
[[routing.rules]]
redirect = "sip:a@b"
status = 300
[[routing.rules]]
redirect = "sip:a@b"
status = 399
[[routing.rules]]
allow = "127.0.0.1/8"
transport = ["udp", "tcp", "tls", "ws", "wss"]
listen = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
reject = 403
''')
    rules = config.load(path).routing.rules
    assert [rule.argument[0] for rule in rules] == [400, 699, 300, 399, 403]


def test_a_redirect_is_302_unless_told_and_unnamed_rules_are_numbered():
    node = routed([{"user": "bob", "redirect": ["sip:bob@192.0.2.7", "sip:bob@192.0.2.8"]},
                   {"allow": "10.0.0.0/8", "reject": 499}])
    node.send(invite("sip:bob@example.test"))
    (final,) = final_to_caller(node)
    assert final.status == 302
    assert final.values("contact") == ["<sip:bob@192.0.2.7>", "<sip:bob@192.0.2.8>"]
    node.send(invite("sip:carol@example.test", branch="z9hG4bKuac2"))
    (final,) = final_to_caller(node)
    assert (final.status, final.reason) == (403, "Forbidden (rule 1)")


def test_an_unnamed_prefix_rule_is_numbered_in_its_refusal():
    node = routed([{"prefixes": {"44": "lb"}, "allow": "10.0.0.0/8"}], sets=SET)
    node.send(invite("sip:4420@example.test"))
    (final,) = final_to_caller(node)
    assert (final.status, final.reason) == (403, "Forbidden (rule 0)")


def test_a_domain_rule_does_not_match_a_tel_uri():
    node = routed([{"domain": "example.test", "reject": 499}])
    node.send(invite("tel:+4420"))
    assert [m.status for m in final_to_caller(node)] != [499]


def test_resource_priority_values_without_spaces():
    node = routed([{"resource_priority": "ets.0", "reject": 499}])
    node.send(invite(extra="Resource-Priority: wps.3,ets.0\n"))
    assert [m.status for m in final_to_caller(node)] == [499]


def test_a_domain_rule_does_not_match_another_domain():
    node = routed([{"domain": "other.test", "reject": 499}])
    node.send(invite())
    assert [m.status for m in final_to_caller(node)] != [499]


def test_a_named_prefix_rule_with_a_deny_list_refuses_by_its_name():
    node = routed([{"name": "uk-trunk", "prefixes": {"44": "lb"}, "deny": "127.0.0.0/8"}], sets=SET)
    node.send(invite("sip:4420@example.test"))
    (final,) = final_to_caller(node)
    assert (final.status, final.reason) == (403, "Forbidden (uk-trunk)")


def test_a_redirect_status_that_is_text_is_refused(tmp_path):
    path = write(tmp_path, '[[routing.rules]]\nredirect = "sip:a@b"\nstatus = "302"\n')
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert str(e.value) == '%s: routing.rules[0].status: expected a status from 300 to 399, got "302"' % path
