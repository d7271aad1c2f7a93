# -*- test-case-name: tests.test_config -*-
"""
Node configuration: one TOML file, validated at start-up against the
sections the modules declare (each module owns its section, next to its
code: L{sipcluster.schema.ConfigSection}); this module composes them into
L{SCHEMA} and reads the file.

Every key has a type, a default and a description (README.rst's reference
is generated from them by ops/config-doc; a test keeps the two in step).
A wrong key, type or value raises L{ConfigError} whose message is one line
naming the file, the key and what was expected.  No file at all gives a
working single node.
"""

import socket
import tomllib

from sipcluster import accounting, cluster, nat, node
from sipcluster.cluster import store
from sipcluster.policy import acl, auth, radius
from sipcluster.registrar import registrar
from sipcluster.routing import rfc3263, rules
from sipcluster.schema import (  # noqa: F401  (the vocabulary, for importers)
    ConfigError, ConfigSection, CrossKeyError, Key, ListenAddress, NestedKeyError, parse_endpoint,
    show, split_endpoints)
from sipcluster.transaction import timers
from sipcluster.transport import tcp

# The sections, in the order README.rst documents them.
SECTIONS = (node.NODE_CONFIG, node.SIP_CONFIG, registrar.CONFIG, nat.CONFIG, timers.CONFIG,
            tcp.CONFIG, store.CONFIG, cluster.CONFIG, rfc3263.CONFIG, accounting.CONFIG,
            rules.CONFIG, acl.CONFIG, auth.CONFIG, radius.CONFIG, node.LOG_CONFIG)
SCHEMA = {section.name: section.keys for section in SECTIONS}


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
    @ivar overridden: the dotted keys the command line set.
    """

    def __init__(self, sections, source=None, overridden=()):
        self.source = source
        self.overridden = frozenset(overridden)
        for name, values in sections.items():
            setattr(self, name, Section(values))
        if not self.node.id:
            self.node.id = socket.gethostname()

    def origin(self, key):
        """Where the value of dotted C{key} came from, for error messages."""
        if key in self.overridden:
            return "command line"
        return self.source or "<defaults>"

    def error(self, key, expected):
        """A L{ConfigError} about C{key}, naming where it was set."""
        return ConfigError("%s: %s: %s" % (self.origin(key), key, expected))


def build(data, source="<defaults>", overrides=None):
    """
    Validate a parsed TOML document (a dict) plus C{overrides} (a dict of
    dotted key to value, from the command line, which win over the file).

    @raise ConfigError: naming the file (or option), key and what was wrong.
    """
    if not isinstance(data, dict):
        raise ConfigError("%s: expected a table at top level" % source)
    overrides = overrides or {}
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
    for dotted in overrides:
        section, _, name = dotted.partition(".")
        if name not in SCHEMA.get(section, {}):
            raise ConfigError("command line: unknown key %s" % dotted)
    sections = {}
    for section, keys in SCHEMA.items():
        given = data.get(section, {})
        values = {}
        for name, key in keys.items():
            dotted = "%s.%s" % (section, name)
            where = source
            raw = given.get(name, key.default)
            if dotted in overrides:
                raw = overrides[dotted]
                where = "command line"
            try:
                values[name] = key.convert(raw)
            except ValueError as e:
                raise ConfigError("%s: %s%s: %s" % (
                    where, dotted, getattr(e, "path", ""), e)) from None
        sections[section] = values
    for section in SECTIONS:
        if section.check is None:
            continue
        try:
            section.check(sections[section.name], sections)
        except CrossKeyError as e:
            where = "command line" if e.key in overrides else source
            raise ConfigError("%s: %s: %s" % (where, e.key, e.expected)) from None
    return Config(sections, None if source == "<defaults>" else source, overrides)


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
