"""Tests for sipcluster.config and the check-config command."""

import os

import pytest

from sipcluster import cli, config
from sipcluster.config import ConfigError, ListenAddress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(tmp_path, text):
    path = tmp_path / "node.toml"
    path.write_text(text)
    return str(path)


def test_defaults_make_a_single_node():
    cfg = config.load(None)
    assert cfg.node.mode == "stateful"
    assert [str(a) for a in cfg.sip.listen] == ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]
    assert cfg.store.backend == "memory"
    assert cfg.node.id  # the host name
    assert cfg.source is None


def test_file_values_and_overrides(tmp_path):
    path = write(tmp_path, '[node]\nmode = "stateless"\n[timers]\nt1_ms = 100\n[sip]\ndomains = ["Example.TEST"]\n')
    cfg = config.load(path, {"timers.t1_ms": 250})
    assert cfg.node.mode == "stateless"
    assert cfg.timers.t1_ms == 250
    assert cfg.sip.domains == ["example.test"]
    assert cfg.source == path


@pytest.mark.parametrize("text,fragment", [
    ('[node]\nmode = "fast"\n', 'node.mode: expected one of "stateful", "stateless", got "fast"'),
    ('[timers]\nt1_ms = "500"\n', 'timers.t1_ms: expected an integer from 10 to 60000, got "500"'),
    ('[timers]\nt1_ms = 5\n', "timers.t1_ms: expected an integer from 10 to 60000, got 5"),
    ('[sip]\nrecord_route = "yes"\n', "sip.record_route: expected true or false"),
    ('[sip]\nlisten = ["udp:127.0.0.1"]\n', "sip.listen: item 0"),
    ('[sip]\nlisten = []\n', "sip.listen: expected at least one listen address"),
    ('[sip]\nlistne = []\n', "unknown key sip.listne"),
    ('[sipp]\n', "unknown section [sipp]"),
    ('[node\n', "TOML syntax error"),
    ('node = 1\n', "node: expected a table"),
    ('[store]\netcd_endpoints = ["http://10.0.0.1:2379", "etcd2"]\n',
     'store.etcd_endpoints: expected http://host:port, got "etcd2"'),
    ('[store]\netcd_endpoints = []\n', "store.etcd_endpoints: expected at least one etcd endpoint"),
    ('[accounting]\ncdr_file = "/nonexistent/dir/cdr.json"\n',
     'accounting.cdr_file: expected a file in a writable directory, got "/nonexistent/dir/cdr.json"'),
])
def test_errors_name_file_key_and_expectation(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        config.load(path)
    message = str(e.value)
    assert message.startswith(path + ": ")
    assert fragment in message
    assert "\n" not in message


def test_override_error_names_command_line():
    with pytest.raises(ConfigError) as e:
        config.load(None, {"node.mode": "chaotic"})
    assert str(e.value).startswith("command line: node.mode:")


@pytest.mark.parametrize("text,fragment", [
    ('[store]\nbackend = "etcd"\n[node]\nmode = "stateless"\n[cluster]\nmax_dialogs = 10\n',
     'cluster.max_dialogs: needs node.mode = "stateful" (the dialogs stage follows transactions)'),
    ('[node]\nmode = "stateless"\n[accounting]\ncdr_file = "cdr.json"\n',
     'accounting.cdr_file: needs node.mode = "stateful"'),
    ('[node]\nmode = "stateless"\n[accounting]\nfailed_calls = true\n',
     'accounting.failed_calls: needs node.mode = "stateful"'),
])
def test_stages_needing_transactions_are_refused_on_a_stateless_node(tmp_path, text, fragment):
    # The file is valid key by key; the node it describes cannot run.
    from sipcluster.node import check
    path = write(tmp_path, text)
    cfg = config.load(path)
    with pytest.raises(ConfigError) as e:
        check(cfg)
    message = str(e.value)
    assert message.startswith(path + ": ") and fragment in message and "\n" not in message
    # check-config says the same, in one line.
    assert cli.main(["check-config", path]) == 2


def test_dialog_limit_needs_a_stateful_node(tmp_path):
    from sipcluster.node import check
    cfg = config.load(write(tmp_path, '[cluster]\nmax_dialogs = 10\n'))
    assert cfg.cluster.max_dialogs == 10
    check(cfg)
    with pytest.raises(ConfigError) as e:
        check(config.load(None, {"cluster.max_dialogs": 5, "node.mode": "stateless"}))
    assert str(e.value).startswith("command line: cluster.max_dialogs: needs")


def test_etcd_endpoints_from_the_command_line_comma_separated():
    from sipcluster.tap import Options
    options = Options()
    options.parseOptions(["--store", "etcd", "--etcd", "http://127.0.0.2:2379, http://127.0.0.3:2379"])
    assert options.config.store.etcd_endpoints == ["http://127.0.0.2:2379", "http://127.0.0.3:2379"]


def test_unreadable_file():
    with pytest.raises(ConfigError) as e:
        config.load("/nonexistent/node.toml")
    assert "/nonexistent/node.toml: cannot read" in str(e.value)


def test_listen_address_parsing():
    assert ListenAddress.parse("UDP:[::1]:5060") == ListenAddress("udp", "::1", 5060)
    assert str(ListenAddress.parse("tcp:0.0.0.0:5061")) == "tcp:0.0.0.0:5061"
    for bad in ["sctp:1.2.3.4:5060", "udp:host", "udp:host:0", "udp::5060", "udp:[::1]"]:
        with pytest.raises(ValueError):
            ListenAddress.parse(bad)


def test_every_key_is_documented_in_readme():
    with open(os.path.join(ROOT, "README.rst")) as f:
        readme = f.read()
    for section, keys in config.SCHEMA.items():
        for name in keys:
            assert "``%s.%s``" % (section, name) in readme, "%s.%s undocumented" % (section, name)


def test_example_file_is_valid_and_complete():
    path = os.path.join(ROOT, "ops", "node.example.toml")
    cfg = config.load(path)
    assert cfg.node.id == "node-a"
    import tomllib
    with open(path, "rb") as f:
        data = tomllib.load(f)
    for section, keys in config.SCHEMA.items():
        assert set(data[section]) == set(keys), section


def test_check_config_command(tmp_path, capsys):
    good = write(tmp_path, "[node]\nworkers = 2\n")
    assert cli.main(["check-config", good]) == 0
    assert cli.main(["check-config", good, "--json"]) == 0
    assert '"workers": 2' in capsys.readouterr().out
    bad = str(tmp_path / "bad.toml")
    with open(bad, "w") as f:
        f.write("[node]\nworkers = 0\n")
    assert cli.main(["check-config", bad]) == 2
    assert "node.workers: expected an integer from 1 to 64, got 0" in capsys.readouterr().err


def test_cluster_commands_fail_clearly_without_etcd(capsys):
    for command in (["status"], ["registrations"], ["calls"], ["leader"], ["drain", "x"], ["undrain", "x"]):
        assert cli.main(command + ["--etcd", "http://127.0.0.1:1", "--timeout", "0.5"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("sipcluster: cannot reach etcd at http://127.0.0.1:1") and err.count("\n") == 1


# -- the cluster's DNS zone (sipcluster.cluster) ----------------------------------

DNS_ZONE = {"cluster.name": "sip.example.test", "store.backend": "etcd"}


@pytest.mark.parametrize("listen", [
    ["127.0.0.2:5353"], ["[::1]:5353"], ["127.0.0.2:1", "127.0.0.2:65535"],
])
def test_dns_listen_takes_numeric_host_port_items(listen):
    assert config.load(None, dict(DNS_ZONE, **{"cluster.dns_listen": listen})).cluster.dns_listen == listen


@pytest.mark.parametrize("item,says", [
    ("127.0.0.2", 'expected "host:port" items, e.g. "127.0.0.2:5353", got "127.0.0.2"'),
    (":5353", 'expected "host:port" items, e.g. "127.0.0.2:5353", got ":5353"'),
    ("127.0.0.2:53a", 'expected "host:port" items, e.g. "127.0.0.2:5353", got "127.0.0.2:53a"'),
    ("127.0.0.2:0", 'expected "host:port" items, e.g. "127.0.0.2:5353", got "127.0.0.2:0"'),
    ("127.0.0.2:65536", 'expected "host:port" items, e.g. "127.0.0.2:5353", got "127.0.0.2:65536"'),
    ("dns.example.test:5353", 'expected a numeric host to listen on, got "dns.example.test:5353"'),
])
def test_dns_listen_refuses_what_it_cannot_listen_on(item, says):
    with pytest.raises(ConfigError) as e:
        config.load(None, dict(DNS_ZONE, **{"cluster.dns_listen": ["127.0.0.2:5353", item]}))
    assert str(e.value) == "command line: cluster.dns_listen: " + says


def test_dns_listen_needs_the_zone_name_and_the_cluster_store():
    with pytest.raises(ConfigError) as e:
        config.load(None, {"cluster.dns_listen": ["127.0.0.2:5353"], "store.backend": "etcd"})
    assert str(e.value) == "command line: cluster.dns_listen: needs cluster.name (the zone to serve)"
    with pytest.raises(ConfigError) as e:
        config.load(None, {"cluster.dns_listen": ["127.0.0.2:5353"], "cluster.name": "sip.example.test"})
    assert str(e.value) == ('command line: cluster.dns_listen: needs store.backend = "etcd" '
                            "(the records list the cluster's live nodes)")
    # Without a DNS server, neither is needed.
    assert config.load(None, {"cluster.dns_regions": ["eu=10.1.0.0/16"]}).cluster.dns_listen == []


@pytest.mark.parametrize("regions", [["eu=10.1.0.0/16"], [" eu = 10.1.0.1/16 ", "us=2001:db8::/32"]])
def test_dns_regions_take_region_cidr_items(regions):
    assert config.load(None, {"cluster.dns_regions": regions}).cluster.dns_regions == regions


@pytest.mark.parametrize("item", ["eu", "=10.1.0.0/16", " =10.1.0.0/16", "eu=10.1.0.0/33", "eu=europe",
                                  "eu=x=10.1.0.0/16"])
def test_dns_regions_refuse_anything_else(item):
    with pytest.raises(ConfigError) as e:
        config.load(None, {"cluster.dns_regions": ["eu=10.1.0.0/16", item]})
    assert str(e.value) == ('command line: cluster.dns_regions: expected "region=cidr" items, '
                            'e.g. "eu=10.1.0.0/16", got "%s"' % item)
