"""summarize() is a pure function of the evidence: on drills recorded before the target seam was
introduced (drillkit bd3e49f, the sandbox driven directly), it gives the same bytes today."""

from __future__ import annotations

import json

import pytest

from drillkit.judge import summarize

DRILLS = ("data-corruption-pitr", "failback", "ground-truth-outage", "ground-truth-rpo", "partition",
          "ransomware-object-restore", "region-loss", "replica-lag-then-region-loss")


def _without_clock(text: str) -> str:
    """`measured_at` says when measure ran (the one field that is not a function of the evidence)."""
    return "\n".join(line for line in text.splitlines() if not line.startswith(' "measured_at": '))


ADDED_SINCE = ("rpo_by_store", "alarms_raised", "alarms", "time_to_detect_s", "phases", "rto_last_client_s",
               "clients", "clients_failed", "clients_not_recovered", "restore_tests", "backup_age_s",
               "restore_test_s", "restores_verified", "clock_offsets", "clock_uncertainty_s", "load_workers",
               "load_workers_lost", "t_fault_lo", "t_fault_hi", "t_fault_source", "not_measured", "faults_failed",
               "writes_lost_around_fault", "lost_around_fault_keys_first")
"""Measures added after the archive was recorded: every other byte must be the same."""
JUDGED_SINCE = ("experiment", "runbook_step", "rollback")
"""Check kinds added since (the experiment's own outcome was a reason, not a check); every check
gained its `kind`."""


@pytest.mark.parametrize("name", DRILLS)
def test_measure_reproduces_the_stored_drill_byte_for_byte(stored, name):
    expected = (stored / f"{name}.measure.json").read_text()
    again = json.loads(json.dumps(summarize(stored / name)))
    added = {k: again["measures"].pop(k) for k in ADDED_SINCE}
    assert all(c["passed"] for c in again["checks"] if c["kind"] in JUDGED_SINCE)  # they all completed
    again["checks"] = [{k: v for k, v in c.items() if k != "kind"} for c in again["checks"]
                       if c["kind"] not in JUDGED_SINCE]
    assert _without_clock(json.dumps(again, sort_keys=True, indent=1)) == _without_clock(expected)
    # the added measures agree with the stored ones: RPO per store, the worst of them rpo_s
    m = json.loads(expected)["measures"]
    stores = added["rpo_by_store"]
    assert max(v["rpo_s"] for v in stores.values()) == m["rpo_s"]
    assert sum(v["writes_lost"] for v in stores.values()) == m["writes_lost"]
    assert sum(v["writes_acked"] for v in stores.values()) == m["writes_acked"]
    assert added["alarms_raised"] == [] and added["alarms"] == [] and added["time_to_detect_s"] is None
    assert added["clock_offsets"] == [] and added["clock_uncertainty_s"] is None  # one host, one clock
    assert added["load_workers"] == [] and added["load_workers_lost"] == []  # one Locust process
    # v1 fault events carry no interval: the instant is known exactly, [t, t], and nothing is lost around it
    assert added["t_fault_lo"] == added["t_fault_hi"] == m["t_fault"] is not None
    assert added["not_measured"] is None and added["faults_failed"] == []
    assert added["writes_lost_around_fault"] == 0 and added["lost_around_fault_keys_first"] == []
    # every runbook step and rollback the journal holds is in a phase
    journal = json.loads((stored / name / "journal.json").read_text())
    timed = {a for p in added["phases"].values() for a in p["activities"]}
    assert {r["activity"]["name"] for r in journal["run"] + journal.get("rollbacks", [])} <= timed


def test_the_stored_drills_cover_losses_and_recoveries(stored):
    """The archive is a real test only if its drills lost writes and had outages to measure."""
    measured = {name: json.loads((stored / f"{name}.measure.json").read_text())["measures"] for name in DRILLS}
    assert sum(m["writes_lost"] for m in measured.values()) > 0
    assert any(m["rto_s"] and m["rto_s"] > 0.1 for m in measured.values())
    assert any(m["records_corrupt"] for m in measured.values()) or measured["data-corruption-pitr"]["writes_lost"]
