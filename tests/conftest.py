"""
Every test starts with the message layer's memos empty: the parsed values
remembered by their text (URIs, addresses, Vias, tags, valid hosts and
tokens, numeric next hops, the compiled parser's header-name table).  A value an earlier test left there would be
returned without being parsed again, and a parser's fault (or a mutant of
it, in mutation testing: mutmut forks each mutant from a process that ran
the tests once) would go unseen.
"""

import pytest

from sipcluster.proxy import forwarding
from sipcluster.sip import address, grammar, message, uri, via

MEMOS = (uri._URIS, uri._KNOWN_HOSTS, uri._HOSTPORTS, address._ADDRESSES, via._VIAS, via._CSEQS,
         message._TAGS, grammar._KNOWN_TOKENS, forwarding._NUMERIC)


@pytest.fixture(autouse=True)
def empty_memos():
    for memo in MEMOS:
        memo.clear()
    message.clear_names()
    yield
