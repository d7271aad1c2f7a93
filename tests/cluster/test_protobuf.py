"""
etcd3 0.12 on a current protobuf (sipcluster.cluster.protobuf): every way
into etcd3 selects the pure-Python backend itself, in a fresh process whose
environment says nothing about it, or stops in one line when it cannot; and
the dependencies let sipcluster share an environment with current protobuf
users.
"""

import json
import os
import subprocess
import sys
import textwrap
import venv

import pytest

from sipcluster.cluster import protobuf
from tests.cluster.etcdserver import EtcdServer, requires_etcd
from tests.cluster.test_cluster_nodes import register
from tests.integration.nodes import ROOT, NodeProcess, UDPAgent, next_host, twistd

# The first releases fixed for CVE-2025-4565 on each line are 4.25.8,
# 5.29.5 and 6.31.1; setup.cfg asks for the last.
FIXED = (6, 31, 1)


def version(text):
    return tuple(int(part) for part in text.split(".")[:3])


def fresh_env(**extra):
    """This environment for a child, without the backend variable (the
    tests' own process has it set: it imported the adapter)."""
    env = dict(os.environ, PYTHONPATH=ROOT, **extra)
    if not extra.get(protobuf.VARIABLE):
        env.pop(protobuf.VARIABLE, None)
    return env


def run(args, env, timeout=60):
    return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def etcd():
    server = EtcdServer()
    yield server
    server.stop()


# -- select_backend, in this process --------------------------------------


class _API:
    def __init__(self, backend):
        self.backend = backend

    def Type(self):
        return self.backend


def test_unset_variable_is_set_to_python():
    environ = {}
    assert protobuf.select_backend(environ, {}) == "python"
    assert environ == {protobuf.VARIABLE: "python"}


def test_protobuf_already_on_python_is_accepted():
    environ = {}
    assert protobuf.select_backend(environ, {protobuf._API: _API("python")}) == "python"
    assert environ == {}


@pytest.mark.parametrize("backend", ["upb", "cpp"])
def test_another_backend_already_imported_is_one_line(backend):
    with pytest.raises(protobuf.ProtobufBackendError) as raised:
        protobuf.select_backend({}, {protobuf._API: _API(backend)})
    message = str(raised.value)
    assert "\n" not in message
    assert "imported with its %s backend" % backend in message
    assert "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python" in message
    # The whole line the operator reads.
    assert message == (
        "sipcluster: protobuf was imported with its %s backend before sipcluster.cluster.etcd, "
        "but etcd3 0.12 needs the pure-Python one: run with "
        "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python set in the environment" % backend)


def test_another_backend_asked_for_is_reported_not_overridden():
    environ = {protobuf.VARIABLE: "upb"}
    with pytest.raises(protobuf.ProtobufBackendError) as raised:
        protobuf.select_backend(environ, {})
    message = str(raised.value)
    assert "\n" not in message
    assert "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=upb is set" in message
    assert message == (
        "sipcluster: PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=upb is set, but etcd3 0.12 needs "
        "protobuf's pure-Python backend: unset it or set it to python")
    assert environ == {protobuf.VARIABLE: "upb"}


# -- fresh processes -------------------------------------------------------


@requires_etcd
def test_fresh_interpreter_imports_the_adapter_and_talks_to_etcd(etcd):
    script = textwrap.dedent("""
        import json, os, sys
        from sipcluster.cluster import etcd as adapter
        import etcd3
        import google.protobuf
        from google.protobuf.internal import api_implementation
        client = etcd3.client(sys.argv[1], int(sys.argv[2]), timeout=5)
        client.put("/pb/a", b"1")
        client.put("/pb/b", b"2")
        items, revision = adapter.read_prefix(client, "/pb/", page=1)
        print(json.dumps({"version": google.protobuf.__version__,
                          "backend": api_implementation.Type(),
                          "variable": os.environ.get(%r),
                          "get": client.get("/pb/a")[0].decode(),
                          "items": [[k, v.decode()] for k, v, _ in items]}))
        client.close()
    """ % protobuf.VARIABLE)
    result = run([sys.executable, "-c", script, etcd.host, str(etcd.port)], fresh_env())
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert version(out["version"]) >= FIXED
    assert out["backend"] == out["variable"] == "python"
    assert out["get"] == "1"
    assert out["items"] == [["/pb/a", "1"], ["/pb/b", "2"]]


