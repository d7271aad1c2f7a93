# -*- test-case-name: tests.test_config,tests.test_cli_users -*-
"""
The sipcluster command: check a configuration, inspect and steer a
cluster through its etcd (status, registrations, calls, leader, drain),
and manage the users digest authentication checks (user).

It talks to etcd directly with the blocking client: it is a command, not a
node, so nothing here runs on a reactor.  (Plain text: the first line is
the --help description.)
"""

import argparse
import json
import re
import sys
import time

from sipcluster import __version__
from sipcluster import config as configuration


class CLIError(Exception):
    """A failure to report in one line, with a non-zero exit."""


def _client(args):
    """A client on the first endpoint that answers, tried in turn."""
    from sipcluster.cluster import etcd as adapter  # first: it selects protobuf's backend
    import etcd3
    if args.etcd:
        endpoints = configuration.split_endpoints(args.etcd)
    elif args.config:
        try:
            endpoints = configuration.load(args.config).store.etcd_endpoints
        except configuration.ConfigError as e:
            raise CLIError("config error: %s" % e)
    else:
        endpoints = ["http://127.0.0.1:2379"]
    errors = []
    for endpoint in endpoints:
        try:
            host, port = configuration.parse_endpoint(endpoint)
        except ValueError as e:
            raise CLIError("bad etcd endpoint %r: %s" % (endpoint, e))
        client = etcd3.client(host, port, timeout=args.timeout)
        try:
            client.status()
            return client
        except Exception as e:
            errors.append("%s: %s" % (endpoint, adapter._describe(e)))
            client.close()
    raise CLIError("cannot reach etcd at %s" % "; ".join(errors))


def _prefix(args):
    if args.prefix:
        return args.prefix.rstrip("/")
    if args.config:
        return configuration.load(args.config).store.prefix.rstrip("/")
    return "/sipcluster"


def _read_prefix(client, prefix):
    from sipcluster.cluster.etcd import read_prefix
    items, _ = read_prefix(client, prefix)
    return [(key, value) for key, value, _ in items]


def _table(rows, headers):
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths))]
    for row in rows:
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))
    return "\n".join(lines)


def _status(args):
    client = _client(args)
    prefix = _prefix(args)
    leader = client.get(prefix + "/leader")[0]
    leader = leader.decode("utf-8") if leader else None
    bindings = {}
    for key, value in _read_prefix(client, prefix + "/aor/"):
        try:
            for item in json.loads(value):
                if item.get("expires_at", 0) > time.time():
                    node = item.get("node") or "?"
                    bindings[node] = bindings.get(node, 0) + 1
        except ValueError:
            continue
    nodes = []
    for key, value in _read_prefix(client, prefix + "/nodes/"):
        try:
            record = json.loads(value)
        except ValueError:
            continue
        node_id = key.rsplit("/", 1)[-1]
        record["id"] = node_id
        record["leader"] = node_id == leader
        record["bindings"] = bindings.get(node_id, 0)
        started = record.get("started")
        record["uptime_s"] = int(time.time() - started) if started else None
        nodes.append(record)
    if args.json:
        print(json.dumps({"leader": leader, "nodes": nodes}, indent=2, sort_keys=True))
        return 0 if nodes else 1
    if not nodes:
        # An empty table would read as "the cluster is fine".
        raise CLIError("no live node under prefix %s (are the nodes running with "
                       "store.backend = \"etcd\" and this store.prefix, or is --config/--etcd "
                       "the right one?)" % prefix)
    rows = [(n["id"], ",".join(n.get("addresses", [])), n.get("region", ""), n.get("state", ""),
             "yes" if n["leader"] else "", _duration(n["uptime_s"]), n.get("load", 0), n["bindings"],
             n.get("dialogs", 0))
            for n in nodes]
    print(_table(rows, ["NODE", "ADDRESSES", "REGION", "STATE", "LEADER", "UPTIME", "LOAD",
                        "BINDINGS", "DIALOGS"]))
    return 0


