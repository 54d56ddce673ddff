"""Phases, alarms and per-store RPO, measured and judged on hand-built evidence whose answers are
known exactly; and the live alarm evaluator on samples of known values."""

from __future__ import annotations

import json

import pytest

from drillkit.evidence import append_event, read_events
from drillkit.judge import checks, summarize
from drillkit.run.sampler import AlarmEvaluator
from drillkit.scenario.schema import Alarm
from drillkit.targets.capabilities import LagSample

from support.histories import W, drill, op

approx = lambda x: pytest.approx(x, abs=1e-6)  # noqa: E731


def with_scenario(folder, **keys):
    scenario = json.loads((folder / "scenario.yaml").read_text())
    scenario.update(keys)
    (folder / "scenario.yaml").write_text(json.dumps(scenario))
    return folder


def activity(name, started, duration, status="succeeded", phase=None, t_end=None):
    from datetime import datetime, timezone

    ev = {"t": t_end if t_end is not None else started + duration + 0.05, "kind": "activity.end",
          "name": name, "type": "action", "status": status, "duration": duration,
          "started": datetime.fromtimestamp(started, timezone.utc).isoformat()}
    return ev | ({"phase": phase} if phase else {})


BASE = 1_700_000_000.0   # activity times are ISO timestamps: use real epoch seconds


def base_drill(tmp_path, events=(), lag=None, targets=None, **scenario):
    ops = [W(BASE + 1, BASE + 1.1, "k1"), W(BASE + 30, BASE + 30.1, "k2")]
    evs = [{"t": BASE, "kind": "drill.start"}, *events]
    folder = drill(tmp_path, ops, fault=BASE + 10, events=evs, lag=lag, targets=targets)
    return with_scenario(folder, **scenario) if scenario else folder


def by_kind(summary, kind):
    return [c for c in summary["checks"] if c["kind"] == kind]


# ---------------------------------------------------------------- phases


def test_phases_group_marked_activities_span_first_start_to_last_end(tmp_path):
    events = [activity("kill-region-a", BASE + 10, 0.2),
              activity("promote-standby", BASE + 11, 1.5, phase="promote"),
              activity("standby-accepts-writes", BASE + 13, 0.25, phase="promote"),   # a 0.5 s gap counts
              activity("switch-dns", BASE + 14, 0.75)]
    s = summarize(base_drill(tmp_path, events, targets={"phases": {"promote": "2s", "switch-dns": "0.5s"}}))
    p = s["measures"]["phases"]
    assert list(p) == ["kill-region-a", "promote", "switch-dns"]
    assert p["promote"]["duration_s"] == approx(2.25)
    assert p["promote"]["activities"] == ["promote-standby", "standby-accepts-writes"]
    assert p["promote"]["start"] == approx(BASE + 11) and p["promote"]["end"] == approx(BASE + 13.25)
    assert p["switch-dns"]["duration_s"] == approx(0.75)
    held = {c["subject"]: c for c in by_kind(s, checks.PHASE)}
    assert held["promote"]["name"] == "phase:promote" and held["promote"]["passed"] is False
    assert held["promote"]["measured"] == approx(2.25) and held["promote"]["target"] == 2.0
    assert held["promote"]["message"] == "phase 'promote' 2.250 s exceeds target 2 s"
    assert held["switch-dns"]["passed"] is False
    assert s["verdict"] == "fail" and "phase 'promote' 2.250 s exceeds target 2 s" in s["reasons"]


def test_a_phase_within_budget_passes_and_one_that_failed_fails_whatever_its_time(tmp_path):
    events = [activity("promote-standby", BASE + 11, 0.5, phase="promote"),
              activity("verify", BASE + 12, 0.1, status="failed")]
    s = summarize(base_drill(tmp_path, events, targets={"phases": {"promote": "1s", "verify": "1s"}}))
    held = {c["subject"]: c for c in by_kind(s, checks.PHASE)}
    assert held["promote"]["passed"] is True
    assert held["verify"]["passed"] is False
    assert held["verify"]["message"] == "phase 'verify' did not succeed (failed); budget 1 s"


def test_a_budgeted_phase_that_never_ran_fails_as_not_run(tmp_path):
    s = summarize(base_drill(tmp_path, [], targets={"phases": {"restore": "5s"}}))
    (c,) = by_kind(s, checks.PHASE)
    assert c["passed"] is False and c["measured"] is None and c["message"] == "phase 'restore' not run; target 5 s"


# ---------------------------------------------------------------- alarms

