# -*- test-case-name: tests.test_routing_rules -*-
"""
Number-prefix routing at carrier scale: the longest prefix of a dialled
number that the table knows, found in a few dictionary lookups (one per
prefix length present, longest first) rather than a scan, so that 100,000
prefixes cost the same microseconds as ten.  Like Kamailio's
carrierroute/lcr prefix trees, without the tree.
"""

import csv


def dialled_digits(user):
    """
    The number a Request-URI user part dials: without visual separators
    (RFC 3966 5.1.1 allows "-", "." and parentheses in a phone number) and
    without the "+" of a global number, so that "+44 20..." and "4420..."
    meet the same prefixes.
    """
    if not user:
        return ""
    user = user.split(";", 1)[0]
    if user.startswith("+"):
        user = user[1:]
    if user.isdigit():
        return user
    return "".join(c for c in user if c not in "-.() ")


class PrefixTable:
    """
    Prefix (a string of digits) -> value; C{longest(number)} is the value
    of the longest prefix of C{number} in the table.

    @ivar by_length: length -> {prefix: value}.
    @ivar lengths: the lengths present, longest first.
    """

    def __init__(self, entries=()):
        self.by_length = {}
        self.lengths = ()
        for prefix, value in entries:
            self.add(prefix, value)

    def add(self, prefix, value):
        """Add (or replace) C{prefix}; an empty prefix matches every number."""
        table = self.by_length.get(len(prefix))
        if table is None:
            table = self.by_length[len(prefix)] = {}
            self.lengths = tuple(sorted(self.by_length, reverse=True))
        table[prefix] = value

    def __len__(self):
        return sum(len(t) for t in self.by_length.values())

    def longest(self, number):
        """(prefix, value) of the longest prefix of C{number}, or None."""
        size = len(number)
        by_length = self.by_length
        for length in self.lengths:
            if length > size:
                continue
            prefix = number[:length]
            value = by_length[length].get(prefix)
            if value is not None:
                return prefix, value
        return None


def read_prefix_file(path):
    """
    The (prefix, value) rows of a CSV file, one "prefix,value" per line
    ("#" starts a comment line).

    @raise ValueError: naming the line that is not a prefix of digits and
        a value, or the file that cannot be read.
    """
    rows = []
    try:
        with open(path, newline="") as f:
            for number, row in enumerate(csv.reader(f), 1):
                if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                    continue
                if len(row) != 2 or not dialled_digits(row[0].strip()).isdigit() \
                        or not row[1].strip():
                    raise ValueError('%s line %d: expected "prefix,value" (digits, then a '
                                     'name), got %r' % (path, number, ",".join(row)))
                rows.append((dialled_digits(row[0].strip()), row[1].strip()))
    except OSError as e:
        raise ValueError("%s: cannot read: %s" % (path, e.strerror)) from None
    return rows