def _duration(seconds):
    if seconds is None:
        return "?"
    hours, rest = divmod(seconds, 3600)
    return "%dh%02dm%02ds" % (hours, rest // 60, rest % 60) if hours else "%dm%02ds" % divmod(rest, 60)


def _registrations(args):
    client = _client(args)
    prefix = _prefix(args) + "/aor/"
    key_filter = prefix + args.aor if args.aor else prefix
    rows = []
    out = []
    now = time.time()
    for key, value in _read_prefix(client, key_filter):
        aor = key[len(prefix):]
        if args.aor and aor != args.aor:
            continue
        try:
            items = json.loads(value)
        except ValueError:
            continue
        for item in items:
            remaining = int(item.get("expires_at", 0) - now)
            if remaining <= 0:
                continue
            received = item.get("received")
            rows.append((aor, item.get("contact"), remaining, item.get("q", 1.0),
                         "%s:%s:%s" % tuple(received) if received else "", item.get("node") or ""))
            out.append(dict(item, aor=aor, expires_in=remaining))
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    elif rows:
        print(_table(rows, ["AOR", "CONTACT", "EXPIRES", "Q", "REACHED AT", "NODE"]))
    else:
        print("no registrations" + (" for %s" % args.aor if args.aor else ""))
    return 0


def _drain(args, draining=True):
    from sipcluster.cluster.drain import drain_key
    client = _client(args)
    prefix = _prefix(args)
    known = {key.rsplit("/", 1)[-1] for key, _ in _read_prefix(client, prefix + "/nodes/")}
    if draining and args.node not in known:
        raise CLIError("no live node %r in the cluster (live: %s)" % (
            args.node, ", ".join(sorted(known)) or "none"))
    if draining:
        client.put(drain_key(prefix, args.node), str(time.time()))
    else:
        client.delete(drain_key(prefix, args.node))
    if args.json:
        print(json.dumps({"node": args.node, "draining": draining}))
    else:
        print("%s: %s" % (args.node, "draining (no new dialogs)" if draining else "active"))
    return 0


def _calls(args):
    client = _client(args)
    prefix = _prefix(args) + "/dialogs/"
    now = time.time()
    calls = []
    for key, value in _read_prefix(client, prefix):
        try:
            record = json.loads(value)
        except ValueError:
            continue
        record["duration_s"] = int(now - record.get("started", now))
        calls.append(record)
    calls.sort(key=lambda r: r.get("started", 0))
    if args.json:
        print(json.dumps(calls, indent=2, sort_keys=True))
    elif calls:
        print(_table([(r.get("call_id"), _party(r.get("from")), _party(r.get("to")), r.get("owner"),
                       _duration(r["duration_s"]), r.get("adopted_from") or "")
                      for r in calls], ["CALL-ID", "FROM", "TO", "OWNER", "DURATION", "ADOPTED FROM"]))
    else:
        print("no calls")
    return 0


def _party(text):
    """A party of a call as a person reads it: the URI without its parameters."""
    from sipcluster.sip.errors import SIPError
    from sipcluster.sip.uri import SipURI, parse_uri
    try:
        uri = parse_uri(text or "")
    except SIPError:
        return text
    if not isinstance(uri, SipURI):
        return text
    return str(uri.without_params(*uri.params)) if uri.params else text


def _leader(args):
    client = _client(args)
    value = client.get(_prefix(args) + "/leader")[0]
    leader = value.decode("utf-8") if value else None
    if args.json:
        print(json.dumps({"leader": leader}))
    else:
        print(leader or "no leader")
    return 0


def _check_config(args):
    from sipcluster.node import check
    try:
        cfg = configuration.load(args.config)
        # What the keys mean together: a node would refuse it at start-up.
        check(cfg)
    except configuration.ConfigError as e:
        print("sipcluster: config error: %s" % e, file=sys.stderr)
        return 2
    if args.json:
        out = {name: dict(vars(getattr(cfg, name))) for name in configuration.SCHEMA}
        out["sip"]["listen"] = [str(a) for a in out["sip"]["listen"]]
        out["routing"]["rules"] = [rule.table for rule in cfg.routing.rules]
        out["routing"]["sets"] = {n: s.view() for n, s in cfg.routing.sets.items()}
        if out["auth"]["secret"]:
            out["auth"]["secret"] = "(set)"  # a key, not for the terminal
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print("%s: OK" % args.config)
    return 0


def _destinations(args):
    """Every node's view of its destination sets (<prefix>/destinations/<node>)."""
    client = _client(args)
    prefix = _prefix(args) + "/destinations/"
    now = time.time()
    views = []
    for key, value in _read_prefix(client, prefix):
        try:
            views.append(json.loads(value))
        except ValueError:
            continue
    views.sort(key=lambda v: v.get("node", ""))
    if args.json:
        print(json.dumps(views, indent=2, sort_keys=True))
        return 0
    rows = []
    for view in views:
        for dset in view.get("sets", []):
            for d in dset.get("destinations", []):
                probe = d.get("last_probe")
                if probe:
                    when, status = probe
                    probe = "%s, %ds ago" % (status or "no answer", max(0, now - when))
                rows.append((dset.get("name"), d.get("uri"), view.get("node"), d.get("state"),
                             d.get("active"), probe or "never"))
    rows.sort(key=lambda r: (r[0] or "", r[1] or "", r[2] or ""))
    if rows:
        print(_table(rows, ["SET", "DESTINATION", "NODE", "STATE", "CALLS", "LAST PROBE"]))
    else:
        print("no destination sets published")
    return 0


# -- users ------------------------------------------------------------------------

# zxcvbn's 0-4 scale; 3 is "safely unguessable: moderate protection from
# offline slow-hash scenario".  An HA1 is a fast hash, so anything less
# falls to a dictionary run against a leaked users file.
MIN_SCORE = 3
MIN_LENGTH = 10


def password_problem(password, username, realm):
    """
    Why C{password} is refused, or None.  The judgement is zxcvbn's (a
    maintained estimator with dictionaries of common passwords, names and
    keyboard patterns, and the user's own name and realm as extra words),
    not hand-written rules, which pass "Password1!" and refuse good
    passphrases.
    """
    from zxcvbn import zxcvbn
    if len(password) < MIN_LENGTH:
        return "shorter than %d characters" % MIN_LENGTH
    words = [w for w in [username, realm] + realm.split(".") + ["sipcluster", "sip"] if len(w) > 2]
    result = zxcvbn(password[:100], user_inputs=words)
    if result["score"] >= MIN_SCORE:
        # zxcvbn counts the user's own name as one dictionary word, which
        # still scores "alice-sip-2024" 4: judge what is left without the
        # user name and realm instead, so they add no strength.
        rest = password[:100]
        for word in sorted(words, key=len, reverse=True):
            rest = re.sub(re.escape(word), "", rest, flags=re.IGNORECASE)
        if rest != password[:100] and (not rest or zxcvbn(rest)["score"] < MIN_SCORE):
            return "built on the user name or realm (what is left is too easy to guess)"
    if result["score"] < MIN_SCORE:
        feedback = result.get("feedback") or {}
        why = feedback.get("warning") or "too easy to guess"
        hints = " ".join(feedback.get("suggestions") or [])
        return "%s (strength %d of 4, %d needed)%s" % (
            why.rstrip("."), result["score"], MIN_SCORE, (": " + hints) if hints else "")
    return None


def _read_password(args):
    """The new password: from --password-file (- for stdin), else prompted twice."""
    if args.password_file:
        try:
            if args.password_file == "-":
                text = sys.stdin.readline()
            else:
                with open(args.password_file, encoding="utf-8") as f:
                    text = f.readline()
        except OSError as e:
            raise CLIError("cannot read %s: %s" % (args.password_file, e.strerror))
        password = text.rstrip("\r\n")
    else:
        import getpass
        password = getpass.getpass("Password for %s: " % args.name)
        if getpass.getpass("Again: ") != password:
            raise CLIError("the passwords differ; nothing changed")
    if not password:
        raise CLIError("empty password; nothing changed")
    return password


class _UsersFile:
    """The users file of a single node."""

    def __init__(self, path):
        self.path = path

    def where(self):
        return self.path

    def load(self):
        from sipcluster.policy.users import read_users_file
        try:
            return read_users_file(self.path)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise CLIError("%s: %s" % (self.path, getattr(e, "strerror", None) or e))

    def get(self, name):
        return self.load().get(name)

    def put(self, name, record):
        from sipcluster.policy.users import write_users_file
        users = self.load()
        users[name] = record
        write_users_file(self.path, users)

    def delete(self, name):
        from sipcluster.policy.users import write_users_file
        users = self.load()
        if users.pop(name, None) is None:
            return False
        write_users_file(self.path, users)
        return True

    def all(self):
        return self.load()


class _UsersStore:
    """The users of a cluster, in etcd: one key each, <prefix>/users/<name>."""

    def __init__(self, args):
        self.client = _client(args)
        self.prefix = _prefix(args)

    def where(self):
        return "etcd %s/users/" % self.prefix

    def _key(self, name):
        from sipcluster.policy.users import user_key
        return user_key(self.prefix, name)

    def get(self, name):
        value = self.client.get(self._key(name))[0]
        return json.loads(value) if value else None

    def put(self, name, record):
        self.client.put(self._key(name), json.dumps(record, sort_keys=True))

    def delete(self, name):
        return self.client.delete(self._key(name))

    def all(self):
        from sipcluster.policy.users import valid_record
        prefix = self._key("")
        out = {}
        for key, value in _read_prefix(self.client, prefix):
            try:
                record = valid_record(json.loads(value))
            except ValueError:
                record = None
            if record is not None:
                out[key[len(prefix):]] = record
        return out


def _users_config(args):
    if not args.config:
        return None
    try:
        return configuration.load(args.config)
    except configuration.ConfigError as e:
        raise CLIError("config error: %s" % e)


def _users_target(args):
    """Where the users are: --file, --etcd, or what --config says."""
    import os
    if args.file:
        return _UsersFile(args.file)
    if args.etcd:
        return _UsersStore(args)
    cfg = _users_config(args)
    if cfg is not None and cfg.auth.users_file:
        return _UsersFile(os.path.join(os.path.dirname(args.config), cfg.auth.users_file))
    if cfg is not None and cfg.store.backend == "etcd":
        return _UsersStore(args)
    raise CLIError("say where the users are: --file FILE, --etcd URL, or --config FILE")


def _realm(args):
    if args.realm:
        return args.realm
    cfg = _users_config(args)
    if cfg is not None:
        return cfg.auth.realm or (cfg.sip.domains[0] if cfg.sip.domains else "localhost")
    raise CLIError("say the realm: --realm REALM, or --config FILE (auth.realm, else the first "
                   "of sip.domains)")


def _algorithms(args):
    from sipcluster.policy import auth
    if args.algorithms:
        names = configuration.split_endpoints(args.algorithms)
    else:
        cfg = _users_config(args)
        names = cfg.auth.algorithms if cfg is not None else list(auth.CONFIG.keys["algorithms"].default)
    try:
        return auth.algorithm_list(names)
    except ValueError as e:
        raise CLIError("--algorithms: %s" % e)


def _user_set(args, must_exist):
    from sipcluster.policy.users import make_record
    name = args.name
    if not name or not all(c.isalnum() or c in "-_.!~*'()&=+$,;?/%" for c in name):
        raise CLIError("bad user name %r (the user part of a SIP URI)" % name)
    realm = _realm(args)
    algorithms = _algorithms(args)
    target = _users_target(args)
    exists = target.get(name) is not None
    if must_exist and not exists:
        raise CLIError("no user %r in %s" % (name, target.where()))
    if not must_exist and exists:
        raise CLIError("user %r exists in %s (sipcluster user passwd changes the password)" % (
            name, target.where()))
    password = _read_password(args)
    problem = password_problem(password, name, realm)
    if problem:
        raise CLIError("password refused: %s; nothing changed" % problem)
    target.put(name, make_record(name, realm, password, algorithms))
    if args.json:
        print(json.dumps({"user": name, "realm": realm, "algorithms": algorithms}))
    else:
        print("%s: %s in realm %s (%s)" % (name, "password changed" if exists else "added",
                                           realm, ", ".join(algorithms)))
    return 0


def _user_del(args):
    target = _users_target(args)
    if not target.delete(args.name):
        raise CLIError("no user %r in %s" % (args.name, target.where()))
    print(json.dumps({"user": args.name, "deleted": True}) if args.json else "%s: deleted" % args.name)
    return 0


def _user_list(args):
    users = _users_target(args).all()
    if args.json:
        print(json.dumps([{"user": n, "realm": r["realm"], "algorithms": sorted(r["ha1"])}
                          for n, r in sorted(users.items())], indent=2))
    elif users:
        print(_table([(n, r["realm"], ",".join(sorted(r["ha1"]))) for n, r in sorted(users.items())],
                     ["USER", "REALM", "ALGORITHMS"]))
    else:
        print("no users")
    return 0


def _user_import(args):
    """Copy every user of a users file (HA1s as they are) to the target, e.g. etcd."""
    from sipcluster.policy.users import read_users_file
    try:
        users = read_users_file(args.source)
    except (OSError, ValueError) as e:
        raise CLIError("%s: %s" % (args.source, getattr(e, "strerror", None) or e))
    target = _users_target(args)
    for name, record in sorted(users.items()):
        target.put(name, record)
    if args.json:
        print(json.dumps({"imported": sorted(users), "to": target.where()}))
    else:
        print("%d users imported into %s" % (len(users), target.where()))
    return 0


def _add_user_commands(sub):
    user = sub.add_parser("user", help="users of digest authentication (HA1s, never passwords)",
                          allow_abbrev=False)
    commands = user.add_subparsers(dest="user_command", required=True)
    for name, run, text in (
            ("add", lambda a: _user_set(a, False), "add a user (password prompted, or --password-file)"),
            ("passwd", lambda a: _user_set(a, True), "change a user's password"),
            ("del", _user_del, "remove a user"),
            ("list", _user_list, "list users, their realm and algorithms"),
            ("import", _user_import, "copy the users of a users file (their HA1s) to etcd")):
        # No abbreviations: "--password" must not be taken for
        # "--password-file" (a password on the command line).
        command = commands.add_parser(name, help=text, allow_abbrev=False)
        if name == "import":
            command.add_argument("source", help="the users file to copy from")
        elif name != "list":
            command.add_argument("name", help="user name (the user part of the AOR)")
        command.add_argument("--file", help="the users file of a single node (auth.users_file)")
        command.add_argument("--etcd", help="etcd URL(s) of a cluster, comma-separated")
        command.add_argument("--config", help="node configuration: where users are, realm, algorithms")
        command.add_argument("--prefix", help="cluster key prefix (default /sipcluster)")
        command.add_argument("--timeout", type=float, default=3.0, help="seconds per etcd call")
        command.add_argument("--json", action="store_true", help="machine-readable output")
        if name in ("add", "passwd"):
            command.add_argument("--realm", help="realm of the HA1s (default: from --config)")
            command.add_argument("--algorithms", help="comma-separated (default: auth.algorithms)")
            # Never the password itself on the command line: argv is
            # visible to every user of the machine (ps, /proc).
            command.add_argument("--password-file", metavar="FILE",
                                 help="read the password from the first line of FILE (- for stdin)")
        command.set_defaults(run=run)


def _version(args):
    from sipcluster import compiled
    print("sipcluster %s, %s, Python %s" % (__version__, compiled.build(), sys.version.split()[0]))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="sipcluster", description=__doc__.strip().splitlines()[0])
    parser.add_argument("--version", action="version", version="sipcluster %s" % __version__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config")
    check.add_argument("--json", action="store_true", help="print the effective configuration")
    check.set_defaults(run=_check_config)
    version = sub.add_parser("version", help="the version and which build runs (compiled or pure Python)")
    version.set_defaults(run=_version)
    for name, run, text in (("status", _status, "nodes of the cluster"),
                            ("registrations", _registrations, "current bindings"),
                            ("leader", _leader, "the node holding leadership"),
                            ("calls", _calls, "dialogs in progress"),
                            ("destinations", _destinations,
                             "destination sets as each node sees them"),
                            ("drain", _drain, "stop a node taking new dialogs"),
                            ("undrain", lambda a: _drain(a, False), "let a drained node take dialogs again")):
        command = sub.add_parser(name, help=text)
        command.add_argument("--etcd", help="etcd URL(s), comma-separated, tried in turn (default: from --config, else http://127.0.0.1:2379)")
        command.add_argument("--config", help="node configuration file (etcd endpoints and prefix)")
        command.add_argument("--prefix", help="cluster key prefix (default /sipcluster)")
        command.add_argument("--timeout", type=float, default=3.0, help="seconds per etcd call")
        command.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "registrations":
            command.add_argument("aor", nargs="?", help="only this address-of-record")
        if name in ("drain", "undrain"):
            command.add_argument("node", help="node id")
        command.set_defaults(run=run)
    _add_user_commands(sub)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except CLIError as e:
        print("sipcluster: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
