# -*- test-case-name: tests.test_config -*-
"""
The C{sipcluster} command: inspect and steer a node or cluster.

Commands that talk to the cluster store arrive with the cluster work; what
is here works on a single machine.
"""

import argparse
import json
import sys

from sipcluster import __version__
from sipcluster import config as configuration


def _check_config(args):
    try:
        cfg = configuration.load(args.config)
    except configuration.ConfigError as e:
        print("sipcluster: config error: %s" % e, file=sys.stderr)
        return 2
    if args.json:
        out = {name: dict(vars(getattr(cfg, name))) for name in configuration.SCHEMA}
        out["sip"]["listen"] = [str(a) for a in out["sip"]["listen"]]
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print("%s: OK" % args.config)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="sipcluster", description=__doc__.strip().splitlines()[0])
    parser.add_argument("--version", action="version", version="sipcluster %s" % __version__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config")
    check.add_argument("--json", action="store_true", help="print the effective configuration")
    check.set_defaults(run=_check_config)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
