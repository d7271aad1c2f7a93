"""
Per-package figures of the last mutmut runs (bench/MUTATION.md), read from
the results mutmut keeps in mutants/: mutants, killed, survived, timeouts,
no tests.  With --list, every mutant that was not killed, for judging.

    .venv/bin/python bench/mutation_summary.py [--list] [sip transaction registrar location cluster ...]
"""

import argparse
import collections
import glob
import json
import os

from mutmut.stats import status_by_exit_code

STATUSES = ("killed", "timeout", "survived", "no tests", "not checked")


def summary(package):
    counts = collections.Counter()
    left = []
    for meta in sorted(glob.glob(os.path.join("mutants", "sipcluster", package, "*.py.meta"))):
        with open(meta) as f:
            results = json.load(f)["exit_code_by_key"]
        for name, code in sorted(results.items()):
            status = status_by_exit_code[code]
            counts[status] += 1
            if status != "killed":
                left.append((status, name))
    return counts, left


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the mutants not killed")
    parser.add_argument("packages", nargs="*", default=["sip", "transaction", "registrar", "location", "cluster", "proxy", "routing"])
    args = parser.parse_args()
    for package in args.packages:
        counts, left = summary(package)
        total = sum(counts.values())
        print("sipcluster/%s/: %d mutants, %s" % (
            package, total, ", ".join("%s %d" % (s, counts[s]) for s in STATUSES if counts[s])))
        if args.list:
            for status, name in left:
                print("  %-9s %s" % (status, name))


if __name__ == "__main__":
    main()
