# -*- test-case-name: tests.test_config -*-
"""
Node configuration: one TOML file, validated against L{SCHEMA} at start-up.

Every key has a type, a default and a description (README.rst documents
them all; a test keeps the two in step).  A wrong key, type or value raises
L{ConfigError} whose message is one line naming the file, the key and what
was expected.  No file at all gives a working single node.
"""

import os
import socket
import tomllib


class ConfigError(Exception):
    """A configuration fault; C{str()} is the one line to show the operator."""


class ListenAddress:
    """One place a node listens: transport, host, port."""

    __slots__ = ("transport", "host", "port")
    TRANSPORTS = ("udp", "tcp")

    def __init__(self, transport, host, port):
        self.transport = transport
        self.host = host
        self.port = port

    @classmethod
    def parse(cls, text):
        """
        Parse C{transport:host:port}; IPv6 hosts in brackets
        (C{udp:[::1]:5060}).

        @raise ValueError: with what was expected.
        """
        transport, _, rest = text.partition(":")
        transport = transport.lower()
        if transport not in cls.TRANSPORTS:
            raise ValueError("expected transport udp or tcp before the first ':'")
        if rest.startswith("["):
            host, _, port = rest[1:].partition("]")
            port = port[1:] if port.startswith(":") else ""
        else:
            host, _, port = rest.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError('expected "transport:host:port", e.g. "udp:127.0.0.1:5060"')
        return cls(transport, host, int(port))

    def __str__(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s:%s:%d" % (self.transport, host, self.port)

    def __repr__(self):
        return "<ListenAddress %s>" % self

    def __eq__(self, other):
        return isinstance(other, ListenAddress) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


class Key:
    """
    The schema of one configuration key.

    @ivar kind: C{str}, C{int}, C{float}, C{bool}, or C{list} (of strings).
    @ivar check: optional callable converting/validating the value; raises
        ValueError with what was expected.
    """

    def __init__(self, kind, default, doc, choices=None, minimum=None,
                 maximum=None, check=None):
        self.kind = kind
        self.default = default
        self.doc = doc
        self.choices = choices
        self.minimum = minimum
        self.maximum = maximum
        self.check = check

    def expected(self):
        if self.choices:
            return "one of %s" % ", ".join('"%s"' % c for c in self.choices)
        what = {str: "a string", int: "an integer", float: "a number",
                bool: "true or false", list: "a list of strings"}[self.kind]
        if self.minimum is not None and self.maximum is not None:
            what += " from %s to %s" % (self.minimum, self.maximum)
        elif self.minimum is not None:
            what += " of at least %s" % self.minimum
        return what

    def convert(self, value):
        """Validate C{value}; return it converted, or raise ValueError."""
        kind = self.kind
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif kind is list:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ValueError("expected %s, got %s" % (self.expected(), _show(value)))
        if self.choices and value not in self.choices:
            raise ValueError("expected %s, got %s" % (self.expected(), _show(value)))
        if self.minimum is not None and value < self.minimum or \
                self.maximum is not None and value > self.maximum:
            raise ValueError("expected %s, got %s" % (self.expected(), _show(value)))
        if self.check is not None:
            value = self.check(value)
        return value


def _show(value):
    text = repr(value) if not isinstance(value, str) else '"%s"' % value
    return text if len(text) < 60 else text[:57] + "..."


def _listen_list(values):
    if not values:
        raise ValueError("expected at least one listen address")
    out = []
    for i, text in enumerate(values):
        try:
            out.append(ListenAddress.parse(text))
        except ValueError as e:
            raise ValueError("item %d (%s): %s" % (i, _show(text), e)) from None
    return out


def parse_endpoint(endpoint):
    """(host, port) of an etcd endpoint written http://host:port or host:port."""
    text = endpoint.split("://", 1)[-1].rstrip("/")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected http://host:port, got %s" % _show(endpoint))
    return host.strip("[]"), int(port)


def split_endpoints(text):
    """The endpoints of a comma-separated list (--etcd a,b,c)."""
    return [e.strip() for e in text.split(",") if e.strip()]


def _endpoint_list(values):
    if not values:
        raise ValueError("expected at least one etcd endpoint")
    for text in values:
        parse_endpoint(text)
    return list(values)


def _domain_list(values):
    return [v.lower() for v in values]


SCHEMA = {
    "node": {
        "id": Key(str, "", "Node identifier, unique in the cluster; empty means the host name."),
        "mode": Key(str, "stateful", "Proxy mode: stateful (transactions, forking, CANCEL) or stateless (RFC 3261 16.11).",
                    choices=("stateful", "stateless")),
        "workers": Key(int, 1, "Worker processes sharing the UDP port through SO_REUSEPORT.", minimum=1, maximum=64),
    },
    "sip": {
        "listen": Key(list, ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"],
                      'Addresses to listen on, each "transport:host:port" (udp or tcp; IPv6 in brackets).',
                      check=_listen_list),
        "advertise": Key(str, "", "host[:port] written into Via and Record-Route instead of the listen address (behind NAT or a floating address)."),
        "domains": Key(list, ["localhost", "127.0.0.1"], "Domains this node is responsible for: requests for them go to the location service.",
                       check=_domain_list),
        "record_route": Key(bool, True, "Insert Record-Route so in-dialog requests pass through the proxy."),
        "max_message_size": Key(int, 65535, "Largest message accepted, in bytes; larger ones get 513 or are dropped.",
                                minimum=1024, maximum=1048576),
        "server_header": Key(str, "sipcluster", "Server / User-Agent text in responses the node creates; empty for none."),
    },
    "registrar": {
        "enabled": Key(bool, True, "Answer REGISTER for the served domains (RFC 3261 10.3)."),
        "default_expires": Key(int, 3600, "Binding lifetime when the REGISTER names none, in seconds.", minimum=1),
        "min_expires": Key(int, 60, "Shorter requested lifetimes get 423 Interval Too Brief with this Min-Expires.", minimum=1),
        "max_expires": Key(int, 86400, "Longer requested lifetimes are cut to this, in seconds.", minimum=1),
        "nat_detect": Key(bool, True, "Bind a contact that is private or differs from the REGISTER's source to that source address."),
    },
    "nat": {
        "stun": Key(bool, True, "Answer STUN Binding requests (RFC 5389) on the SIP UDP ports."),
        "keepalive_interval_s": Key(int, 0, "Send keepalives to NATed UDP contacts this often, in seconds; 0 turns them off.", minimum=0),
        "keepalive_method": Key(str, "options", "Keepalive sent: options (answered, so dead contacts can be found) or crlf (RFC 5626 ping).",
                                choices=("options", "crlf")),
        "keepalive_remove": Key(bool, False, "Remove a binding whose keepalive OPTIONS goes unanswered."),
    },
    "timers": {
        "t1_ms": Key(int, 500, "RFC 3261 T1, the round-trip estimate, in milliseconds.", minimum=10, maximum=60000),
        "t2_ms": Key(int, 4000, "RFC 3261 T2, the longest retransmit interval for non-INVITE requests and INVITE responses.",
                     minimum=100, maximum=600000),
        "t4_ms": Key(int, 5000, "RFC 3261 T4, how long a message may stay in the network.", minimum=100, maximum=600000),
        "timer_c_s": Key(int, 180, "RFC 3261 Timer C: how long a proxy waits for a final response to a forwarded INVITE, in seconds (> 180).",
                         minimum=1, maximum=3600),
    },
    "tcp": {
        "idle_timeout_s": Key(int, 600, "Close a TCP connection after this many seconds without traffic.", minimum=1),
        "max_connections": Key(int, 10000, "Most TCP connections a node holds; further ones are refused.", minimum=1),
    },
    "store": {
        "backend": Key(str, "memory", "Where registrations live: memory (a single node) or etcd (a cluster).",
                       choices=("memory", "etcd")),
        "etcd_endpoints": Key(list, ["http://127.0.0.1:2379"], "etcd client URLs, every member of the etcd cluster: calls go to one, and move to the next when it stops answering (backend = etcd).",
                             check=_endpoint_list),
        "prefix": Key(str, "/sipcluster", "Key prefix of this cluster in etcd: nodes sharing it form one cluster."),
        "timeout_s": Key(float, 2.0, "Longest any one etcd call may take, in seconds.", minimum=0.1, maximum=60),
    },
    "cluster": {
        "name": Key(str, "", "Shared host[:port] written in Record-Route so in-dialog requests may reach any node (DNS or an anycast/floating address must lead there); empty: this node's address."),
        "region": Key(str, "default", "Region of this node, published to the cluster."),
        "drain_action": Key(str, "reject", "What a draining node does with a new INVITE: reject (503 + Retry-After) or redirect (302 to an active node: of this region first, then the one with fewest dialogs).",
                            choices=("reject", "redirect")),
        "drain_retry_after_s": Key(int, 30, "Retry-After of the 503 a draining node sends.", minimum=0),
        "leader_hook": Key(str, "", "Command run with argument acquire or release when this node gains or loses leadership (to move a floating address); empty for none."),
        "dialog_max_s": Key(int, 14400, "Longest call, in seconds: a dialog whose BYE was not seen by then ends as expired (with a CDR) and leaves the store.",
                            minimum=60),
        "max_dialogs": Key(int, 0, "Call admission: most dialogs this node carries at once (its own, those adopted from dead nodes, and INVITEs being set up); a new INVITE over it gets 503. 0: no limit. Needs node.mode = stateful.",
                           minimum=0),
        "node_ttl_s": Key(int, 3, "Lease of this node's membership record: a dead node leaves the cluster this long after its last refresh.",
                          minimum=1, maximum=300),
    },
    "accounting": {
        "failed_calls": Key(bool, False, "Also write a CDR (state failed, with the final status and the set-up time) for every call attempt answered with a failure: busy, cancelled, not found, refused. Needs node.mode = stateful."),
        "cdr_file": Key(str, "", "File the CDR of every answered call that ends through this node is appended to, one JSON object per line (flushed at once, fsynced within a second; reopened when moved by logrotate). Empty: CDRs go only to the node log (namespace sipcluster.cdr). Needs node.mode = stateful."),
    },
    "log": {
        "level": Key(str, "info", "Lowest log level written.", choices=("debug", "info", "warn", "error")),
    },
}


class Section:
    """The validated values of one section, as attributes."""

    def __init__(self, values):
        self.__dict__.update(values)

    def __repr__(self):
        return "<Section %r>" % (self.__dict__,)


class Config:
    """
    A validated configuration: C{config.sip.listen}, C{config.timers.t1_ms}...

    @ivar source: the file it came from, or None for built-in defaults.
    """

    def __init__(self, sections, source=None):
        self.source = source
        for name, values in sections.items():
            setattr(self, name, Section(values))
        if not self.node.id:
            self.node.id = socket.gethostname()


def build(data, source="<defaults>", overrides=None):
    """
    Validate a parsed TOML document (a dict) plus C{overrides} (a dict of
    dotted key to value, from the command line, which win over the file).

    @raise ConfigError: naming the file (or option), key and what was wrong.
    """
    if not isinstance(data, dict):
        raise ConfigError("%s: expected a table at top level" % source)
    sections = {}
    for section, keys in data.items():
        if section not in SCHEMA:
            raise ConfigError("%s: unknown section [%s] (known: %s)" % (
                source, section, ", ".join(sorted(SCHEMA))))
        if not isinstance(keys, dict):
            raise ConfigError("%s: %s: expected a table [%s]" % (source, section, section))
        for name in keys:
            if name not in SCHEMA[section]:
                raise ConfigError("%s: unknown key %s.%s (known in [%s]: %s)" % (
                    source, section, name, section, ", ".join(sorted(SCHEMA[section]))))
    for section, keys in SCHEMA.items():
        given = data.get(section, {})
        values = {}
        for name, key in keys.items():
            dotted = "%s.%s" % (section, name)
            where = source
            raw = given.get(name, key.default)
            if overrides and dotted in overrides:
                raw = overrides[dotted]
                where = "command line"
            try:
                values[name] = key.convert(raw)
            except ValueError as e:
                raise ConfigError("%s: %s: %s" % (where, dotted, e)) from None
        sections[section] = values
    if overrides:
        for dotted in overrides:
            section, _, name = dotted.partition(".")
            if name not in SCHEMA.get(section, {}):
                raise ConfigError("command line: unknown key %s" % dotted)
    _check_together(sections, source, overrides or {})
    return Config(sections, None if source == "<defaults>" else source)


def _check_together(sections, source, overrides):
    """Keys that only make sense with others."""
    for key in ("cluster.max_dialogs", "accounting.cdr_file", "accounting.failed_calls"):
        section, name = key.split(".")
        if sections[section][name] and sections["node"]["mode"] != "stateful":
            where = "command line" if key in overrides else source
            raise ConfigError("%s: %s: needs node.mode = \"stateful\" (dialogs are followed "
                              "by the proxy's transactions)" % (where, key))
    path = sections["accounting"]["cdr_file"]
    if path:
        where = "command line" if "accounting.cdr_file" in overrides else source
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise ConfigError("%s: accounting.cdr_file: expected a file in a writable directory, "
                              "got %s" % (where, _show(path)))


def load(path=None, overrides=None):
    """
    Read and validate the TOML file at C{path} (None: defaults only).

    @raise ConfigError: on an unreadable file, a TOML syntax error, or any
        invalid key.
    """
    if path is None:
        return build({}, overrides=overrides)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError("%s: cannot read: %s" % (path, e.strerror)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("%s: TOML syntax error: %s" % (path, e)) from None
    return build(data, path, overrides)
