"""
A single node (no etcd) follows its dialogs: call admission and CDRs work
as in a cluster.  SIPp places the calls; the CDR file and the 503 are what
is checked.
"""

import json

from tests.integration.nodes import requires_sipp

pytestmark = requires_sipp


def test_single_node_limits_dialogs_and_writes_a_cdr_per_answered_call(net):
    cdr = net.tmp / "cdr.jsonl"
    config = net.tmp / "node.toml"
    config.write_text('[cluster]\nmax_dialogs = 2\n[accounting]\ncdr_file = "%s"\n'
                      'failed_calls = true\n' % cdr)
    node = net.node("--config", str(config))
    node.wait_log("call admission: at most 2 dialogs")
    uas = net.sipp("uas", "-sn", "uas", "-p", "5070")
    # Three calls of 2 s placed 0.1 s apart: the third finds two up.
    uac = net.sipp("uac", "-sn", "uac", "%s:5070" % net.host, "-rsa", "%s:5060" % net.host,
                   "-p", "5080", "-m", "3", "-r", "10", "-d", "2000")
    assert uac.wait() != 0  # one call failed
    uas.stop()
    finals = [m.status for m in uac.received() if m.status and m.status >= 200]
    assert sorted(finals) == [200, 200, 200, 200, 503]  # 2 INVITE + 2 BYE answered, 1 refused
    refused = [m for m in uac.received() if m.status == 503][0]
    assert refused.reason == "Service Unavailable (call limit reached)"
    invites = [m for m in uas.received() if getattr(m, "method", None) == "INVITE"]
    assert len(invites) == 2
    records = [json.loads(line) for line in cdr.read_text().splitlines()]
    (failed,) = [r for r in records if r["state"] == "failed"]
    assert failed["call_id"] == refused.call_id and failed["end_status"] == 503
    assert failed["duration"] == 0 and 0 <= failed["setup_s"] < 0.5
    records = [r for r in records if r is not failed]
    assert len(records) == 2
    assert {r["call_id"] for r in records} == {m.call_id for m in invites}
    for r in records:
        assert 1.8 < r["duration"] < 3.5  # SIPp's 2 s pause
        assert abs(r["ended"] - r["started"] - r["duration"]) < 0.01
        assert r["ended_by"] == "caller" and r["end_status"] == 200 and r["state"] == "terminated"
        assert r["owner"] == r["ended_by_node"] == "test-%s" % net.host
        assert r["from_tag"] and r["to_tag"] and r["to"].startswith("sip:service@")
