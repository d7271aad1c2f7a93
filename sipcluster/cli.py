# -*- test-case-name: tests.test_config -*-
"""
The sipcluster command: check a configuration, and inspect and steer a
cluster through its etcd (status, registrations, calls, leader, drain).

It talks to etcd directly with the blocking client: it is a command, not a
node, so nothing here runs on a reactor.  (Plain text: the first line is
the --help description.)
"""

import argparse
import json
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="sipcluster", description=__doc__.strip().splitlines()[0])
    parser.add_argument("--version", action="version", version="sipcluster %s" % __version__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config")
    check.add_argument("--json", action="store_true", help="print the effective configuration")
    check.set_defaults(run=_check_config)
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
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except CLIError as e:
        print("sipcluster: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