LAG = ("t,region,replay_lag_s,lag_bytes,object_backlog,object_backlog_age_s\n"
       + "".join(f"{BASE + t},b,{v},0,,\n" for t, v in
                 [(10.0, 0.0), (10.2, 0.15), (10.4, 0.35), (10.6, 0.55), (10.8, 0.75), (11.0, 0.0)])
       + f"{BASE + 10.5},b,,,4,0.3\n{BASE + 10.7},b,,,9,0.5\n")


def raised(t, name, **f):
    return {"t": BASE + t, "kind": "alarm.raised", "alarm": name, **f}


def test_alarm_onset_is_the_first_sample_over_less_the_excess_and_time_to_detect_follows(tmp_path):
    """Lag 0.55 at +10.6 with threshold 0.5: it crossed 0.5 at +10.55, raised at +10.6 (that sample)."""
    alarms = [{"name": "db-lag", "metric": "replication_lag", "above": "500ms", "expect": "fire"},
              {"name": "backlog", "metric": "object_backlog", "above": 5, "region": "b"},
              {"name": "quiet-one", "metric": "replication_lag", "above": "5s", "expect": "quiet"}]
    events = [raised(10.6, "db-lag"), {"t": BASE + 11.0, "kind": "alarm.cleared", "alarm": "db-lag"},
              raised(10.7, "backlog")]
    s = summarize(base_drill(tmp_path, events, lag=LAG, targets={"max_time_to_detect": "40ms"}, alarms=alarms))
    a = {x["alarm"]: x for x in s["measures"]["alarms"]}
    assert a["db-lag"]["condition_held_at"] == approx(BASE + 10.55)
    assert a["db-lag"]["raised_at"] == approx(BASE + 10.6) and a["db-lag"]["cleared_at"] == approx(BASE + 11.0)
    assert a["db-lag"]["time_to_detect_s"] == approx(0.05) and a["db-lag"]["raised_after_fault_s"] == approx(0.6)
    assert a["db-lag"]["peak"] == approx(0.75) and a["db-lag"]["raised_count"] == 1
    # a count metric: the first sample over it, to the sampling interval
    assert a["backlog"]["condition_held_at"] == approx(BASE + 10.7) and a["backlog"]["time_to_detect_s"] == approx(0)
    assert a["backlog"]["peak"] == 9
    assert a["quiet-one"]["condition_held_at"] is None and a["quiet-one"]["raised_at"] is None
    assert s["measures"]["time_to_detect_s"] == approx(0.05)
    alarm_checks = {c["subject"]: c for c in by_kind(s, checks.ALARM)}
    assert set(alarm_checks) == {"db-lag", "quiet-one"}          # no `expect`: measured, not judged
    assert alarm_checks["db-lag"]["passed"] and alarm_checks["quiet-one"]["passed"]
    (ttd,) = by_kind(s, checks.TIME_TO_DETECT)
    assert ttd["passed"] is False and ttd["message"] == "time to detect 0.050 s exceeds target 0.04 s"


def test_the_onset_is_never_before_the_previous_sample(tmp_path):
    """A jump from 0 to 2.0 in one sample interval: the series says nothing earlier than the last 0."""
    lag = ("t,region,replay_lag_s,lag_bytes,object_backlog,object_backlog_age_s\n"
           f"{BASE + 10},b,0.0,0,,\n{BASE + 10.2},b,2.0,0,,\n")
    alarms = [{"name": "db-lag", "metric": "replication_lag", "above": "0.5s"}]
    s = summarize(base_drill(tmp_path, [raised(10.2, "db-lag")], lag=lag, alarms=alarms))
    (a,) = s["measures"]["alarms"]
    assert a["condition_held_at"] == approx(BASE + 10.0) and a["time_to_detect_s"] == approx(0.2)


def test_an_alarm_that_should_fire_and_never_does_fails_the_drill(tmp_path):
    alarms = [{"name": "db-lag", "metric": "replication_lag", "above": "0.5s", "expect": "fire"},
              {"name": "never", "metric": "replication_lag", "above": "2s", "expect": "fire"},
              {"name": "noisy", "metric": "replication_lag", "above": "0.1s", "expect": "quiet"}]
    s = summarize(base_drill(tmp_path, [raised(10.4, "noisy"), raised(10.9, "noisy")], lag=LAG, alarms=alarms))
    c = {x["subject"]: x for x in by_kind(s, checks.ALARM)}
    assert c["db-lag"]["message"] == "alarm 'db-lag' never raised, though replication_lag exceeded 0.5 (peak 0.75)"
    assert c["never"]["message"] == "alarm 'never' never raised: replication_lag never exceeded 2 (peak 0.75)"
    assert c["noisy"]["message"] == "alarm 'noisy' raised 2 time(s); it should stay quiet"
    assert not any(x["passed"] for x in c.values())
    # the quiet alarm's condition (lag > 0.1) held from +10.15; raised at +10.4
    assert s["verdict"] == "fail" and s["measures"]["time_to_detect_s"] == approx(0.25)


