"""Tests for start-up: the twistd options, makeService and the worker pool."""

import pytest
from twisted.internet.testing import MemoryReactorClock as MemoryReactor

from sipcluster.tap import Options, makeService
from sipcluster.workers import WorkerPool, without_options


def test_options_override_the_file(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text('[node]\nmode = "stateless"\n[sip]\nlisten = ["udp:127.0.0.1:5000"]\n')
    options = Options()
    options.parseOptions(["--config", str(path), "--mode", "stateful", "--listen", "udp:127.0.0.2:5070",
                          "--listen", "tcp:127.0.0.2:5070", "--domain", "example.test"])
    cfg = options.config
    assert cfg.node.mode == "stateful"
    assert [str(a) for a in cfg.sip.listen] == ["udp:127.0.0.2:5070", "tcp:127.0.0.2:5070"]
    assert cfg.sip.domains == ["example.test"]


def test_bad_option_is_a_usage_error_naming_the_key():
    options = Options()
    with pytest.raises(SystemExit) as e:
        options.parseOptions(["--listen", "udp:nowhere"])
    assert str(e.value.code).startswith("config error: command line: sip.listen")


def test_make_service_builds_a_node_and_workers():
    options = Options()
    options.parseOptions(["--workers", "3", "--listen", "udp:127.0.0.1:5999"])
    top = makeService(options, reactor=MemoryReactor())
    names = [type(s).__name__ for s in top]
    assert names == ["Lifecycle", "SIPNode", "WorkerPool"]
    pool = [s for s in top if isinstance(s, WorkerPool)][0]
    assert pool.count == 2
    assert pool.argv == ["--listen", "udp:127.0.0.1:5999"]


def test_worker_argv_filter():
    assert without_options(["--workers", "2", "--mode", "x", "--worker=3", "--workers=4", "--listen", "a"],
                           ("--worker", "--workers")) == ["--mode", "x", "--listen", "a"]


def test_plugin_is_found():
    from twisted.plugin import getPlugins
    from twisted.application.service import IServiceMaker
    makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
    assert makers["sipcluster"].module == "sipcluster.tap"
    assert makers["sipcluster"].options is Options


def test_leader_hook_runs_acquire_and_release_on_changes_only():
    from sipcluster.node import LeaderHook
    hook = LeaderHook(MemoryReactor(), "/bin/true", "node-a")
    actions = []
    hook.run = actions.append
    for event, node in [("join", "node-b"), ("leader", "node-b"), ("leader", "node-a"),
                        ("leader", "node-a"), ("leave", "node-b"), ("leader", "node-c")]:
        hook(event, node, None)
    assert actions == ["acquire", "release"]


def test_only_the_leader_purges_expired_bindings_from_etcd():
    options = Options()
    options.parseOptions(["--store", "etcd", "--node-id", "node-a"])
    (_, node) = makeService(options, reactor=MemoryReactor())
    sweeps = []
    node.location.sweep = lambda purge=False: sweeps.append(purge)
    node.sweep_location()
    node.membership.leader = "node-a"
    node.sweep_location()
    node.membership.leader = "node-b"
    node.sweep_location()
    assert sweeps == [False, True, False]
