# -*- test-case-name: tests.test_transport -*-
"""Counters of events by name, as the layers keep them for the API and metrics."""


class Counts(dict):
    """
    Event counts by name; a name never counted reads 0, so that
    C{counts[name] += 1} needs no setup (as with L{collections.Counter}).

    Not a Counter: Counter defines C{__delitem__}, which gives its type
    Python's generic item-assignment slot, so every C{+= 1} went through
    the dict's C{__setitem__} as a Python-level call (about a thousand
    instructions; the transport layer counts each message twice).  A dict
    subclass with C{__missing__} only keeps dict's own assignment.
    """

    __slots__ = ()

    def __missing__(self, name):
        return 0
