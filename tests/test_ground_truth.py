"""Measurements against truths we set: an outage of known length, a replication cut of known length."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.drills import first, ops, run_drill, served_again

TOLERANCE = 0.1


@pytest.mark.parametrize("seconds", [1, 3])
def test_rto_equals_the_injected_outage(tmp_path, drillkit_cli, no_leftovers, seconds):
    out = tmp_path / "out"
    code, summary, events = run_drill(drillkit_cli, Path("scenarios/ground-truth-outage.yaml"), out,
                                      "--var", f"outage_seconds={seconds}")
    assert code == 0, summary["reasons"]
    m = summary["measures"]
    injected = first(events, "fault.injected")
    cleared = first(events, "fault.cleared", fault="link-blackhole")
    assert cleared["lasted_s"] == pytest.approx(seconds, abs=0.01)
    assert m["t_fault"] == pytest.approx(injected["t"])
    back = served_again(out, cleared["t"]) - injected["t"]
    for cls in ("write", "read"):
        rto = m["rto_by_op"][cls]["rto_s"]
        # never back before the link healed; back within TOLERANCE of when the fixed-interval
        # canary (the harness's clock) first got an answer again: the outage, plus however long the
        # system, on this machine at this moment, took to serve once its link healed
        assert cleared["lasted_s"] - 0.005 <= rto <= back + TOLERANCE, (cls, m["rto_by_op"][cls], back)
    assert m["rto_s"] == max(m["rto_by_op"][c]["rto_s"] for c in ("write", "read"))
    assert m["writes_lost"] == 0 and m["records_corrupt"] == 0


@pytest.mark.parametrize("seconds", [1, 3])
def test_rpo_equals_the_replication_cut_and_the_lost_writes_are_those_acked_inside_it(
        tmp_path, drillkit_cli, no_leftovers, seconds):
    out = tmp_path / "out"
    code, summary, events = run_drill(drillkit_cli, Path("scenarios/ground-truth-rpo.yaml"), out,
                                      "--var", f"replication_cut_seconds={seconds}")
    assert code == 0, summary["reasons"]
    m = summary["measures"]
    cut = first(events, "fault.injected", fault="link-blackhole")["t"]
    kill = first(events, "fault.injected", fault="region-loss")["t"]
    assert kill - cut >= seconds - 0.005  # the cut lasts `seconds`, longer on a busy machine
    assert abs(m["rpo_s"] - (kill - cut)) <= TOLERANCE, (m["rpo_s"], m["lost_window"], kill - cut)

    lost = set(json.loads((out / "audit.json").read_text())["lost_keys"])
    acked = {op["key"]: op["t1"] for op in ops(out) if op["op"] == "write" and op["ok"]}
    # the edges, TOLERANCE wide: at the cut, a commit whose WAL left just before it while its
    # acknowledgement was still travelling (survives), or whose WAL had not left yet (lost);
    # at the kill, an acknowledgement in flight when region A died (lost)
    inside = {k for k, t1 in acked.items() if cut + TOLERANCE < t1 <= kill}
    survived = inside - lost
    assert inside and not survived, f"{len(survived)} writes acked during the cut survived"
    for key in lost - inside:
        assert cut - TOLERANCE < acked[key] <= cut + TOLERANCE or kill < acked[key] < kill + 0.05, \
            (key, acked[key] - cut)


def test_a_lag_alarm_fires_one_sample_after_the_lag_passes_its_threshold_and_a_phase_over_budget_fails(
        tmp_path, drillkit_cli, no_leftovers):
    """A 3 s replication cut with a lag alarm at 1 s: the condition truly held from the last commit
    the standby replayed (just before the cut) + 1 s, and the live evaluator raises it at the first
    lag.csv sample over 1 s. An alarm at 30 s that should fire never does, and a 1 ms budget on the
    promotion is missed: the drill fails naming both, and the history shows the phase."""
    import yaml

    from support.scenario_copy import ROOT

    threshold, cut_s = 1.0, 3
    scenario = yaml.safe_load((ROOT / "scenarios/ground-truth-rpo.yaml").read_text())
    scenario["experiment"] = str(ROOT / "experiments/replica-lag-then-region-loss.json")
    scenario["load"]["locustfile"] = str(ROOT / "loadtests/dr_workload.py")
    scenario["alarms"] = [{"name": "db-lag", "metric": "replication_lag", "above": f"{threshold}s", "expect": "fire"},
                          {"name": "db-lag-30s", "metric": "replication_lag", "above": "30s", "expect": "fire"}]
    scenario["targets"]["phases"] = {"promote-standby": "1ms"}
    path = tmp_path / "alarm.yaml"
    path.write_text(yaml.safe_dump(scenario))
    out = tmp_path / "drills" / "alarm"
    code, summary, events = run_drill(drillkit_cli, path, out, "--var", f"replication_cut_seconds={cut_s}")
    assert code == 1, summary["reasons"]
    m = summary["measures"]
    promote = m["phases"]["promote-standby"]
    assert summary["reasons"] == [
        f"phase 'promote-standby' {promote['duration_s']:.3f} s exceeds target 0.001 s",
        "alarm 'db-lag-30s' never raised: replication_lag never exceeded 30 "
        f"(peak {m['alarms'][1]['peak']:g})"], summary["reasons"]

    cut = first(events, "fault.injected", fault="link-blackhole")["t"]
    alarm = m["alarms"][0]
    raised = [e for e in events if e["kind"] == "alarm.raised" and e["alarm"] == "db-lag"]
    assert len(raised) == 1 and alarm["raised_at"] == pytest.approx(raised[0]["t"], abs=1e-6)
    # the evaluator raised it at the first sample over the threshold, one sampling gap after the one before
    import csv

    rows = [r for r in csv.DictReader((out / "lag.csv").open()) if r["region"] == "B" and r["replay_lag_s"]]
    i = next(i for i, r in enumerate(rows) if float(r["replay_lag_s"]) > threshold)
    assert float(rows[i]["t"]) == pytest.approx(alarm["raised_at"], abs=1e-6)
    gap = float(rows[i]["t"]) - float(rows[i - 1]["t"])
    assert 0 <= alarm["time_to_detect_s"] <= gap + 1e-6
    # ground truth: the lag passed its threshold `threshold` after the standby's last replayed commit,
    # which was sent no earlier than the last write acknowledged before the cut that the standby
    # holds (its commit lies between that write's send and its answer), and committed before the cut
    final = {r["key"]: r["checksum"] for r in map(json.loads, (out / "final_state.jsonl").read_text().splitlines())}
    replayed = [op for op in ops(out) if op["op"] == "write" and op["ok"] and op["t1"] < cut
                and final.get(op["key"]) == op["checksum"]]
    last_sent = max(op["t0"] for op in replayed)
    assert last_sent + threshold <= alarm["condition_held_at"] <= cut + threshold + 0.01, (alarm, last_sent, cut)
    assert m["time_to_detect_s"] == alarm["time_to_detect_s"]
    checks = {c["name"]: c for c in summary["checks"]}
    assert checks["alarm:db-lag"]["passed"] and checks["alarm:db-lag"]["kind"] == "alarm"
    assert not checks["phase:promote-standby"]["passed"]
    junit = (out / "junit.xml").read_text()
    assert 'name="test_check[phase:promote-standby]"' in junit and 'name="test_check[alarm:db-lag]"' in junit
    report = (out / "report.html").read_text()
    assert "Runbook phases and their budgets" in report and "time to detect" in report.lower()

    history = drillkit_cli("history", str(tmp_path / "drills"))
    assert history.returncode == 0, history.stderr
    assert f"promote-standby {promote['duration_s']:.3f} s / 0.001 s ✗" in history.stdout, history.stdout
    page = (tmp_path / "drills" / "history.html").read_text()
    assert "Runbook phases" in page and "promote-standby" in page
