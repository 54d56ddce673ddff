"""Measurements against truths we set: an outage of known length, a replication cut of known length."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_drill import first, ops, run_drill

TOLERANCE = 0.1


@pytest.mark.parametrize("seconds", [1, 3])
def test_rto_equals_the_injected_outage(tmp_path, drillkit_cli, no_leftovers, seconds):
    code, summary, events = run_drill(drillkit_cli, Path("scenarios/ground-truth-outage.yaml"), tmp_path / "out",
                                      "--var", f"outage_seconds={seconds}")
    assert code == 0, summary["reasons"]
    m = summary["measures"]
    injected = first(events, "fault.injected")
    cleared = first(events, "fault.cleared", fault="link-blackhole")
    assert cleared["lasted_s"] == pytest.approx(seconds, abs=0.01)
    assert m["t_fault"] == pytest.approx(injected["t"])
    assert abs(m["rto_s"] - seconds) <= TOLERANCE, m["rto_by_op"]
    for cls in ("write", "read"):
        assert abs(m["rto_by_op"][cls]["rto_s"] - seconds) <= TOLERANCE, (cls, m["rto_by_op"][cls])
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
    assert kill - cut == pytest.approx(seconds, abs=0.05)
    assert abs(m["rpo_s"] - seconds) <= TOLERANCE, (m["rpo_s"], m["lost_window"])

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
