"""sipcluster user add|passwd|del|list on a users file, and its password policy."""

import json
import os
import stat

import pytest

from sipcluster import cli
from sipcluster.policy import digest
from sipcluster.policy.users import read_users_file

GOOD = "sip-demo-Plover-7319"


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def users(tmp_path):
    return str(tmp_path / "users.json")


def password_file(tmp_path, password):
    path = tmp_path / "pw"
    path.write_text(password + "\n")
    return str(path)


def test_add_stores_ha1_per_algorithm_never_the_password(tmp_path, users, capsys):
    code, out, _ = run(capsys, "user", "add", "alice", "--file", users, "--realm", "example.test",
                       "--password-file", password_file(tmp_path, GOOD))
    assert code == 0 and "alice: added in realm example.test" in out
    record = read_users_file(users)["alice"]
    assert record["realm"] == "example.test"
    assert record["ha1"] == {a: digest.ha1(a, "alice", "example.test", GOOD)
                             for a in ("SHA-512-256", "SHA-256", "MD5")}
    with open(users) as f:
        assert GOOD not in f.read()
    assert stat.S_IMODE(os.stat(users).st_mode) == 0o600


def test_add_prompts_twice_when_no_password_file(users, capsys, monkeypatch):
    answers = iter([GOOD, GOOD])
    prompts = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or next(answers))
    code, _, _ = run(capsys, "user", "add", "bob", "--file", users, "--realm", "example.test",
                     "--algorithms", "MD5")
    assert code == 0 and prompts == ["Password for bob: ", "Again: "]
    assert set(read_users_file(users)["bob"]["ha1"]) == {"MD5"}


def test_differing_prompts_change_nothing(users, capsys, monkeypatch):
    answers = iter([GOOD, GOOD + "x"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    code, _, err = run(capsys, "user", "add", "bob", "--file", users, "--realm", "r")
    assert code == 1 and "differ" in err and not os.path.exists(users)


def test_there_is_no_password_option(tmp_path, capsys):
    # Not even as an abbreviation of --password-file.
    with pytest.raises(SystemExit):
        cli.main(["user", "add", "bob", "--file", str(tmp_path / "u"), "--realm", "r",
                  "--password", GOOD])
    assert "unrecognized arguments: --password" in capsys.readouterr().err


@pytest.mark.parametrize("password", [GOOD, "sip-demo-Marten-4682", "correct horse battery staple"])
def test_good_passwords_pass(password):
    assert cli.password_problem(password, "alice", "example.test") is None


@pytest.mark.parametrize("password,why", [
    ("Short1!", "shorter than 10"),
    ("password123", "strength 0 of 4"),
    ("qwertyuiop", "strength"),
    ("alice-example.test", "user name or realm"),  # derived from the user name and realm
    ("alice12345alice", "user name or realm"),
    ("alice-sip-2024", "user name or realm"),  # zxcvbn alone scores it 4
])
def test_weak_common_or_derived_passwords_are_refused(tmp_path, users, capsys, password, why):
    code, _, err = run(capsys, "user", "add", "alice", "--file", users, "--realm", "example.test",
                       "--password-file", password_file(tmp_path, password))
    assert code == 1 and "password refused" in err and why in err, err
    assert not os.path.exists(users)


def test_passwd_del_and_list(tmp_path, users, capsys):
    pw = password_file(tmp_path, GOOD)
    run(capsys, "user", "add", "alice", "--file", users, "--realm", "example.test", "--password-file", pw)
    code, _, err = run(capsys, "user", "add", "alice", "--file", users, "--realm", "example.test",
                       "--password-file", pw)
    assert code == 1 and "exists" in err
    code, _, err = run(capsys, "user", "passwd", "carol", "--file", users, "--realm", "example.test",
                       "--password-file", pw)
    assert code == 1 and "no user 'carol'" in err
    new = password_file(tmp_path, "another-Heron-5521-pass")
    assert run(capsys, "user", "passwd", "alice", "--file", users, "--realm", "example.test",
               "--password-file", new)[0] == 0
    assert read_users_file(users)["alice"]["ha1"]["MD5"] == digest.ha1(
        "MD5", "alice", "example.test", "another-Heron-5521-pass")
    code, out, _ = run(capsys, "user", "list", "--file", users, "--json")
    assert json.loads(out) == [{"user": "alice", "realm": "example.test",
                                "algorithms": ["MD5", "SHA-256", "SHA-512-256"]}]
    assert run(capsys, "user", "del", "alice", "--file", users)[0] == 0
    assert run(capsys, "user", "del", "alice", "--file", users)[0] == 1
    assert run(capsys, "user", "list", "--file", users)[1] == "no users\n"


def test_config_gives_the_file_realm_and_algorithms(tmp_path, capsys):
    conf = tmp_path / "node.toml"
    conf.write_text('[sip]\ndomains = ["example.test"]\n[auth]\nenabled = true\n'
                    'users_file = "users.json"\nalgorithms = ["SHA-256"]\n')
    (tmp_path / "users.json").write_text("{}")
    assert run(capsys, "user", "add", "alice", "--config", str(conf),
               "--password-file", password_file(tmp_path, GOOD))[0] == 0
    record = read_users_file(str(tmp_path / "users.json"))["alice"]
    assert record["realm"] == "example.test" and list(record["ha1"]) == ["SHA-256"]


def test_nowhere_to_put_users_is_one_line(capsys):
    code, _, err = run(capsys, "user", "list")
    assert code == 1 and err.startswith("sipcluster: say where the users are")


def test_import_copies_the_hashes_as_they_are(tmp_path, users, capsys):
    run(capsys, "user", "add", "alice", "--file", users, "--realm", "example.test",
        "--password-file", password_file(tmp_path, GOOD))
    other = str(tmp_path / "other.json")
    code, out, _ = run(capsys, "user", "import", users, "--file", other)
    assert code == 0 and out.startswith("1 users imported into")
    assert read_users_file(other) == read_users_file(users)
