"""Fixtures of the integration tests: a loopback host of its own per test."""

import pytest

from tests.integration.nodes import NodeProcess, Sipp, next_host


@pytest.fixture
def net(tmp_path):
    """
    A host address for this test, a way to start nodes and SIPp on it, and
    the stopping of everything started, by PID, at the end.
    """
    started = []

    class Net:
        host = next_host()
        tmp = tmp_path

        def node(self, *args):
            node = NodeProcess(self.host, 5060, args, tmp_path)
            started.append(node)
            return node

        def sipp(self, name, *args, timeout=30):
            run = Sipp(tmp_path, name, ["-i", self.host] + list(args), timeout=timeout)
            started.append(run)
            return run
    yield Net()
    for thing in reversed(started):
        thing.stop()
