# -*- test-case-name: tests.test_routing_rules -*-
"""
Routing rules: an ordered list, first match wins, each a set of matches on
the request (method, Request-URI user and domain, From, source address,
arrival address, headers, a prefix table) and one action (forward to a
destination set, to a URI or next hop, to the location service; reject;
redirect).  A target selection stage placed before the location service;
when no rule matches, the node routes as it would without rules (the
implicit last rule).  The configuration section [routing] is declared here.
"""

import ipaddress
import re

from sipcluster.proxy.forwarding import Target
from sipcluster.proxy.pipeline import TARGETS, Respond, Stage
from sipcluster.routing import destinations
from sipcluster.routing.hook import load_hook
from sipcluster.routing.prefix import PrefixTable, dialled_digits, read_prefix_file
from sipcluster.schema import ConfigSection, CrossKeyError, Key, NestedKeyError, show
from sipcluster.sip.errors import SIPError
from sipcluster.sip.uri import SipURI, TelURI, parse_uri

MATCH_KEYS = ("methods", "user", "user_prefix", "user_regex", "domain", "from_user",
              "from_domain", "source", "transport", "listen", "header", "header_regex",
              "resource_priority", "prefixes", "prefix_file")
ACTION_KEYS = ("set", "uri", "next_hop", "location", "reject", "redirect")
OTHER_KEYS = ("name", "reason", "contacts", "status", "authenticate", "allow", "deny")