def test_the_live_evaluator_raises_and_clears_once_per_crossing_per_region(tmp_path):
    events = tmp_path / "events.jsonl"
    ev = AlarmEvaluator([Alarm(name="db-lag", metric="replication_lag", above="0.5s"),
                         Alarm(name="b-only", metric="replication_lag", above=0.1, region="b")], events)
    for t, region, lag in [(1, "b", 0.2), (2, "c", 0.6), (3, "b", 0.6), (4, "b", 0.9), (5, "b", 0.5),
                           (6, "b", None), (7, "b", 0.7)]:
        ev.observe(LagSample(t=t, region=region, replay_lag_s=lag, lag_bytes=None))
    got = [(e["kind"], e["alarm"], e["region"], e["t"]) for e in read_events(tmp_path)]
    assert got == [("alarm.raised", "b-only", "b", 1), ("alarm.raised", "db-lag", "c", 2),
                   ("alarm.raised", "db-lag", "b", 3), ("alarm.cleared", "db-lag", "b", 5),
                   ("alarm.raised", "db-lag", "b", 7)]


# ---------------------------------------------------------------- per-store RPO


def test_per_store_rpo_targets_each_hold_their_own_store(tmp_path):
    ops = [W(8.0, 8.1, "r1"), W(9.6, 9.7, "r2"), op(7.4, 7.5, "obj_write", "obj/o1", ck="c-o1"),
           op(11.0, 11.1, "obj_write", "obj/o4", ck="c-o4")]
    s = summarize(drill(tmp_path, ops, {"r1": "c-r1", "obj/o4": "c-o4"},
                        targets={"rpo_by_store": {"records": "0.5s", "objects": "2s"}}))
    c = {x["subject"]: x for x in by_kind(s, checks.RPO_STORE)}
    assert c["records"]["measured"] == approx(0.3) and c["records"]["passed"] is True
    assert c["objects"]["measured"] == approx(2.5) and c["objects"]["passed"] is False
    assert c["objects"]["name"] == "rpo:objects"
    assert c["objects"]["message"] == "RPO of objects 2.500 s exceeds target 2 s"


def test_a_store_never_written_has_rpo_zero_and_an_unaudited_one_is_unknown(tmp_path):
    s = summarize(drill(tmp_path / "a", [W(8.0, 8.1, "r1")], targets={"rpo_by_store": {"objects": "1s"}}))
    (c,) = by_kind(s, checks.RPO_STORE)
    assert c["measured"] == 0.0 and c["passed"] is True
    s = summarize(drill(tmp_path / "b", [W(8.0, 8.1, "r1")], False, targets={"rpo_by_store": {"records": "1s"}},
                        events=[{"t": 12, "kind": "drill.aborted", "reason": "test"}]))
    (c,) = by_kind(s, checks.RPO_STORE)
    assert c["measured"] is None and c["message"] == "RPO of records not audited; target 1 s"
    assert s["verdict"] == "aborted"


# ---------------------------------------------------------------- the order and kinds of checks


def test_checks_come_in_one_order_each_with_a_kind(tmp_path):
    events = [activity("promote-standby", BASE + 11, 0.5)]
    alarms = [{"name": "db-lag", "metric": "replication_lag", "above": "0.5s", "expect": "fire"}]
    s = summarize(base_drill(tmp_path, events + [raised(10.6, "db-lag")], lag=LAG, alarms=alarms,
                             targets={"rto": "5s", "rpo_by_store": {"records": "1s"},
                                      "phases": {"promote-standby": "1s"}}))
    assert [(c["name"], c["kind"]) for c in s["checks"]] == [
        ("experiment", "experiment"), ("rto", "rto"), ("rpo:records", "rpo_store"),
        ("phase:promote-standby", "phase"), ("alarm:db-lag", "alarm"), ("recovered", "recovered")]
    assert s["verdict"] == "pass"


# ---------------------------------------------------------------- RTO per op class


