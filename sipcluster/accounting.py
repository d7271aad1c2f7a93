# -*- test-case-name: tests.test_accounting -*-
"""
Call-detail records in a file: one JSON object per line for every dialog
that ended (answered calls; their BYE passed this node, or none came in
time), and for failed call attempts when accounting.failed_calls is set.

Each record is written and flushed as the dialog ends, so it survives the
node crashing; the file is fsynced (in a thread, never on the reactor) at
most once a second, so it survives the machine crashing a second later.
A file moved away (logrotate without copytruncate) is noticed at the next
record and a new one is opened at the configured path.
"""

import json
import os

from twisted.internet import threads
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from sipcluster.schema import ConfigSection, CrossKeyError, Key, show

def _check(values, sections):
    """The CDR file's folder must exist and be writable: found at start-up, not at the first call."""
    path = values["cdr_file"]
    if path:
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise CrossKeyError("accounting.cdr_file", "expected a file in a writable directory, got %s" % show(path))


CONFIG = ConfigSection("accounting", {
    "failed_calls": Key(bool, False, "Also write a CDR (state failed, with the final status and the set-up time) for every call attempt answered with a failure: busy, cancelled, not found, refused. Needs node.mode = stateful."),
    "cdr_file": Key(str, "", "File the CDR of every answered call that ends through this node is appended to, one JSON object per line (flushed at once, fsynced within a second; reopened when moved by logrotate). Empty: CDRs go only to the node log (namespace sipcluster.cdr). Needs node.mode = stateful."),
}, check=_check)


# started: when the 2xx to the INVITE passed (the call was answered);
# ended_by: "caller" or "callee", who sent the BYE.
# state: "terminated" (a BYE was answered), "expired" (no BYE seen within
# cluster.dialog_max_s; ended_by and end_status are then null) or "failed"
# (an attempt answered with end_status >= 300; started is the INVITE's
# arrival, setup_s how long until its final response, duration 0).
CDR_FIELDS = ("call_id", "from", "to", "from_tag", "to_tag", "started", "ended", "duration",
              "state", "ended_by", "end_status", "setup_s", "owner", "ended_by_node", "adopted_from")


class CDRFile:
    """
    A dialog-end hook (C{DialogRegistry.on_end}) appending CDRs to C{path}.

    @ivar written: records written since start.
    """

    log = Logger()

    def __init__(self, path, reactor, sync_interval=1.0, in_thread=None):
        self.path = path
        self.reactor = reactor
        # How fsync gets off the reactor thread (tests on a Clock pass
        # their own).
        self._in_thread = in_thread or (
            lambda fn, *a: threads.deferToThreadPool(reactor, reactor.getThreadPool(), fn, *a))
        self.written = 0
        self._file = None
        self._dirty = False
        self._syncing = False
        self._sync = LoopingCall(self._fsync)
        self._sync.clock = reactor
        self.sync_interval = sync_interval

    def open(self):
        """Open (append) the file; an OSError here should stop the node."""
        self._file = open(self.path, "a", encoding="utf-8")
        self._inode = os.fstat(self._file.fileno()).st_ino
        if not self._sync.running:
            self._sync.start(self.sync_interval, now=False)

    def close(self):
        if self._sync.running:
            self._sync.stop()
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def __call__(self, record):
        line = json.dumps({k: record.get(k) for k in CDR_FIELDS}, sort_keys=True)
        try:
            self._reopen_if_moved()
            self._file.write(line + "\n")
            self._file.flush()
        except (OSError, ValueError, AttributeError) as e:
            # Never lose it silently: the node log has every CDR too.
            self.log.error("cannot write CDR to {path}: {why}: {cdr}", path=self.path, why=e, cdr=line)
            return
        self.written += 1
        self._dirty = True

    def _reopen_if_moved(self):
        try:
            moved = os.stat(self.path).st_ino != self._inode
        except FileNotFoundError:
            moved = True
        if moved:
            old, self._file = self._file, None
            if old is not None:
                old.close()
            self.open()

    def _fsync(self):
        if not self._dirty or self._syncing or self._file is None:
            return None
        self._dirty = False
        self._syncing = True
        fd = self._file.fileno()

        def done(result):
            self._syncing = False
            return None

        def failed(failure):
            self.log.warn("cannot fsync {path}: {why}", path=self.path, why=failure.getErrorMessage())
        return self._in_thread(os.fsync, fd).addErrback(failed).addBoth(done)
