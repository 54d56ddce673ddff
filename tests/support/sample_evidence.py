"""Synthetic evidence folders with known figures, so the report can be tested and benchmarked
(bench/bench_report.py) without running a drill; a test fixture, not part of the package. The
summary states the figures the history was built to have; it is not computed by measure.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

T_START = 1732190400.0  # 2024-11-21 12:00:00 UTC


def make_drill(
    folder: str | Path,
    *,
    failing: bool = False,
    n_ops: int = 20_000,
    duration: float = 30.0,
    fault_at: float = 10.0,
    workers: int = 2,
    seed: int = 7,
    only_summary: bool = False,
    timeouts: bool = False,
) -> Path:
    """Write a complete drill folder. `failing` gives writes a 12.4 s outage against a 10 s RTO
    target and 37 lost writes against a target of 0; otherwise every target holds. With
    `timeouts`, failed operations wait out a 1 s client timeout (a blackholed region) instead of
    failing fast, so latencies span three decades and the latency chart goes logarithmic."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    t_fault = T_START + fault_at
    t_end = T_START + duration
    rto_w, rto_r = (12.4, 2.35) if failing else (3.2, 1.1)
    lost = 37 if failing else 0
    lost_window = [t_fault - 1.88, t_fault - 0.13] if lost else None
    summary = _summary(failing, t_fault, t_end, rto_w, rto_r, lost, lost_window, n_ops)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    if only_summary:
        return folder
    _write_ops(folder, n_ops, t_fault, t_end, rto_w, rto_r, workers, seed, timeouts)
    _write_events(folder, t_fault, t_end, rto_w)
    _write_lag(folder, t_fault, t_end)
    _write_journal(folder, t_fault, t_end)
    (folder / "scenario.yaml").write_text(_SCENARIO)
    (folder / "provenance.json").write_text(json.dumps({
        "operator": "sre-oncall", "host": "gameday-runner-1",
        "started_utc": "2024-11-21T12:00:00.000Z", "ended_utc": "2024-11-21T12:00:30.000Z",
        "versions": {"drillkit": "0.1.0", "chaostoolkit": "1.19.0", "chaostoolkit-lib": "1.44.0",
                     "locust": "2.40.1", "postgresql": "16.4", "python": "3.11.9"},
        "git_commit": "3f2c9a1e0b7d4c6a8e9f1b2c3d4e5f6a7b8c9d0e",
        "command": "drillkit run scenarios/region-loss.yaml",
    }, indent=2))
    return folder


def _summary(failing, t_fault, t_end, rto_w, rto_r, lost, lost_window, n_ops):
    """Shaped like measure.py's output: checks named after their target keys, targets parsed."""
    lost_keys = [f"w-{i:07d}" for i in range(lost)][:10]
    rpo = 1.88 if lost else 0.0
    checks = [
        {"name": "rto", "target": 10.0, "measured": max(rto_w, rto_r), "passed": rto_w <= 10,
         "message": f"RTO {max(rto_w, rto_r):.3f} s {'within' if rto_w <= 10 else 'exceeds'} "
                    "target 10 s"},
        {"name": "rpo", "target": 2.0, "measured": rpo, "passed": True,
         "message": f"RPO {rpo:.3f} s within target 2 s"},
        {"name": "max_lost_writes", "target": 0, "measured": lost, "passed": lost == 0,
         "message": f"lost writes: {lost} {'within' if lost == 0 else 'exceeds'} limit 0"},
        {"name": "max_corrupt", "target": 0, "measured": 0, "passed": True,
         "message": "corrupt records: 0 within limit 0"},
        {"name": "recovered", "target": True, "measured": True, "passed": True,
         "message": "every op class recovered"},
    ]

    def op(rto, res, failures):
        return {"rto_s": rto, "resolution_s": res, "t_recovered": t_fault + rto,
                "t_first_failure": t_fault + 0.004, "t_last_failure": t_fault + rto - 0.03,
                "failures": failures, "recovered": True}

    return {
        "scenario": "region-loss",
        "verdict": "fail" if failing else "pass",
        "reasons": [c["message"] for c in checks if not c["passed"]],
        "measures": {
            "rto_s": max(rto_w, rto_r), "rto_write_s": rto_w, "rto_read_s": rto_r,
            "rto_by_op": {"write": op(rto_w, 0.021, 5123), "read": op(rto_r, 0.017, 812)},
            "rto_resolution_s": 0.021, "not_recovered": [],
            "rpo_s": rpo,
            "writes_acked": n_ops // 2 - 5123, "writes_failed": 5123, "writes_lost": lost,
            "writes_lost_after_fault": 0, "writes_recovered": 3, "records_unexpected": 0,
            "records_corrupt": 0, "lost_keys_first": lost_keys, "lost_after_fault_keys_first": [],
            "corrupt_keys_first": [], "lost_window": lost_window,
            "availability": 0.8261 if failing else 0.9734,
            "reads_ok": n_ops // 2 - 812, "reads_failed": 812, "ops_total": n_ops,
            "max_replication_lag_s": 0.412, "max_replication_lag_bytes": 18432,
            "t_fault": t_fault, "t_start": T_START, "t_end": t_end,
        },
        "targets": {"rto": "10s", "rpo": "2s", "max_lost_writes": 0, "max_corrupt": 0},
        "checks": checks,
        "notes": ["synthetic drill built by tests/support/sample_evidence.py"],
    }


