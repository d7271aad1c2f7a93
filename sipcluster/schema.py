# -*- test-case-name: tests.test_config -*-
"""
The vocabulary of configuration: a key's schema (L{Key}), a section a
module declares next to its code (L{ConfigSection}), the values some keys
take (L{ListenAddress}, etcd endpoints), and L{ConfigError}, whose message
is the one line an operator sees.  L{sipcluster.config} composes the
sections and reads the file.
"""



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

    @ivar kind: C{str}, C{int}, C{float}, C{bool}, C{list} (of C{item}),
        or C{dict} (a TOML table, checked by C{check}).
    @ivar item: what a list holds: C{str}, or C{dict} for an array of
        tables (C{[[routing.rules]]}).
    @ivar check: optional callable converting/validating the value; raises
        ValueError with what was expected (L{NestedKeyError} to name a key
        inside a table).
    """

    def __init__(self, kind, default, doc, choices=None, minimum=None,
                 maximum=None, check=None, item=str):
        self.kind = kind
        self.item = item
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
                bool: "true or false", list: "a list of strings", dict: "a table"}[self.kind]
        if self.kind is list and self.item is dict:
            what = "an array of tables"
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
            ok = isinstance(value, list) and all(isinstance(v, self.item) for v in value)
        elif kind is dict:
            ok = isinstance(value, dict)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ValueError("expected %s, got %s" % (self.expected(), show(value)))
        if self.choices and value not in self.choices:
            raise ValueError("expected %s, got %s" % (self.expected(), show(value)))
        if self.minimum is not None and value < self.minimum or \
                self.maximum is not None and value > self.maximum:
            raise ValueError("expected %s, got %s" % (self.expected(), show(value)))
        if self.check is not None:
            value = self.check(value)
        return value


def show(value):
    text = repr(value) if not isinstance(value, str) else '"%s"' % value
    return text if len(text) < 60 else text[:57] + "..."


def listen_list(values):
    if not values:
        raise ValueError("expected at least one listen address")
    out = []
    for i, text in enumerate(values):
        try:
            out.append(ListenAddress.parse(text))
        except ValueError as e:
            raise ValueError("item %d (%s): %s" % (i, show(text), e)) from None
    return out


def parse_endpoint(endpoint):
    """(host, port) of an etcd endpoint written http://host:port or host:port."""
    text = endpoint.split("://", 1)[-1].rstrip("/")
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected http://host:port, got %s" % show(endpoint))
    return host.strip("[]"), int(port)


def split_endpoints(text):
    """The endpoints of a comma-separated list (--etcd a,b,c)."""
    return [e.strip() for e in text.split(",") if e.strip()]


def endpoint_list(values):
    if not values:
        raise ValueError("expected at least one etcd endpoint")
    for text in values:
        parse_endpoint(text)
    return list(values)


def domain_list(values):
    return [v.lower() for v in values]


class ConfigSection:
    """
    The keys of one section, declared by the module that uses them (like a
    Kamailio module's params[]).

    @ivar name: the TOML table, C{[name]}.
    @ivar keys: ordered dict of key name to L{Key}.
    @ivar check: optional callable(values, all_sections) raising
        ValueError(dotted_key, what_was_expected) for keys that only make
        sense with others.
    """

    def __init__(self, name, keys, check=None):
        self.name = name
        self.keys = keys
        self.check = check


class NestedKeyError(ValueError):
    """
    Raised by a key's check about a key inside its value (a table, an
    array of tables): C{path} is appended to the key's dotted name
    (C{"[2].user_regex"}, C{".gateways.algorithm"}), C{expected} says what
    was wrong.
    """

    def __init__(self, path, expected):
        ValueError.__init__(self, path, expected)
        self.path = path
        self.expected = expected

    def __str__(self):
        return self.expected

    def inside(self, prefix):
        """The same error, one level further out (C{prefix} before the path)."""
        return NestedKeyError(prefix + self.path, self.expected)


class CrossKeyError(ValueError):
    """Raised by a section's check: C{key} (dotted) and what was expected."""

    def __init__(self, key, expected):
        ValueError.__init__(self, key, expected)
        self.key = key
        self.expected = expected
