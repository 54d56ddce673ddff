"""The probes as a CI gate and an auditor's tool, on one real drill's evidence."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from support.leftovers import Snapshot

from support.scenario_copy import ROOT

pytestmark = pytest.mark.drill  # a real sandbox (or drill) shared by the module


@pytest.fixture(scope="module")
def drill(tmp_path_factory):
    """An outage three times the scenario's timeouts (500 ms), so that requests surely fail in it:
    one no longer than a timeout can be ridden out with no failure, an RTO of 0."""
    out = tmp_path_factory.mktemp("drill") / "evidence"
    before = Snapshot()
    proc = subprocess.run([sys.executable, "-m", "drillkit.cli", "run", "scenarios/ground-truth-outage.yaml",
                           "--out", str(out), "--quiet", "--var", "outage_seconds=1.5"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not before.leaks(), before.leaks()
    return out


def probes(*args: str) -> subprocess.CompletedProcess:
    # -n 0: one process, whatever this repository's pyproject.toml gives its own suite
    return subprocess.run([sys.executable, "-m", "pytest", "probes/", "-p", "no:cacheprovider", "-n", "0", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_run_verdict_comes_from_the_probes(drill):
    summary = json.loads((drill / "summary.json").read_text())
    assert summary["probes"]["exit_code"] == 0
    junit = (drill / "junit.xml").read_text()
    assert 'failures="0"' in junit
    # one probe per check of the drill, named by the check
    cases = re.findall(r'name="test_check\[(.+?)\]" ', junit)
    assert cases == [c["name"] for c in summary["checks"]]
    assert {"experiment", "rto", "recovered"} <= set(cases) and any(c.startswith("runbook_step[") for c in cases)


def test_probes_pass_on_the_archived_drill(drill):
    proc = probes("--drill-evidence", str(drill))
    assert proc.returncode == 0, proc.stdout
    assert "passed" in proc.stdout


def test_an_impossible_target_fails_naming_it(drill, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(drill, copy)
    scenario = yaml.safe_load((copy / "scenario.yaml").read_text())
    scenario["targets"]["rto"] = 0.001
    (copy / "scenario.yaml").write_text(yaml.safe_dump(scenario))
    proc = probes("--drill-evidence", str(copy))
    assert proc.returncode == 1
    assert "test_check[rto]" in proc.stdout and "exceeds target 0.001 s" in proc.stdout


def test_a_folder_that_is_not_a_drill_is_one_clear_line(tmp_path):
    proc = probes("--drill-evidence", str(tmp_path))
    assert proc.returncode == 4
    assert f"{tmp_path}: not a drill evidence folder" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_every_stored_measure_reproduces_from_the_evidence(drill, drillkit_cli):
    proc = drillkit_cli("measure", str(drill))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stored measures reproduce" in proc.stdout


def test_the_evidence_verifies(drill, drillkit_cli):
    proc = drillkit_cli("verify", str(drill))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_drill_mode_runs_the_drill_then_judges(tmp_path, no_leftovers):
    proc = probes("--drill", "scenarios/ground-truth-outage.yaml", "--drill-out", str(tmp_path / "ev"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "ev" / "summary.json").exists()


def test_the_run_verdict_ignores_the_pytest_plugins_installed_next_to_drillkit(drill, tmp_path):
    """A plugin installed in the environment (a pytest11 entry point) that fails every test: a
    plain pytest run of the probes loads it and fails; the verdict `drillkit run` takes loads only
    drillkit's plugin and passes."""
    site = tmp_path / "site"
    (site / "spoiler-1.0.dist-info").mkdir(parents=True)
    (site / "spoiler-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: spoiler\nVersion: 1.0\n")
    (site / "spoiler-1.0.dist-info" / "entry_points.txt").write_text("[pytest11]\nspoiler = spoiler_plugin\n")
    (site / "spoiler_plugin.py").write_text(
        "def pytest_runtest_call(item):\n    raise RuntimeError('an installed plugin spoiled the verdict')\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    copy = tmp_path / "copy"
    shutil.copytree(drill, copy)
    plain = subprocess.run([sys.executable, "-m", "pytest", "probes/", "-p", "no:cacheprovider", "-n", "0",
                            "--drill-evidence", str(copy)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env=env)
    assert plain.returncode == 1 and "spoiled the verdict" in plain.stdout
    verdict = subprocess.run([sys.executable, "-c", "import sys; from drillkit.judge.verdict import run_probes; "
                              f"sys.exit(run_probes({str(copy)!r}))"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert verdict.returncode == 0, (copy / "probes.log").read_text()
    assert 'failures="0"' in (copy / "junit.xml").read_text()