def _write_ops(folder, n, t_fault, t_end, rto_w, rto_r, workers, seed, timeouts=False):
    rng = np.random.default_rng(seed)
    t0 = np.sort(rng.uniform(T_START, t_end, n))
    is_write = rng.random(n) < 0.5
    t1 = t0 + rng.gamma(2.0, 0.004, n)
    down = np.where(is_write, t_fault + rto_w, t_fault + rto_r)
    failed = (t1 > t_fault) & (t0 < down - 0.05)
    t1 = np.where(failed & ~is_write, t1 + 0.05, t1)
    if timeouts:
        t1 = np.where(failed, t0 + 1.0, t1)
    keys = pd.Series(np.arange(n)).map("k{:07d}".format)
    df = pd.DataFrame({
        "t0": t0, "t1": t1, "op": np.where(is_write, "write", "read"), "key": keys,
        "ok": ~failed, "status": np.where(failed, 503, 200),
        "region": np.where(t0 > t_fault + 2.0, "b", "a"),
        "checksum": "5e" * 32, "error": np.where(failed, "HTTP 503", None),
    })
    (folder / "requests").mkdir(exist_ok=True)
    for w in range(workers):
        df.iloc[w::workers].to_json(folder / "requests" / f"worker-{w}.jsonl", orient="records",
                                    lines=True, double_precision=6)


def _write_events(folder, t_fault, t_end, rto_w):
    ev = [
        (T_START - 4.0, "stage.start", {"stage": "sandbox_up"}),
        (T_START, "drill.start", {}),
        (t_fault - 0.3, "activity.start", {"name": "lose-region-a", "type": "action"}),
        (t_fault, "fault.injected", {"fault": "region_loss", "region": "a"}),
        (t_fault + 0.012, "activity.end", {"name": "lose-region-a", "type": "action",
                                           "status": "succeeded"}),
        (t_fault + 1.52, "health.change", {"region": "a", "healthy": False}),
        (t_fault + 1.6, "activity.start", {"name": "promote-standby", "type": "action"}),
        (t_fault + 1.98, "routing.published", {"to": "b"}),
        (t_fault + 2.0, "routing.switch", {"from": "a", "to": "b"}),
        (t_fault + 2.7, "db.promoted", {"region": "b"}),
        (t_fault + 2.71, "activity.end", {"name": "promote-standby", "type": "action",
                                          "status": "succeeded"}),
        (t_fault + 2.8, "activity.start", {"name": "check-writes-served", "type": "probe"}),
        (t_fault + 2.95, "activity.end", {"name": "check-writes-served", "type": "probe",
                                          "status": "succeeded"}),
        (t_end - 2.0, "fault.cleared", {"fault": "region_loss"}),
        (t_end, "drill.end", {}),
    ]
    with open(folder / "events.jsonl", "w") as fh:
        for t, kind, extra in ev:
            fh.write(json.dumps({"t": t, "kind": kind, **extra}) + "\n")


def _write_lag(folder, t_fault, t_end):
    t = np.arange(T_START, t_end, 0.1)
    lag = 0.02 + 0.01 * np.sin(t) ** 2 + np.where((t > t_fault - 2) & (t < t_fault), 0.39, 0.0)
    lag = np.where(t > t_fault, np.nan, lag)
    pd.DataFrame({"t": t, "region": "b", "replay_lag_s": lag,
                  "lag_bytes": np.nan_to_num(lag * 44_000).astype(int)}).to_csv(
        folder / "lag.csv", index=False)


def _iso(t: float) -> str:
    return pd.Timestamp(t, unit="s").strftime("%Y-%m-%dT%H:%M:%S.%f")


def _write_journal(folder, t_fault, t_end):
    def act(name, typ, start, dur, status="succeeded"):
        return {"activity": {"name": name, "type": typ}, "status": status, "start": _iso(start),
                "end": _iso(start + dur), "duration": dur, "output": None}

    journal = {
        "chaoslib-version": "1.44.0", "status": "completed", "deviated": False,
        "start": _iso(T_START), "end": _iso(t_end), "duration": t_end - T_START,
        "steady_states": {
            "before": {"steady_state_met": True, "probes": [act("app-healthy", "probe", T_START, 0.02)]},
            "after": {"steady_state_met": True, "probes": [act("app-healthy", "probe", t_end - 1, 0.02)]},
            "during": [],
        },
        "run": [act("lose-region-a", "action", t_fault - 0.3, 0.312),
                act("promote-standby", "action", t_fault + 1.6, 1.11),
                act("check-writes-served", "probe", t_fault + 2.8, 0.15)],
        "rollbacks": [act("restore-region-a", "action", t_end - 2.0, 0.4)],
    }
    (folder / "journal.json").write_text(json.dumps(journal, indent=2))


_SCENARIO = """\
name: region-loss
description: The primary region is lost under load; traffic fails over to the warm standby.
experiment: ../experiments/region-loss.json
system:
  kind: sandbox
  strategy: warm-standby
  routing: {policy: dns, interval: 500ms, failure_threshold: 3, ttl: 1s}
  replication: {mode: async}
load:
  locustfile: ../loadtests/dr_workload.py
  users: 20
  warmup: 3s
  duration: 15s
targets:
  rto: 10s
  rpo: 2s
  max_lost_writes: 0
  max_corrupt: 0
stable: 2s
"""
