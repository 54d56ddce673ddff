"""Readiness in `drillkit history`: per system and scenario, the last drill, when the next is due
(the cadence counted from the last pass whose evidence is here) and what is overdue, in the
terminal, history.html, readiness.csv and readiness.json."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from drillkit.report.readiness import cadence_delta

from support.sample_evidence import T_START, make_drill
from support.scenario_copy import copy_scenario

DAY = 86_400.0


def drill(root: Path, name: str, scenario: str, *, start: float, failing: bool = False,
          readiness: dict | None = None) -> Path:
    folder = make_drill(root / name, failing=failing, n_ops=300, only_summary=True)
    summary = json.loads((folder / "summary.json").read_text())
    summary["scenario"] = scenario
    summary["measures"]["t_start"] = start
    (folder / "summary.json").write_text(json.dumps(summary))
    doc = {"name": scenario, "experiment": "x.json", "load": {"users": 1}}
    if readiness:
        doc["readiness"] = readiness
    (folder / "scenario.yaml").write_text(yaml.safe_dump(doc))
    return folder


@pytest.fixture
def reports(tmp_path) -> Path:
    root = tmp_path / "reports"
    monthly = {"system": "roadcall", "cadence": "1mo", "owner": "sre-roadcall"}
    yearly = {"system": "roadcall", "cadence": "1y", "owner": "sre-roadcall"}
    drill(root, "restore-1", "roadcall-restore-test", start=T_START, readiness=monthly)
    drill(root, "restore-2", "roadcall-restore-test", start=T_START + 20 * DAY, failing=True, readiness=monthly)
    drill(root, "failover-1", "roadcall-full-failover", start=T_START + 30 * DAY, readiness=yearly)
    drill(root, "ecom-1", "e-commerce-dr-test", start=T_START, failing=True,
          readiness={"system": "e-commerce", "cadence": "6mo"})
    drill(root, "adhoc-1", "ad-hoc", start=T_START)
    return root


def test_an_overdue_scenario_and_the_next_due_date_of_a_fresh_one(reports, drillkit_cli):
    run = drillkit_cli("history", str(reports), "--as-of", "2025-02-01")
    assert run.returncode == 0, run.stderr
    rows = {r["scenario"]: r for r in csv.DictReader((reports / "readiness.csv").open())}
    # monthly restore test: passed 2024-11-21, then failed on 2024-12-11 (a failure resets nothing)
    restore = rows["roadcall-restore-test"]
    assert restore["status"] == "overdue" and restore["next_due_utc"] == "2024-12-21T12:00:00Z"
    assert restore["last_verdict"] == "FAIL" and restore["last_pass_utc"] == "2024-11-21T12:00:00Z"
    assert (restore["system"], restore["owner"], restore["cadence"]) == ("roadcall", "sre-roadcall", "1mo")
    # yearly failover drilled 2024-12-21: due a calendar year later, not yet overdue
    failover = rows["roadcall-full-failover"]
    assert failover["status"] == "due" and failover["next_due_utc"] == "2025-12-21T12:00:00Z"
    assert rows["e-commerce-dr-test"]["status"] == "never passed"
    assert rows["ad-hoc"]["status"] == "no cadence" and rows["ad-hoc"]["next_due_utc"] == ""
    assert "overdue      roadcall / roadcall-restore-test" in run.stdout
    page = (reports / "history.html").read_text()
    readiness = page[page.index('id="readiness"'):page.index("</section>", page.index('id="readiness"'))]
    assert "2025-12-21T12:00:00Z" in readiness and "overdue" in readiness and "never passed" in readiness
    doc = json.loads((reports / "readiness.json").read_text())
    assert doc["as_of_utc"] == "2025-02-01T00:00:00Z"
    assert {r["scenario"]: r["status"] for r in doc["scenarios"]} == {k: v["status"] for k, v in rows.items()}


def test_the_same_drills_later_are_overdue_and_now_is_the_default(reports, drillkit_cli):
    later = drillkit_cli("history", str(reports), "--as-of", "2026-01-01")
    assert later.returncode == 0
    rows = {r["scenario"]: r["status"] for r in csv.DictReader((reports / "readiness.csv").open())}
    assert rows["roadcall-full-failover"] == "overdue"
    before = datetime.now(timezone.utc).replace(microsecond=0)
    assert drillkit_cli("history", str(reports)).returncode == 0
    as_of = datetime.fromisoformat(json.loads((reports / "readiness.json").read_text())["as_of_utc"])
    assert as_of >= before


@pytest.mark.parametrize("cadence, months", [("1mo", 1), ("3mo", 3), ("6mo", 6), ("1y", 12)])
def test_months_and_years_are_calendar_ones(cadence, months):
    start = datetime(2025, 1, 31, tzinfo=timezone.utc)
    due = start + cadence_delta(cadence)
    assert (due.year - start.year) * 12 + due.month - start.month == months
    assert due.day <= 31 and due.day >= 28


def test_a_bad_cadence_is_refused_naming_the_field(tmp_path, drillkit_cli):
    path = copy_scenario("scenarios/region-loss.yaml", tmp_path, "bad",
                         lambda doc: doc.update(readiness={"cadence": "quarterly"}))
    run = drillkit_cli("validate", str(path))
    assert run.returncode == 2 and "readiness.cadence" in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
