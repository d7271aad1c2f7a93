"""The CDR file: what is written, when it reaches the disk, rotation."""

import json
import os

from twisted.internet import defer
from twisted.internet.task import Clock

from sipcluster.accounting import CDR_FIELDS, CDRFile


def cdr_file(tmp_path):
    synced = []

    def in_thread(fn, *args):
        synced.append(args)
        return defer.succeed(fn(*args))
    clock = Clock()
    f = CDRFile(str(tmp_path / "cdr.jsonl"), clock, in_thread=in_thread)
    f.open()
    return clock, f, synced


RECORD = {"call_id": "a84b4c76e66710", "from": "sip:alice@example.test", "to": "sip:bob@example.test",
          "from_tag": "1928301774", "to_tag": "314159", "started": 100.0, "ended": 160.5,
          "duration": 60.5, "ended_by": "callee", "end_status": 200, "owner": "node-a",
          "ended_by_node": "node-b", "_mod": 12, "route_set": ["<sip:sip.example.test;lr>"]}


def test_one_json_line_per_record_readable_at_once(tmp_path):
    clock, f, synced = cdr_file(tmp_path)
    f(RECORD)
    f(dict(RECORD, call_id="second"))
    # Flushed: another process reads both lines before any fsync.
    lines = (tmp_path / "cdr.jsonl").read_text().splitlines()
    assert [json.loads(line)["call_id"] for line in lines] == ["a84b4c76e66710", "second"]
    record = json.loads(lines[0])
    assert sorted(record) == sorted(CDR_FIELDS)  # internal keys left out
    assert record["duration"] == 60.5 and record["adopted_from"] is None
    assert f.written == 2 and synced == []


def test_fsync_at_most_once_a_second_and_only_after_writes(tmp_path):
    clock, f, synced = cdr_file(tmp_path)
    clock.advance(1)
    assert synced == []
    f(RECORD)
    f(RECORD)
    clock.advance(1)
    assert len(synced) == 1
    clock.advance(1)
    assert len(synced) == 1


def test_a_file_moved_away_is_reopened_at_its_path(tmp_path):
    clock, f, synced = cdr_file(tmp_path)
    f(RECORD)
    os.rename(tmp_path / "cdr.jsonl", tmp_path / "cdr.jsonl.1")  # logrotate
    f(dict(RECORD, call_id="after"))
    assert len((tmp_path / "cdr.jsonl.1").read_text().splitlines()) == 1
    assert json.loads((tmp_path / "cdr.jsonl").read_text())["call_id"] == "after"


def test_close_syncs_and_stops_the_timer(tmp_path):
    clock, f, synced = cdr_file(tmp_path)
    f(RECORD)
    f.close()
    assert clock.getDelayedCalls() == []
    assert len((tmp_path / "cdr.jsonl").read_text().splitlines()) == 1
