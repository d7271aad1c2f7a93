"""
Routing decision cost (not a test): how long the rules stage takes to pick
the rule for one request, with 10 ordinary rules (the last one matching)
and with one rule holding 100,000 number prefixes (longest-prefix match),
measured on parsed INVITEs in-process, without sockets.

    .venv/bin/python bench/route_decision.py [--requests N] [--prefixes N]

Prints microseconds per decision (the median of 5 runs) for each case, and
the cost of the prefix lookup alone.
"""

import argparse
import os
import random
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sipcluster.proxy.pipeline import RequestContext  # noqa: E402
from sipcluster.routing import rules as rules_module  # noqa: E402
from sipcluster.routing.destinations import parse_sets  # noqa: E402
from sipcluster.sip.message import parse_message  # noqa: E402
from sipcluster.transport.base import Source  # noqa: E402

INVITE = ("INVITE sip:{user}@gw.test SIP/2.0\r\n"
          "Via: SIP/2.0/UDP 10.1.2.3:5060;branch=z9hG4bK{n}\r\n"
          "Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=a{n}\r\n"
          "To: <sip:{user}@gw.test>\r\nCall-ID: c{n}\r\nCSeq: 1 INVITE\r\n"
          "X-Account: gold\r\nContent-Length: 0\r\n\r\n")


class Local:
    host, port = "127.0.0.1", 5060


def requests(n, users):
    out = []
    for i in range(n):
        request = parse_message(INVITE.format(user=users[i % len(users)], n=i).encode())
        out.append(RequestContext(request, Source("udp", "10.1.2.3", 5060, Local()), None))
    return out


def time_decisions(stage, contexts, runs=5):
    per = []
    for _ in range(runs):
        for c in contexts:
            c.vars.clear()
        start = time.perf_counter()
        for c in contexts:
            stage.decide(c)
        per.append((time.perf_counter() - start) / len(contexts) * 1e6)
    return statistics.median(per)


def ten_rules():
    # Nine rules that do not match this traffic, of every kind, then one
    # that does: the worst case of a first-match list.
    tables = [
        {"methods": ["MESSAGE"], "reject": 403},
        {"user": ["alice", "bob", "carol"], "reject": 403},
        {"user_prefix": ["0900", "0800"], "reject": 403},
        {"user_regex": "^999[0-9]+$", "reject": 403},
        {"domain": ["other.test", "more.test"], "reject": 403},
        {"from_user": "mallory", "reject": 403},
        {"source": ["192.168.0.0/16", "172.16.0.0/12"], "reject": 403},
        {"header": "X-Account", "header_regex": "^silver", "reject": 403},
        {"resource_priority": "ets.0", "reject": 403},
        {"methods": ["INVITE"], "domain": "gw.test", "header": "X-Account", "set": "gw"},
    ]
    return rules_module.parse_rules(tables)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--prefixes", type=int, default=100000)
    args = parser.parse_args()
    sets = parse_sets({"gw": {"destinations": ["sip:127.0.0.51:5060"]}})
    rng = random.Random(9)

    stage = rules_module.RoutingRules(ten_rules(), sets)
    contexts = requests(args.requests, ["4420%07d" % i for i in range(1000)])
    assert stage.decide(contexts[0]).action == "set"
    print("10 rules (the last matches): %.2f us per decision" % time_decisions(stage, contexts))

    # Carrier-like prefixes: 2 to 10 digits.
    prefixes = {}
    while len(prefixes) < args.prefixes:
        length = rng.randint(2, 10)
        prefixes["".join(rng.choice("0123456789") for _ in range(length))] = "gw"
    rule = rules_module.parse_rule(0, {"prefixes": prefixes})
    stage = rules_module.RoutingRules([rule], sets)
    known = list(prefixes)
    users = [rng.choice(known) + "".join(rng.choice("0123456789") for _ in range(6))
             for _ in range(1000)]
    contexts = requests(args.requests, users)
    assert all(stage.decide(c) is rule for c in contexts[:100])
    print("%d prefixes (%d lengths): %.2f us per decision" % (
        len(rule.prefixes), len(rule.prefixes.lengths), time_decisions(stage, contexts)))
    numbers = [u for u in users]
    start = time.perf_counter()
    rounds = 50
    for _ in range(rounds):
        for number in numbers:
            rule.prefixes.longest(number)
    print("longest-prefix lookup alone: %.2f us" % (
        (time.perf_counter() - start) / (rounds * len(numbers)) * 1e6))


if __name__ == "__main__":
    main()
