# -*- test-case-name: tests.test_auth -*-
"""
The users digest authentication checks against: per user, the realm and
one HA1 per algorithm (RFC 7616 3.4.2), never the password.  They live in
a JSON file on a single node (L{FileUsers}, re-read when it changes) or
in the cluster store under C{<prefix>/users/<user>} (L{StoreUsers},
followed, so every node sees a change as soon as etcd delivers it).

A record, in the file (an object of user name to record) and in the store
(one key per user)::

    {"realm": "example.test", "ha1": {"MD5": "...", "SHA-256": "..."}}
"""

import json
import os
import tempfile

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from sipcluster.cluster.store import StoreFollower
from sipcluster.policy import digest


def user_key(prefix, username):
    return "%s/users/%s" % (prefix.rstrip("/"), username)


def make_record(username, realm, password, algorithms=digest.STRENGTH):
    """The record of C{username}: what is stored instead of the password."""
    return {"realm": realm,
            "ha1": {a: digest.ha1(a, username, realm, password)
                    for a in algorithms if digest.available(a)}}


def valid_record(record):
    """C{record} when it has the shape above, else None (a hand-edited file, a stray key)."""
    if not isinstance(record, dict) or not isinstance(record.get("realm"), str):
        return None
    ha1 = record.get("ha1")
    if not isinstance(ha1, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in ha1.items()):
        return None
    return record


def read_users_file(path):
    """
    The users of the file at C{path}: user name to record.

    @raise OSError: it cannot be read.
    @raise ValueError: it is not a JSON object of records.
    """
    with open(path, "rb") as f:
        data = json.loads(f.read().decode("utf-8"))
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object of user name to record")
    users = {}
    for name, record in data.items():
        if valid_record(record) is None:
            raise ValueError("user %r: expected {\"realm\": ..., \"ha1\": {algorithm: hex}}" % name)
        users[name] = record
    return users


def write_users_file(path, users):
    """
    Replace the file at C{path} with C{users} at once (a temporary file
    renamed over it, readable by its owner only: HA1s are password
    equivalents for their realm), so a node never reads half of it.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".users-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(users, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class FileUsers:
    """
    Users from a file, read at construction (so a node, and check-config,
    refuse a file they cannot read) and again every C{interval} seconds
    once started when its modification time or size changed.  A file
    that became unreadable keeps the users last read (and is logged).

    @ivar ready: always True: the file was read.
    """

    log = Logger()
    ready = True

    def __init__(self, path, clock, interval=1.0):
        self.path = path
        self.clock = clock
        self.users = read_users_file(path)
        self._stamp = self._stat()
        self._loop = LoopingCall(self.reload)
        self._loop.clock = clock
        self.interval = interval

    def _stat(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def lookup(self, username):
        return self.users.get(username)

    def reload(self):
        stamp = self._stat()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.users = read_users_file(self.path)
        except (OSError, ValueError) as e:
            self.log.warn("users file {path}: {why}; keeping the {count} users read before",
                          path=self.path, why=e, count=len(self.users))
            return
        self.log.info("users file {path}: {count} users", path=self.path, count=len(self.users))

    def start(self):
        if not self._loop.running:
            self._loop.start(self.interval, now=False)

    def stop(self):
        if self._loop.running:
            self._loop.stop()


class StoreUsers(StoreFollower):
    """
    Users from the cluster store, followed (L{start} returns the Deferred
    of the follow, for L{sipcluster.services.Following}); lookups read
    the followed copy, never the store.

    @ivar ready: whether the first listing arrived; before it no request
        can be authenticated (they get 503, never a pass).
    """

    log = Logger()

    def __init__(self, store, prefix):
        self.store = store
        self.prefix = user_key(prefix, "")
        self.users = {}
        self.ready = False

    def lookup(self, username):
        return self.users.get(username)

    def start(self):
        return self._follow(self.prefix)


    def _record(self, value):
        try:
            record = json.loads(value.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, AttributeError):
            return None
        return valid_record(record)

    def _resync(self, items, revision):
        users = {}
        for key, value, _ in items:
            record = self._record(value)
            if record is not None:
                users[key[len(self.prefix):]] = record
        self.users = users
        self.ready = True

    def _events(self, events):
        for kind, key, value, _ in events:
            name = key[len(self.prefix):]
            record = self._record(value) if kind == "put" else None
            if record is None:
                self.users.pop(name, None)
            else:
                self.users[name] = record
