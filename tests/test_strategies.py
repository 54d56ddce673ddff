"""The DR strategies as real topologies, drilled through the CLI: what each one loses and how long
it takes, held against truths the drill sets (the copy delay, the scale-up, the DR capacity)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from support.scenario_copy import ROOT
from support.scenario_copy import copy_scenario
from support.drills import first, ops, run_drill

EDGE = 0.1
"""How far from a boundary an acknowledgement may land on either side of it: a commit's
acknowledgement travels back through the app and the link after the commit."""


def derive(shipped: str, tmp_path: Path, name: str, change=lambda d: None) -> Path:
    return copy_scenario(shipped, tmp_path, name, change)


def stopped_acked(events, summary, out):
    m = summary["measures"]
    lost = set(json.loads((out / "audit.json").read_text())["lost_keys"])
    acked = {}
    for op in ops(out):
        if op["op"] == "write" and op["ok"]:
            acked[op["key"]] = op
    return m, lost, acked


@pytest.mark.parametrize("copy_delay_s", [2])
def test_backup_restore_loses_what_the_copy_job_had_not_delivered(tmp_path, drillkit_cli, no_leftovers, copy_delay_s):
    """Region B restores from the base backup and the WAL segments copied before region A died:
    every write acknowledged before the newest restored commit survives, every one after it is lost,
    and the RPO is the copy delay plus at most one archive_timeout (1 s)."""
    path = derive("scenarios/document-processor/backup-restore-region-loss.yaml", tmp_path, "br",
                  lambda d: d["system"]["backups"].update(copy_delay=f"{copy_delay_s}m"))
    out = tmp_path / "out"
    code, summary, events = run_drill(drillkit_cli, path, out)
    assert code == 0, summary["reasons"]
    m, lost, acked = stopped_acked(events, summary, out)
    kill = first(events, "fault.injected", fault="region-loss")
    assert "backup-copy-A-B" in kill["killed"] and "postgres-B" not in kill["killed"]
    assert not any(e["kind"] == "replication.streaming" for e in events)   # there is no standby
    assert first(events, "backup.ready")["base_backups"] == ["base-1"]
    restored = first(events, "db.restored")
    assert restored["source"] == "backup copy" and restored["wal_segments"] > 0
    # every copy landed copy_delay after its file was written
    for e in events:
        if e["kind"] == "backup.copied":
            assert e["t"] - e["written_at"] >= copy_delay_s - 1e-3, e
    newest = restored["newest_record_at"]
    before = {k for k, op in acked.items() if op["t1"] < newest - EDGE}
    after = {k for k, op in acked.items() if newest + EDGE < op["t0"] and op["t1"] <= kill["t"]}
    assert after and after <= lost, "a write acknowledged after the newest restored commit survived"
    assert not before & lost, f"{len(before & lost)} writes acknowledged before it were lost"
    assert copy_delay_s - EDGE <= m["rpo_s"] <= copy_delay_s + 1 + 2 * EDGE, m["rpo_s"]
    # the RTO holds the restore and the scale-up: recovery comes after both ended
    phases = m["phases"]
    assert set(phases) >= {"restore", "scale-up", "dns"}
    assert m["rto_by_op"]["write"]["t_recovered"] >= phases["scale-up"]["end"]
    assert m["rto_s"] >= phases["restore"]["duration_s"] + phases["scale-up"]["duration_s"]
    report = (out / "report.html").read_text()
    assert "time scale 60" in report and "in production" in report


def test_pilot_light_has_no_dr_app_until_scaled_up_and_the_scale_up_is_inside_the_rto(
        tmp_path, drillkit_cli, no_leftovers):
    out = tmp_path / "out"
    code, summary, events = run_drill(drillkit_cli, ROOT / "scenarios/document-processor/pilot-light-region-loss.yaml",
                                      out)
    assert code == 0, summary["reasons"]
    m = summary["measures"]
    kill = first(events, "fault.injected", fault="region-loss")
    # region B had no app: its health check failed from the start, before any fault
    down = first(events, "health.change", region="B", healthy=False)
    assert down["t"] < kill["t"]
    scaled = first(events, "app.scaled", region="B")
    assert (scaled["before"], scaled["after"]) == (0, 2) and scaled["instances"] == ["app-B", "app-B-2"]
    assert not [o for o in ops(out) if o["region"] == "B" and o["t1"] < scaled["t"] and o["ok"]]
    up = first(events, "health.change", region="B", healthy=True)
    assert up["t"] >= scaled["t"] - 0.5   # its first healthy check ran once an instance answered
    assert m["rto_by_op"]["write"]["t_recovered"] >= m["phases"]["scale-up"]["end"]
    # streaming replication (async) keeps up with this load: a write can be lost only if A acknowledged
    # it in the last moments before it died, while its WAL was still on its way to B
    audit = json.loads((out / "audit.json").read_text())
    acks = [o for o in ops(out) if o["op"] == "write" and o["ok"] and o["key"] in set(audit["lost_keys"])]
    assert len(acks) == m["writes_lost"] and all(kill["t"] - o["t1"] < 0.05 for o in acks), acks
    assert m["rpo_s"] < 0.05


def test_a_dr_region_at_reduced_capacity_sheds_load_until_it_is_scaled_up(tmp_path, drillkit_cli, no_leftovers):
    """Region B runs 1 instance of 100 requests/s and takes the whole load after the failover
    without a scale-up: its answers beyond capacity are 503 `over capacity`, recorded as failures
    served by B, and the drill never recovers. The shipped phased activation scales B to full
    capacity first and passes."""
    path = derive("scenarios/region-loss.yaml", tmp_path, "small",
                  lambda d: d["system"].update(app={"instances": 2, "dr_instances": 1, "capacity": 100}))
    out = tmp_path / "small"
    code, summary, events = run_drill(drillkit_cli, path, out)
    assert code == 1, summary["reasons"]
    switched = first(events, "routing.switch", to="B")["t"]
    shed = [o for o in ops(out) if o["t0"] > switched + 1 and not o["ok"]]
    assert shed and all(o["status"] == 503 and o["region"] == "B" for o in shed)
    # the Locust users record the app's answer (the canary only its status)
    assert all("over capacity" in o["error"] for o in shed if o.get("client") != "canary")
    served = [o for o in ops(out) if o["t0"] > switched + 1 and o["ok"]]
    assert served, "B at capacity still serves what fits"
    assert "not recovered" in " ".join(summary["reasons"])

    out = tmp_path / "full"
    code, summary, events = run_drill(drillkit_cli, ROOT / "scenarios/e-commerce/warm-standby-phased-activation.yaml",
                                      out)
    assert code == 0, summary["reasons"]
    assert first(events, "app.scaled", region="B")["after"] == 3
    assert {"promote", "scale-up", "dns", "verify"} <= set(summary["measures"]["phases"])
    assert [c["name"] for c in summary["checks"] if c["kind"] == "phase"] == ["phase:promote", "phase:dns",
                                                                           "phase:verify"]
    assert next(c for c in summary["checks"] if c["name"] == "alarm:replica-lag")["passed"]


@pytest.mark.parametrize("experiment, change, says", [
    ("experiments/region-loss.json", lambda d: d["system"].update(strategy="backup-restore"),
     "region-loss.json method[3] 'promote-standby' calls promote_standby, which needs region B's standby; "
     "strategy backup-restore has none"),
    ("experiments/document-processor/backup-restore-region-loss.json", lambda d: None,
     "calls restore_region_from_backup, which restores a region that has only backup copies; "
     "strategy warm-standby has a standby"),
    ("experiments/document-processor/pilot-light-region-loss.json",
     lambda d: d["system"].update(strategy="pilot-light", app={"instances": 1, "max_instances": 1}),
     "calls scale_app_tier with 2 instances, over the quota system.app.max_instances (1)"),
])
def test_a_step_that_makes_no_sense_for_the_strategy_is_refused_before_anything_starts(
        tmp_path, drillkit_cli, no_leftovers, experiment, change, says):
    def edit(d):
        d["experiment"] = str(ROOT / experiment)
        change(d)

    path = derive("scenarios/region-loss.yaml", tmp_path, "bad", edit)
    proc = drillkit_cli("run", str(path), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr and str(path) in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


SEED_FOLDERS = ("document-processor", "roadcall", "chatbot", "e-commerce")
DRILLED_ABOVE = {"document-processor/backup-restore-region-loss.yaml", "document-processor/pilot-light-region-loss.yaml",
                 "e-commerce/warm-standby-phased-activation.yaml",
                 "chatbot/frontend-and-backend-failover.yaml",    # tests/test_two_endpoints.py
                 "roadcall/restore-test.yaml",                    # tests/test_restore_test.py
                 "document-processor/table-drop-pitr.yaml",       # tests/test_pitr.py
                 "document-processor/partition-conflicts.yaml",   # tests/test_active_active.py
                 "document-processor/clock-skew.yaml",
                 "document-processor/active-active-region-loss.yaml",
                 "roadcall/gameday-region-failover.yaml",         # tests/test_gameday.py
                 "e-commerce/gameday-phased-activation.yaml"}
TWINS = {"e-commerce/ransomware.yaml": "ransomware-object-restore.yaml",
         "e-commerce/corruption-pitr.yaml": "data-corruption-pitr.yaml",
         "e-commerce/failback.yaml": "failback.yaml"}
"""Seed scenarios that drill a generic scenario's experiment on its topology, with the seed's own
targets and time scale: the generic one is drilled (tests/test_objects.py, test_pitr.py,
test_failback.py), the seed's is validated here, which loads it and checks it fits its experiment."""


