"""Real drills on the real sandbox, through the CLI as a subprocess, checked against truths we set."""

from __future__ import annotations

import json

import pytest

from support.drills import variant, run_drill, ops, first

EVIDENCE_FILES = ("events.jsonl", "lag.csv", "final_state.jsonl", "summary.json", "journal.json",
                  "scenario.yaml", "report.html")
MEASURES = ("rto_s", "rto_write_s", "rto_read_s", "rpo_s", "writes_acked", "writes_lost",
            "writes_lost_after_fault", "writes_recovered", "records_unexpected", "records_corrupt",
            "max_replication_lag_s", "t_fault")


def test_region_loss_drill_end_to_end(tmp_path, drillkit_cli, no_leftovers):
    out = tmp_path / "evidence"
    proc = drillkit_cli("run", "scenarios/region-loss.yaml", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in EVIDENCE_FILES:
        assert (out / name).is_file(), name
    assert list((out / "requests").glob("*.jsonl"))
    assert "RTO" in proc.stdout and "RPO" in proc.stdout and "lost writes" in proc.stdout

    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "pass"
    for name in MEASURES:
        assert name in summary["measures"], name
    m = summary["measures"]
    assert m["writes_acked"] > 100
    assert 0 < m["rto_s"] < 10

    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    streaming = first(events, "replication.streaming")
    assert streaming["standbys"][0]["state"] == "streaming"
    fault = first(events, "fault.injected", fault="region-loss")
    promoted = first(events, "db.promoted", region="B")
    assert streaming["t"] < fault["t"] < promoted["t"]
    assert first(events, "activity.end", name="promote-standby")["status"] == "succeeded"
    assert first(events, "routing.switch", to="B")["t"] > fault["t"]
    assert m["t_fault"] == pytest.approx(fault["t"])

    journal = json.loads((out / "journal.json").read_text())
    assert journal["status"] == "completed"
    final_keys = {json.loads(line)["key"] for line in (out / "final_state.jsonl").read_text().splitlines()}
    assert len(final_keys) >= m["writes_acked"] - m["writes_lost"]


def test_rto_grows_with_health_check_interval_times_threshold(tmp_path, drillkit_cli, no_leftovers):
    """DNS failover cannot be faster than interval × threshold + TTL: the measured RTO must show it."""
    fast = variant(tmp_path, "region-loss.yaml", "fast-dns",
                   system={"routing": {"interval": "200ms", "failure_threshold": 2, "ttl": "200ms"}})
    slow = variant(tmp_path, "region-loss.yaml", "slow-dns",
                   system={"routing": {"interval": "500ms", "failure_threshold": 5, "ttl": "200ms"}})
    _, fast_summary, _ = run_drill(drillkit_cli, fast, tmp_path / "fast")
    _, slow_summary, _ = run_drill(drillkit_cli, slow, tmp_path / "slow")
    fast_rto = fast_summary["measures"]["rto_s"]
    slow_rto = slow_summary["measures"]["rto_s"]
    assert fast_rto is not None and slow_rto is not None
    # Detection takes at least (threshold - 1) intervals after the region died: the first failed
    # check may come right after the kill, the last `threshold - 1` intervals later (0.2 s vs 2.0 s).
    # The kill happened at or after the fault's interval began (t_fault_lo), and RTO counts from
    # t_fault. The TTL adds nothing certain: a client's copy may expire right after the switch
    # (CI saw a fast RTO of 0.395 s against the 0.4 s this test once claimed).
    for summary, detection in ((fast_summary, 0.2), (slow_summary, 2.0)):
        m = summary["measures"]
        assert m["rto_s"] + (m["t_fault"] - m["t_fault_lo"]) >= detection, m
    assert slow_rto - fast_rto > 1.0, (fast_rto, slow_rto)


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_lost_writes_follow_replication_mode(tmp_path, drillkit_cli, no_leftovers, mode):
    """A lagging async replica loses the writes acknowledged during the lag; a sync one loses none."""
    scenario = variant(tmp_path, "replica-lag-then-region-loss.yaml", f"lag-{mode}",
                       system={"replication": {"mode": mode}}, targets={"rpo": "10s"})
    code, summary, events = run_drill(drillkit_cli, scenario, tmp_path / mode, "--var", "replication_cut_seconds=1.5")
    m = summary["measures"]
    cut = first(events, "fault.injected", fault="link-blackhole")
    kill = first(events, "fault.injected", fault="region-loss")
    assert cut.get("precondition") is True
    assert m["t_fault"] == pytest.approx(kill["t"])
    if mode == "async":
        assert m["writes_lost"] > 10
        # only responses already on their way when region A died may arrive after the fault
        audit = json.loads((tmp_path / mode / "audit.json").read_text())
        late = set(audit["lost_after_fault_keys"])
        acks = [op for op in ops(tmp_path / mode) if op["op"] == "write" and op["ok"] and op["key"] in late]
        assert all(op["t1"] - kill["t"] < 0.05 for op in acks), acks
        assert m["rpo_s"] == pytest.approx(kill["t"] - cut["t"], abs=0.25)
    else:
        assert m["writes_lost"] == 0
        assert m["rpo_s"] == 0
    assert code == 0, summary["reasons"]