def test_rto_by_op_holds_each_class_to_its_own_target_and_a_class_never_recorded_fails(tmp_path):
    ops = [op(BASE + 1, BASE + 1.1, "page", "/site/index.html"), W(BASE + 1, BASE + 1.1, "k1"),
           op(BASE + 10.2, BASE + 10.5, "page", "/site/index.html", ok=False),
           op(BASE + 10.6, BASE + 10.9, "page", "/site/index.html"),            # page down 10.5 → 10.9
           W(BASE + 11, BASE + 12, "k2", ok=False), W(BASE + 13, BASE + 13.5, "k3"),   # write down 12 → 13.5
           op(BASE + 20, BASE + 20.1, "page", "/site/index.html"), W(BASE + 20, BASE + 20.1, "k4")]
    folder = drill(tmp_path, ops, fault=BASE + 10, targets={"rto_by_op": {"page": "1s", "write": "3s", "obj_read": "1s"}})
    s = summarize(folder)
    got = {c["subject"]: c for c in by_kind(s, checks.RTO_OP)}
    assert got["page"]["measured"] == approx(0.9) and got["page"]["passed"]
    assert got["write"]["measured"] == approx(3.5) and not got["write"]["passed"]
    assert got["obj_read"]["measured"] is None and not got["obj_read"]["passed"]
    assert "no obj_read op" in got["obj_read"]["message"]


# ---------------------------------------------------------------- restore tests


def restore_event(point, t, **over):
    ev = {"t": t, "kind": "restore.tested", "base_backup": "base-backup", "backup_taken_at": t - 5.0,
          "backup_age_s": 4.0, "restore_point": point, "point_at": t - 1.0, "wal_segments": 3,
          "rows_expected": 10, "rows_restored": 10, "digest_expected": "d", "digest_restored": "d",
          "corrupt_restored": 0, "writes_held_s": 0.002, "restore_s": 0.8, "took_s": 1.0, "torn_down": True,
          "error": None}
    return ev | over


def test_restore_tests_are_judged_each_and_the_oldest_backup_and_slowest_restore_held_to_targets(tmp_path):
    events = [restore_event("p1", BASE + 5),
              restore_event("p2", BASE + 8, rows_restored=9, digest_restored="x", backup_age_s=7.0),
              restore_event("p3", BASE + 9, error="the restored cluster exited (1) during recovery",
                            rows_restored=0, digest_restored="", restore_s=2.5),
              restore_event("p4", BASE + 12, torn_down=False)]
    s = summarize(base_drill(tmp_path, events, targets={"max_backup_age": "5s", "max_restore_time": "2s"}))
    m = s["measures"]
    assert [t["verified"] for t in m["restore_tests"]] == [True, False, False, True]
    assert m["backup_age_s"] == approx(7.0) and m["restore_test_s"] == approx(2.5)
    assert m["restores_verified"] is False
    got = {c["subject"]: c for c in by_kind(s, checks.RESTORE_TEST)}
    assert got["p1"]["passed"] and not any(got[p]["passed"] for p in ("p2", "p3", "p4"))
    assert "9 rows restored of 10, digests differ" in got["p2"]["message"]
    assert "did not restore" in got["p3"]["message"] and "not torn down" in got["p4"]["message"]
    assert not by_kind(s, checks.BACKUP_AGE)[0]["passed"] and not by_kind(s, checks.RESTORE_TIME)[0]["passed"]
    assert s["verdict"] == "fail"


def test_a_backup_age_target_without_a_restore_test_is_not_measured(tmp_path):
    s = summarize(base_drill(tmp_path, targets={"max_backup_age": "1h"}))
    c = by_kind(s, checks.BACKUP_AGE)[0]
    assert c["measured"] is None and not c["passed"] and "not measured" in c["message"]


# ---------------------------------------------------------------- the last client back


def test_the_last_client_back_is_each_clients_first_success_after_its_own_last_failure(tmp_path):
    t = BASE + 10   # the fault
    ops = [W(t - 5, t - 4.9, "a-1") | {"client": "a"}, W(t - 5, t - 4.9, "b-1") | {"client": "b"},
           W(t + 0.5, t + 1.5, "a-2", ok=False) | {"client": "a"},
           W(t + 1.6, t + 1.7, "a-3") | {"client": "a"},                    # a is back at +1.7
           W(t + 0.5, t + 1.5, "b-2", ok=False) | {"client": "b"},
           W(t + 2.0, t + 3.0, "b-3", ok=False) | {"client": "b"},        # b still on the old backend
           W(t + 3.2, t + 3.4, "b-4") | {"client": "b"},                    # b is back at +3.4
           W(t + 0.2, t + 0.3, "c-1") | {"client": "c"},                    # c never failed
           W(t + 20, t + 20.1, "x-1")]                                      # names no client
    m = summarize(drill(tmp_path, ops, fault=t))["measures"]
    assert m["rto_last_client_s"] == approx(3.4) and m["clients"] == 3 and m["clients_failed"] == 2
    assert m["clients_not_recovered"] == []