@requires_etcd
def test_node_its_workers_and_the_command_need_no_variable(etcd, tmp_path, monkeypatch):
    # NodeProcess hands this process's environment to twistd.
    monkeypatch.delenv(protobuf.VARIABLE, raising=False)
    node = NodeProcess(next_host(), 5060, ["--store", "etcd", "--etcd", etcd.endpoint,
                                           "--domain", "example.test", "--workers", "2"], tmp_path)
    try:
        # Both processes loaded etcd3 and listen (a worker that could not
        # import it would have exited before).
        node.wait_log("(stateful) listening on", count=2)
        phones = [UDPAgent(next_host()) for _ in range(4)]
        try:
            # Answered 200 only after etcd committed them, by whichever
            # process the kernel gave each source.
            assert [register(p, node, "u%d" % i).status for i, p in enumerate(phones)] == [200] * 4
        finally:
            for p in phones:
                p.close()
        assert "Traceback" not in node.log(tail=None)
    finally:
        node.stop()
    result = run([sys.executable, "-m", "sipcluster.cli", "registrations", "--etcd", etcd.endpoint,
                  "--json"], fresh_env())
    assert result.returncode == 0, result.stderr
    assert sorted(r["aor"] for r in json.loads(result.stdout)) == [
        "sip:u%d@example.test" % i for i in range(4)]


IMPORT_FIRST = "import google.protobuf.descriptor; import sipcluster.cluster.etcd"


@pytest.mark.parametrize("args, says", [
    ([sys.executable, "-c", IMPORT_FIRST], "protobuf was imported with its upb backend"),
    ([sys.executable, "-c", "import sipcluster.cluster.etcd"], "=upb is set"),
    ([sys.executable, "-m", "sipcluster.cli", "leader", "--etcd", "http://127.0.0.1:9"], "=upb is set"),
    ([twistd(), "-n", "--pidfile=", "sipcluster", "--listen", "udp:%s:5060" % next_host()], "=upb is set"),
], ids=["imported-first", "import", "command", "node"])
def test_another_backend_stops_the_process_in_one_line(args, says):
    result = run(args, fresh_env(**{protobuf.VARIABLE: "upb"}), timeout=30)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sipcluster: ") and says in lines[0]
    assert "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION" in lines[0]


# -- dependencies ----------------------------------------------------------


def test_pip_check_is_clean_beside_opentelemetry_proto(tmp_path):
    """
    A fresh venv holding sipcluster and opentelemetry-proto: they resolve
    together, pip check finds nothing, and both load their generated
    modules in one process.  (From 1.28 it needs protobuf >= 5; an older one
    would let pip back off to a release that took protobuf 3.)
    """
    env_dir = tmp_path / "venv"
    # No pip of its own (ensurepip is slow): this interpreter's pip, aimed at it.
    venv.create(env_dir, with_pip=False)
    python = str(env_dir / "bin" / "python")
    pip = [sys.executable, "-m", "pip", "--python", python, "--disable-pip-version-check"]
    env = dict(os.environ)
    env.pop(protobuf.VARIABLE, None)
    env.pop("PYTHONPATH", None)
    install = subprocess.run(pip + ["install", "-q", "--no-compile", ROOT, "opentelemetry-proto >= 1.28"],
                             env=env, capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    check = subprocess.run(pip + ["check"], env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    script = ("import sipcluster.cluster.etcd, google.protobuf as p; "
              "from opentelemetry.proto.trace.v1 import trace_pb2; "
              "trace_pb2.Span.FromString(trace_pb2.Span(name='x').SerializeToString()); "
              "print(p.__version__)")
    loaded = subprocess.run([python, "-c", script], env=env, cwd=str(tmp_path),
                            capture_output=True, text=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr
    assert version(loaded.stdout.strip()) >= FIXED