@pytest.mark.parametrize("scenario", sorted(
    str(p.relative_to(ROOT / "scenarios")) for folder in SEED_FOLDERS for p in (ROOT / "scenarios" / folder).glob("*.yaml")
    if str(p.relative_to(ROOT / "scenarios")) not in DRILLED_ABOVE | set(TWINS)))
def test_every_seed_scenario_passes(tmp_path, drillkit_cli, no_leftovers, scenario):
    code, summary, events = run_drill(drillkit_cli, ROOT / "scenarios" / scenario, tmp_path / "out")
    assert code == 0, summary["reasons"]
    assert summary["verdict"] == "pass"
    judged = [c for c in summary["checks"] if c["kind"] == "alarm"]
    for alarm in summary["measures"]["alarms"]:   # every alarm a seed states is judged, and holds
        if alarm["expect"] == "fire":
            assert alarm["raised_at"] is not None and alarm["time_to_detect_s"] is not None, alarm
        if alarm["metric"] == "unhealthy" and alarm["raised_at"] is not None:
            # ground truth from the router's own record: the health check turned, then `above` passed
            down = first(events, "health.change", region=alarm["region"], healthy=False)
            assert alarm["condition_held_at"] == pytest.approx(down["t"] + alarm["threshold"], abs=1e-5)
            assert alarm["raised_at"] >= alarm["condition_held_at"]
    assert all(c["passed"] for c in judged)


