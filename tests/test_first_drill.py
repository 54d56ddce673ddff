"""The first drill a newcomer runs: the README's command as written, relative output folders, and
what a drill does when the harness itself breaks (a sandbox service dies, the audit cannot read).

Every drill here is the CLI as a subprocess on the real sandbox. The README's own command runs
from the checkout root with the default output folder, which it then removes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from support.scenario_copy import ROOT
from support.drills import first, variant

HOOKS = Path(__file__).parent / "hooks"
NOISE = ("Traceback", "Warning", "warning:")


def readme_drill_command() -> list[str]:
    """The `drillkit run` step of the README's first command, as its words."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README.md has no ```sh block"
    line = block.group(1).strip().splitlines()[0]
    step = next((p.strip() for p in line.split("&&") if "drillkit run" in p), None)
    assert step, f"the README's first command runs no drill: {line}"
    argv = shlex.split(step)
    if not (ROOT / argv[0]).exists():  # a checkout tested from another virtualenv than .venv
        argv[0] = str(Path(sys.executable).parent / "drillkit")
    return argv


def evidence_of(out: Path) -> tuple[dict, list[dict], dict[str, int]]:
    summary = json.loads((out / "summary.json").read_text())
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines() if line]
    ops = {f.name: sum(1 for _ in f.open()) for f in (out / "requests").glob("*.jsonl")}
    return summary, events, ops