def test_a_client_that_never_gets_service_back_leaves_the_last_client_unknown(tmp_path):
    t = BASE + 10
    ops = [W(t - 5, t - 4.9, "a-1") | {"client": "a"}, W(t + 1, t + 2, "a-2", ok=False) | {"client": "a"},
           W(t + 1, t + 1.1, "b-1") | {"client": "b"}]
    m = summarize(drill(tmp_path, ops, fault=t))["measures"]
    assert m["rto_last_client_s"] is None and m["clients_not_recovered"] == ["a"]


# ---------------------------------------------------------------- event alarms: backup age, unhealthy


def test_backup_age_and_unhealthy_alarms_hold_exactly_threshold_after_the_span_that_outlasted_it(tmp_path):
    events = [{"t": BASE + 2.0, "kind": "db.backup", "took_s": 0.5},             # a backup done at +2.5
              {"t": BASE + 20.0, "kind": "db.backup", "took_s": 0.5},            # the next, done at +20.5
              {"t": BASE + 11.0, "kind": "health.change", "region": "A", "healthy": False},
              {"t": BASE + 13.0, "kind": "health.change", "region": "A", "healthy": True},
              {"t": BASE + 12.0, "kind": "health.change", "region": "B", "healthy": False},   # never back
              raised(7.7, "backup-old"), raised(12.2, "a-down"), raised(29.0, "b-down")]
    alarms = [{"name": "backup-old", "metric": "backup_age", "above": "5s", "expect": "fire"},
              {"name": "a-down", "metric": "unhealthy", "above": "1s", "region": "A", "expect": "fire"},
              {"name": "a-long", "metric": "unhealthy", "above": "3s", "region": "A", "expect": "quiet"},
              {"name": "b-down", "metric": "unhealthy", "above": "15s", "region": "B", "expect": "fire"}]
    events.append({"t": BASE + 30.0, "kind": "drill.end"})
    s = summarize(base_drill(tmp_path, events, alarms=alarms))
    a = {x["alarm"]: x for x in s["measures"]["alarms"]}
    assert a["backup-old"]["condition_held_at"] == approx(BASE + 7.5)
    assert a["backup-old"]["time_to_detect_s"] == approx(0.2)
    assert a["backup-old"]["peak"] == approx(18.0)
    assert a["a-down"]["condition_held_at"] == approx(BASE + 12.0) and a["a-down"]["peak"] == approx(2.0)
    assert a["a-long"]["condition_held_at"] is None
    assert a["b-down"]["condition_held_at"] == approx(BASE + 27.0)   # open until the last event, +30
    assert all(c["passed"] for c in by_kind(s, checks.ALARM)), by_kind(s, checks.ALARM)


def test_the_live_evaluator_reads_event_metrics_from_the_events_recorded_so_far(tmp_path):
    events = tmp_path / "events.jsonl"
    ev = AlarmEvaluator([Alarm(name="stale-backup", metric="backup_age", above="2s"),
                         Alarm(name="a-down", metric="unhealthy", above="1s", region="A")], events)
    ev.tick(100.0)                                         # no backup yet: no age, no alarm
    append_event(events, "db.backup", t=100.0, took_s=0.5)
    append_event(events, "health.change", t=101.0, region="A", healthy=False)
    for now in (101.0, 102.0, 102.6, 103.0):
        ev.tick(now)
    append_event(events, "health.change", t=103.5, region="A", healthy=True)
    append_event(events, "db.backup", t=104.0, took_s=0.2)
    ev.tick(104.5)
    got = [(e["kind"], e["alarm"], e["t"]) for e in read_events(tmp_path) if e["kind"].startswith("alarm.")]
    assert got == [("alarm.raised", "stale-backup", 102.6), ("alarm.raised", "a-down", 102.6),
                   ("alarm.cleared", "stale-backup", 104.5), ("alarm.cleared", "a-down", 104.5)]