def _strings(value, path, what):
    """A string or a list of strings, as a list."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise NestedKeyError(path, "expected %s (a string or a list of them), got %s" % (
        what, show(value)))


def _uri(value, path):
    try:
        uri = parse_uri(value) if isinstance(value, str) else None
    except SIPError:
        uri = None
    if not isinstance(uri, SipURI):
        raise NestedKeyError(path, "expected a sip: or sips: URI, got %s" % show(value))
    return uri


def user_of(uri):
    """The user part a rule matches: a SIP URI's user, a tel URI's number."""
    if isinstance(uri, SipURI):
        return uri.user or ""
    if isinstance(uri, TelURI):
        return uri.number
    return ""


def _arrival(source):
    """(transport, host, port) of the local address a request arrived on."""
    local = source.local
    host = getattr(local, "host", None)
    port = getattr(local, "port", None)
    if host is None:
        transport = getattr(local, "transport", None)
        address = transport.getHost() if transport is not None else None
        host, port = getattr(address, "host", None), getattr(address, "port", None)
    return source.transport, host, port


class Rule:
    """
    One rule: C{matches(context)} is every configured match at once (a
    rule without matches matches everything); C{act(context, router)}
    returns targets or raises L{Respond}.

    @ivar name: for logs ("rule 3" when the file gave none).
    @ivar action: one of L{ACTION_KEYS}, or "prefix" (the set a prefix
        table names).
    """

    # Networks allowed to use the rule (None: any) and denied it (None:
    # none): a matching request from elsewhere is refused with 403.
    allow = deny = None

    def __init__(self, name, tests, action, argument, prefixes=None, table=None):
        self.table = table if table is not None else {}
        # Whether requests this rule matches need our credentials (True,
        # False), or None: the authentication stage's default decides.
        self.authenticate = self.table.get("authenticate")
        self.name = name
        self.tests = tests
        self.action = action
        self.argument = argument
        self.prefixes = prefixes

    def matches(self, context):
        for test in self.tests:
            if not test(context):
                return False
        return True

    def __repr__(self):
        return "<Rule %s: %s>" % (self.name, self.action)


def parse_rule(index, table):
    """
    The L{Rule} a [[routing.rules]] table describes.

    @raise NestedKeyError: naming the rule ("[2].user_regex") and what was
        expected.
    """
    base = "[%d]" % index

    def path(key):
        return "%s.%s" % (base, key)

    for key in table:
        if key not in MATCH_KEYS + ACTION_KEYS + OTHER_KEYS:
            raise NestedKeyError(path(key), "unknown key (matches: %s; actions: %s)" % (
                ", ".join(MATCH_KEYS), ", ".join(ACTION_KEYS)))
    if "authenticate" in table and not isinstance(table["authenticate"], bool):
        raise NestedKeyError(path("authenticate"), "expected true or false, got %s" % show(
            table["authenticate"]))
    tests = []
    get = table.get
    if "methods" in table:
        methods = frozenset(m.upper() for m in _strings(table["methods"], path("methods"), "methods"))
        tests.append(lambda c: c.request.method in methods)
    if "user" in table:
        users = frozenset(_strings(table["user"], path("user"), "users"))
        tests.append(lambda c: user_of(c.request.uri) in users)
    if "user_prefix" in table:
        starts = tuple(_strings(table["user_prefix"], path("user_prefix"), "prefixes"))
        tests.append(lambda c: user_of(c.request.uri).startswith(starts))
    if "user_regex" in table:
        pattern = _regex(table["user_regex"], path("user_regex"))
        tests.append(lambda c: pattern.search(user_of(c.request.uri)) is not None)
    if "domain" in table:
        domains = frozenset(d.lower() for d in _strings(table["domain"], path("domain"), "domains"))
        tests.append(lambda c: isinstance(c.request.uri, SipURI)
                     and c.request.uri.host.lower() in domains)
    if "from_user" in table:
        users = frozenset(_strings(table["from_user"], path("from_user"), "users"))
        tests.append(lambda c: user_of(c.request.from_.uri) in users)
    if "from_domain" in table:
        domains = _strings(table["from_domain"], path("from_domain"), "domains")
        domains = frozenset(d.lower() for d in domains)
        tests.append(lambda c: isinstance(c.request.from_.uri, SipURI)
                     and c.request.from_.uri.host.lower() in domains)
    def networks_of(key):
        networks = []
        for text in _strings(table[key], path(key), "networks"):
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise NestedKeyError(path(key), "expected a network like "
                                     '"10.0.0.0/8", got %s' % show(text)) from None
        return networks

    if "source" in table:
        source_networks = networks_of("source")
        tests.append(lambda c: _in_networks(c.source.host, source_networks))
    # The rule's own access list: who may use what it routes to.
    table_allow = networks_of("allow") if "allow" in table else None
    table_deny = networks_of("deny") if "deny" in table else None
    if "transport" in table:
        transports = _strings(table["transport"], path("transport"), "transports")
        transports = frozenset(t.lower() for t in transports)
        if not transports <= {"udp", "tcp", "tls", "ws", "wss"}:
            raise NestedKeyError(path("transport"), "expected udp, tcp, tls, ws or wss, got %s"
                                 % show(table["transport"]))
        tests.append(lambda c: c.source.transport in transports)
    if "listen" in table:
        from sipcluster.schema import ListenAddress
        listens = set()
        for text in _strings(table["listen"], path("listen"), "listen addresses"):
            try:
                address = ListenAddress.parse(text)
            except ValueError as e:
                raise NestedKeyError(path("listen"), str(e)) from None
            listens.add((address.transport, address.host, address.port))
        tests.append(lambda c: _arrival(c.source) in listens)
    if "header_regex" in table and "header" not in table:
        raise NestedKeyError(path("header_regex"), "needs header (the header it matches)")
    if "header" in table:
        name = table["header"]
        if not isinstance(name, str) or not name:
            raise NestedKeyError(path("header"), "expected a header name, got %s" % show(name))
        if "header_regex" in table:
            pattern = _regex(table["header_regex"], path("header_regex"))
            tests.append(lambda c: any(pattern.search(v) for v in c.request.values(name)))
        else:
            tests.append(lambda c: c.request.has(name))
    if "resource_priority" in table:
        # RFC 4412 3.1: namespace.priority values, compared
        # case-insensitively; any one listed matches.
        wanted = frozenset(v.lower() for v in _strings(
            table["resource_priority"], path("resource_priority"), "namespace.priority values"))
        tests.append(lambda c: any(v.strip().lower() in wanted
                                   for value in c.request.values("resource-priority")
                                   for v in value.split(",")))

    prefixes = None
    if "prefixes" in table or "prefix_file" in table:
        prefixes = PrefixTable()
        inline = get("prefixes", {})
        if not isinstance(inline, dict) or not all(
                isinstance(k, str) and dialled_digits(k).isdigit() and isinstance(v, str)
                for k, v in inline.items()):
            raise NestedKeyError(path("prefixes"), 'expected a table of "digits" = "set", '
                                 "got %s" % show(inline))
        for prefix, value in inline.items():
            prefixes.add(dialled_digits(prefix), value)
        if "prefix_file" in table:
            if not isinstance(table["prefix_file"], str):
                raise NestedKeyError(path("prefix_file"), "expected a file name")
            try:
                rows = read_prefix_file(table["prefix_file"])
            except ValueError as e:
                raise NestedKeyError(path("prefix_file"), str(e)) from None
            for prefix, value in rows:
                prefixes.add(prefix, value)

    actions = [key for key in ACTION_KEYS if key in table]
    if prefixes is not None:
        # Last, after the cheaper matches: a number no prefix covers does
        # not match, and the next rule is tried.
        tests.append(lambda c: _prefix_found(c, prefixes))
        if actions:
            raise NestedKeyError(path(actions[0]), "a prefix table names the set itself: "
                                 "give no other action")
        return _with_access(Rule(get("name", "rule %d" % index), tests, "prefix", None, prefixes,
                                 table), table_allow, table_deny)
    if len(actions) != 1:
        raise NestedKeyError(base, "expected exactly one action of %s, got %s" % (
            ", ".join(ACTION_KEYS), ", ".join(actions) or "none"))
    action = actions[0]
    value = table[action]
    if action == "set":
        if not isinstance(value, str):
            raise NestedKeyError(path("set"), "expected the name of a set, got %s" % show(value))
        argument = value
    elif action in ("uri", "next_hop"):
        argument = _uri(value, path(action))
    elif action == "location":
        if value is not True:
            raise NestedKeyError(path("location"), "expected true")
        argument = None
    elif action == "reject":
        if not isinstance(value, int) or isinstance(value, bool) or not 400 <= value <= 699:
            raise NestedKeyError(path("reject"), "expected a status from 400 to 699, got %s"
                                 % show(value))
        reason = get("reason")
        if reason is not None and not isinstance(reason, str):
            raise NestedKeyError(path("reason"), "expected a string")
        argument = (value, reason)
    else:  # redirect
        contacts = [_uri(text, path("redirect")) for text in
                    _strings(value, path("redirect"), "contact URIs")]
        status = get("status", 302)
        if not isinstance(status, int) or isinstance(status, bool) or not 300 <= status <= 399:
            raise NestedKeyError(path("status"), "expected a status from 300 to 399, got %s"
                                 % show(status))
        argument = (status, contacts)
    return _with_access(Rule(get("name", "rule %d" % index), tests, action, argument, table=table),
                        table_allow, table_deny)


def _with_access(rule, allow, deny):
    rule.allow, rule.deny = allow, deny
    return rule


def _regex(value, path):
    if not isinstance(value, str):
        raise NestedKeyError(path, "expected a regular expression, got %s" % show(value))
    try:
        return re.compile(value)
    except re.error as e:
        raise NestedKeyError(path, "expected a regular expression, got %s (%s)" % (
            show(value), e)) from None


def _prefix_found(context, prefixes):
    found = prefixes.longest(dialled_digits(user_of(context.request.uri)))
    context.vars["routing.prefix"] = found
    return found is not None


def _in_networks(host, networks):
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


def _hook_name(text):
    load_hook(text)
    return text


def parse_rules(tables):
    return [parse_rule(i, table) for i, table in enumerate(tables)]


def check_routing(values, sections):
    """Every set a rule or a prefix table names exists (routing.sets)."""
    sets = values["sets"]
    for i, rule in enumerate(values["rules"]):
        if rule.action == "set" and rule.argument not in sets:
            raise CrossKeyError("routing.rules[%d].set" % i, "expected the name of a set "
                                "of routing.sets, got %s" % show(rule.argument))
        if rule.action == "prefix":
            for table in rule.prefixes.by_length.values():
                for prefix, name in table.items():
                    if name not in sets:
                        raise CrossKeyError(
                            "routing.rules[%d].prefixes" % i, "prefix %s names set %s, which "
                            "is not in routing.sets" % (prefix, show(name)))
    if values["emergency_set"] and values["emergency_set"] not in sets:
        raise CrossKeyError("routing.emergency_set", "expected the name of a set of "
                            "routing.sets, got %s" % show(values["emergency_set"]))
    if values["emergency_numbers"] and not values["emergency_set"]:
        raise CrossKeyError("routing.emergency_numbers", "needs routing.emergency_set")
    if sets and sections["node"]["mode"] != "stateful":
        for name, dset in sets.items():
            if dset.probe_interval:
                raise CrossKeyError("routing.sets.%s.probe_interval_s" % name,
                                    'needs node.mode = "stateful" (probes are transactions)')


CONFIG = ConfigSection("routing", {
    "rules": Key(list, [], "Routing rules, an array of tables ([[routing.rules]]) tried in "
                 "order, first match wins; no match routes as without rules. See \"Routing\".",
                 check=parse_rules, item=dict),
    "sets": Key(dict, {}, "Destination sets, one table per set ([routing.sets.NAME]) with its "
                "destinations, algorithm, failover and probes. See \"Routing\".",
                check=destinations.parse_sets),
    "hook": Key(str, "", 'Programmable routing: "package.module:function" called with a read-only '
                "view of the request and the candidate targets after the rules; it returns "
                "targets, a set name, a rejection or None, maybe as a Deferred. Empty: none.",
                check=_hook_name),
    "emergency_set": Key(str, "", "Destination set of emergency calls (RFC 5031 urn:service:sos, "
                         "emergency_numbers): routed there before any rule, never refused by call "
                         "admission or draining, marked in the CDR. Empty: no emergency routing."),
    "emergency_numbers": Key(list, [], "Dialled numbers that are emergency calls (with "
                             "emergency_set), e.g. [\"112\", \"911\"]."),
    "hook_timeout_s": Key(float, 1.0, "Longest a routing hook's Deferred may take; then 500.",
                          minimum=0.01, maximum=60),
}, check=check_routing)


class RoutingRules(Stage):
    """
    The rules as a target stage.  In-dialog requests and requests with a
    route set are not the rules' business: they follow the Route (RFC
    3261 16.4, 16.6 step 6) or the Request-URI their dialog gave them.

    @ivar rules: the L{Rule}s, in order.
    @ivar sets: name -> L{DestinationSet}.
    @ivar location: the location stage, for the "location" action.
    @ivar hook: a L{RoutingHook} or None.
    """

    name = "routing"
    points = (TARGETS,)

    def __init__(self, rules, sets, location=None, hook=None):
        self.rules = rules
        self.sets = sets
        self.location = location
        # A RoutingHook, asked after the rules (sipcluster.routing.hook).
        self.hook = hook
        self.matched = {}

    def targets(self, context):
        request = context.request
        if request.to_tag is not None or request.has("route"):
            return None
        result = None
        for rule in self.rules:
            if rule.matches(context):
                result = self.act(rule, context)
                break
        if self.hook is not None:
            return self.hook(context, result)
        return result

    def decide(self, context):
        """The first matching rule, or None (the authentication seam, benchmarks, tests)."""
        for rule in self.rules:
            if rule.matches(context):
                return rule
        return None

    def act(self, rule, context):
        self.matched[rule.name] = self.matched.get(rule.name, 0) + 1
        if rule.allow is not None or rule.deny is not None:
            host = context.source.host
            if (rule.allow is not None and not _in_networks(host, rule.allow)) or \
                    (rule.deny is not None and _in_networks(host, rule.deny)):
                raise Respond(403, "Forbidden (%s)" % rule.name)
        action = rule.action
        request = context.request
        if action == "prefix":
            return self.sets[context.vars["routing.prefix"][1]].targets(context)
        if action == "set":
            return self.sets[rule.argument].targets(context)
        if action == "uri":
            return [Target(rule.argument)]
        if action == "next_hop":
            return [Target(request.uri, next_hop=rule.argument)]
        if action == "location":
            targets = self.location.targets(context) if self.location is not None else None
            if targets is None:
                raise Respond(404)
            return targets
        if action == "reject":
            status, reason = rule.argument
            raise Respond(status, reason)
        status, contacts = rule.argument
        raise Respond(status, None, [("Contact", "<%s>" % uri) for uri in contacts])