def assert_a_real_failover(out: Path, proc: subprocess.CompletedProcess) -> None:
    """Passed, with Locust's operations in the evidence (not only the canary's), the health checks
    seen failing and the DNS answer moved, and a terminal free of dependencies' noise."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for noise in NOISE:
        assert noise not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    summary, events, ops = evidence_of(out)
    assert summary["verdict"] == "pass", summary["reasons"]
    assert summary["measures"]["audited"] is True and summary["measures"]["writes_acked"] > 0
    locust = {name: n for name, n in ops.items() if name != "canary.jsonl"}
    assert locust and sum(locust.values()) > 0, f"no Locust operations in the evidence: {ops}"
    assert first(events, "health.change", region="A", healthy=False)
    assert first(events, "routing.switch", to="B")
    assert not (ROOT / "loadtests" / "reports").exists(), "Locust wrote its records beside the locustfile"


def test_the_readme_drill_command_as_written_passes(no_leftovers):
    reports = ROOT / "reports"
    had_reports = reports.is_dir()
    register = reports / "register.jsonl"
    registered = register.stat().st_size if register.is_file() else None
    before = set(reports.iterdir()) if had_reports else set()
    proc = subprocess.run(readme_drill_command(), cwd=ROOT, capture_output=True, text=True, timeout=600)
    made = sorted(p for p in set(reports.iterdir()) - before if p.is_dir()) if reports.is_dir() else []
    try:
        assert len(made) == 1, f"expected one new folder in reports/, got {made}: {proc.stdout}{proc.stderr}"
        assert made[0].name.endswith("-region-loss")
        assert f"evidence: {made[0]}" in proc.stdout
        assert_a_real_failover(made[0], proc)
        entries = register.read_text().splitlines()[-2:]
        assert [json.loads(e)["event"] for e in entries] == ["started", "sealed"], "the drill is in reports/'s register"
    finally:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
        if not had_reports:
            shutil.rmtree(reports, ignore_errors=True)
        elif registered is None:
            register.unlink(missing_ok=True)
        else:  # the developer's own register, as it was
            with open(register, "r+b") as fh:
                fh.truncate(registered)


def test_a_relative_out_folder_from_another_working_directory(tmp_path, no_leftovers):
    proc = subprocess.run([sys.executable, "-m", "drillkit.cli", "run", str(ROOT / "scenarios" / "region-loss.yaml"),
                           "--out", "drills/first"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert_a_real_failover(tmp_path / "drills" / "first", proc)


def test_a_router_whose_health_checking_dies_aborts_the_drill_at_once(tmp_path, no_leftovers):
    """The router's health checker dies just after the region is lost (tests/hooks breaks it):
    the drill must stop at once, naming the router, instead of waiting out the runbook's 30 s
    for a failover that cannot come and then counting every write as lost."""
    out, flag = tmp_path / "evidence", tmp_path / "break-health"
    env = {**os.environ, "DRILLKIT_TEST_BREAK_HEALTH": str(flag),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-m", "drillkit.cli", "run", "scenarios/region-loss.yaml",
                             "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not any(e["kind"] == "fault.injected" for e in _events(out)):
            assert proc.poll() is None, "the drill ended before the fault: " + proc.stdout.read() + proc.stderr.read()
            assert time.monotonic() < deadline, "no fault within 300 s"
            time.sleep(0.02)
        flag.touch()
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, stdout + stderr
    assert "Traceback" not in stderr
    summary, events, _ = evidence_of(out)
    failed = first(events, "service.failed")
    assert "router" in failed["reason"] and "health checker of" in failed["reason"], failed
    assert "RuntimeError: health checking broken by the test" in failed["reason"]
    assert first(events, "drill.aborted")["reason"] == failed["reason"]
    assert summary["verdict"] == "aborted"
    # the runbook's wait was cut short, not timed out; and no data was counted as lost
    waits = [e for e in events if e["kind"] == "activity.end" and e.get("name") == "wait-for-dns-failover"]
    assert all("after 30" not in str(e) for e in waits), waits
    assert summary["measures"]["audited"] is False
    assert summary["measures"]["writes_lost"] is None and summary["measures"]["rpo_s"] is None
    assert "router" in stdout and "not audited" in stdout


def test_an_audit_that_cannot_read_the_final_state_measures_no_data(tmp_path, drillkit_cli, no_leftovers):
    """Region A is lost and, with manual routing and no runbook, the endpoint still names it: the
    audit cannot read the final state. The data measures are unknown and the drill aborted;
    none of the acknowledged writes is reported lost."""
    experiment = json.loads((ROOT / "experiments" / "region-loss.json").read_text())
    experiment["title"] = "Region A is lost and nothing recovers it"
    experiment["method"] = [a for a in experiment["method"]
                            if a["name"] in ("lose-primary-region", "confirm-primary-region-down")]
    experiment.pop("steady-state-hypothesis")
    (tmp_path / "no-runbook.json").write_text(json.dumps(experiment))
    scenario = variant(tmp_path, "region-loss.yaml", "no-runbook", system={"routing": {"policy": "manual"}},
                       load={"duration": "6s"}, targets={"max_lost_writes": 0})
    data = scenario.read_text().replace(str((ROOT / "experiments" / "region-loss.json").resolve()),
                                        str(tmp_path / "no-runbook.json"))
    scenario.write_text(data)
    out = tmp_path / "evidence"
    proc = drillkit_cli("run", str(scenario), "--out", str(out), timeout=600)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    summary, events, _ = evidence_of(out)
    assert not (out / "final_state.jsonl").exists()
    audit = first(events, "audit.failed")
    assert "OperationalError" in audit["error"]
    assert summary["verdict"] == "aborted"
    m = summary["measures"]
    assert m["audited"] is False and m["writes_acked"] > 0
    for name in ("writes_lost", "writes_lost_after_fault", "writes_recovered", "records_corrupt",
                 "records_unexpected", "rpo_s"):
        assert m[name] is None, (name, m[name])
    lost_check = next(c for c in summary["checks"] if c["name"] == "max_lost_writes")
    assert lost_check["measured"] is None and "not audited" in lost_check["message"]
    report = (out / "report.html").read_text()
    assert "not audited" in report and "unknown is not lost" in report
    assert "lost writes not audited" in proc.stdout


def _events(out: Path) -> list[dict]:
    """The events so far of a drill still running (a line being written is skipped)."""
    path = out / "events.jsonl"
    found = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def test_probes_that_cannot_run_abort_the_drill_yet_it_is_reported_and_sealed(tmp_path, drillkit_cli,
                                                                              no_leftovers):
    """The judge is part of the harness: when pytest cannot even start the probes (here an option
    it does not know, through PYTEST_ADDOPTS), the drill is aborted, and still measured, reported
    and sealed, so the evidence says what happened."""
    out = tmp_path / "evidence"
    proc = drillkit_cli("run", "scenarios/ground-truth-outage.yaml", "--out", str(out), timeout=600,
                        env={"PYTEST_ADDOPTS": "--no-such-probe-option"})
    assert proc.returncode == 3, proc.stdout + proc.stderr
    summary, events, _ = evidence_of(out)
    assert summary["verdict"] == "aborted"
    assert summary["probes"]["exit_code"] not in (0, 1)
    assert first(events, "drill.aborted")["reason"].startswith("the probes could not run (pytest exit ")
    assert (out / "report.html").exists() and "ABORTED" in (out / "report.html").read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert "summary.json" in json.dumps(manifest)