@pytest.mark.parametrize("seed,twin", sorted(TWINS.items()))
def test_a_seed_twin_runs_its_generic_scenarios_experiment_and_validates(seed, twin, drillkit_cli):
    doc, generic = (yaml.safe_load((ROOT / "scenarios" / name).read_text()) for name in (seed, twin))
    assert ((ROOT / "scenarios" / seed).parent / doc["experiment"]).resolve() == \
        ((ROOT / "scenarios" / twin).parent / generic["experiment"]).resolve()
    assert doc["system"]["strategy"] == generic["system"].get("strategy", "warm-standby")
    proc = drillkit_cli("validate", str(ROOT / "scenarios" / seed))
    assert proc.returncode == 0, proc.stderr


NOT_YET_USED = {
    # a restore to a stated time needs an absolute epoch; the accidental-drop scenario will use it
    ("drillkit.chaos.actions", "restore_to_point_in_time"),
    # weighted records: the emulated roadcall account (and its experiments) has a failover pair
    ("drillkit.chaos.aws", "set_record_weights"),
}


def test_every_built_action_and_probe_is_used_by_a_shipped_experiment():
    """A provider no experiment calls is untested by any drill; the known gaps are listed by name,
    and one that gets used must leave the list."""
    import importlib

    used = set()
    for path in (ROOT / "experiments").rglob("*.json"):
        experiment = json.loads(path.read_text())
        activities = [*(experiment.get("steady-state-hypothesis") or {}).get("probes", []),
                      *experiment.get("method", []), *experiment.get("rollbacks", [])]
        used |= {(a["provider"].get("module"), a["provider"].get("func")) for a in activities if "provider" in a}
    built = set()
    for name in ("actions", "failback", "objects", "observe", "aws"):
        module = importlib.import_module(f"drillkit.chaos.{name}")
        built |= {(module.__name__, n) for n, f in vars(module).items()
                  if hasattr(f, "needs") and getattr(f, "__module__", "") == module.__name__}
    assert built - used == NOT_YET_USED
