"""The restore test (the seeds' monthly restore test): the latest backup restored into a scratch
cluster beside production, verified against the primary at a restore point, timed, torn down."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from support.scenario_copy import copy_scenario
from support.drills import first, ops, run_drill

from drillkit.scenario.schema import SandboxSpec
from drillkit.targets.sandbox import postgres as pg
from drillkit.targets.sandbox.system import Sandbox

EDGE = 0.1


def test_the_restore_test_verifies_the_backup_while_production_runs_and_leaves_nothing(
        tmp_path, drillkit_cli, no_leftovers):
    # besides the shipped 24 h alarm, one at 20 min (2 s of drill) that the 3 s pause after the backup trips
    path = copy_scenario("scenarios/roadcall/restore-test.yaml", tmp_path, "restore-test", lambda d: d["alarms"].append(
        {"name": "backup-stale", "metric": "backup_age", "above": "20m", "expect": "fire"}))
    out = tmp_path / "out"
    code, summary, events = run_drill(drillkit_cli, path, out)
    assert code == 0, summary["reasons"]
    m = summary["measures"]
    tested = first(events, "restore.tested")
    backup = first(events, "db.backup")
    assert tested["error"] is None and tested["torn_down"]
    assert tested["rows_restored"] == tested["rows_expected"] > 0
    assert tested["digest_restored"] == tested["digest_expected"] and tested["corrupt_restored"] == 0
    # ground truth from the clients' records: the point holds every write acknowledged before the
    # writes were held off, and none that started after the point
    held_from = tested["point_at"] - tested["writes_held_s"]
    writes = [op for op in ops(out) if op["op"] == "write"]
    before = sum(1 for op in writes if op["ok"] and op["t1"] < held_from)
    started = sum(1 for op in writes if op["t0"] < tested["point_at"])
    assert before <= tested["rows_expected"] <= started
    assert backup["t"] <= tested["backup_taken_at"] + EDGE and tested["backup_age_s"] > 0
    assert m["backup_age_s"] == round(tested["backup_age_s"], 6)
    assert m["restores_verified"] is True
    names = {c["name"]: c for c in summary["checks"]}
    assert names[f"restore_test:{tested['restore_point']}"]["passed"]
    assert names["max_backup_age"]["passed"] and names["max_restore_time"]["passed"]
    # production ran on: nothing lost, no failed op; no fault, so no RTO to speak of (not 0: not measured)
    assert m["writes_lost"] == 0 and m["rto_s"] is None and m["not_measured"]
    assert not [e for e in events if e["kind"] == "fault.injected"]
    # the backup-age alarms: exact from the backup's end, raised live after it
    alarms = {a["alarm"]: a for a in m["alarms"]}
    assert alarms["daily-backup"]["raised_at"] is None
    stale = alarms["backup-stale"]
    assert stale["condition_held_at"] == pytest.approx(backup["t"] + backup["took_s"] + 2.0, abs=1e-5)
    assert stale["raised_at"] >= stale["condition_held_at"] and stale["time_to_detect_s"] >= 0
    assert names["alarm:backup-stale"]["passed"] and names["alarm:daily-backup"]["passed"]
    html = (out / "report.html").read_text()
    assert 'id="restore-tests"' in html and tested["restore_point"] in html


def test_a_backup_whose_archive_lost_a_segment_does_not_verify_and_its_scratch_cluster_is_removed(no_leftovers):
    box = Sandbox.up(SandboxSpec())
    try:
        backup = box.take_base_backup()
        with psycopg.connect(pg.dsn(box.state.regions["A"].db_port), autocommit=True) as conn:
            conn.execute("INSERT INTO records (key, payload, checksum, region) VALUES ('k1', 'p', 'c', 'A')")
            gone = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        archive = Path(box.state.archive_dir)
        box._switch_wal_and_wait_archived(box.state.regions["A"].db_port)   # the segment after it too
        assert (archive / gone).exists() and gone > backup.wal_segment
        (archive / gone).unlink()                                            # the archive loses it
        result = box.restore_test(timeout=30)
        assert result.error is not None and result.torn_down
        assert result.rows_restored == 0 and result.rows_expected >= 1
        assert not list(Path(box.state.root).glob("pg-restore-test-*/"))
        assert not any(p.name.startswith("postgres-restore-test") for p in box.state.processes)
        assert not list(archive.glob("*.history"))   # the scratch cluster never archived into production's
        # the segment stays lost: every later restore from this backup fails the same way
        assert box.restore_test(timeout=30).error is not None
    finally:
        box.down()
