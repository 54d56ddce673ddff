"""Operator steps (drillkit.chaos.gameday): the people of a game day in the runbook, each step a
phase with its budget, ended by the operator at the drill's terminal, by its own check, or with
nobody there by its automated alternative; a step that needs a person is refused without one."""

from __future__ import annotations

import getpass
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chaoslib.exceptions import ActivityFailed

from drillkit.chaos.gameday import OPERATOR_ENV, operator_step
from drillkit.evidence import OPERATOR_STEP, OPERATOR_WAITING, read_events

from support.drills import first, run_drill
from support.scenario_copy import ROOT

ROADCALL = ROOT / "scenarios" / "roadcall" / "gameday-region-failover.yaml"
ECOMMERCE = ROOT / "scenarios" / "e-commerce" / "gameday-phased-activation.yaml"


def steps(events: list[dict]) -> dict[str, dict]:
    return {e["title"]: e for e in events if e["kind"] == OPERATOR_STEP}


def budget_checks(summary: dict) -> dict[str, dict]:
    return {c["subject"]: c for c in summary["checks"] if c["kind"] == "phase"}


def test_with_nobody_at_a_terminal_the_automated_alternatives_and_checks_work_the_runbook(tmp_path, drillkit_cli,
                                                                                            no_leftovers):
    out = tmp_path / "out"
    code, summary, events = run_drill(drillkit_cli, ECOMMERCE, out)
    assert code == 0, summary["reasons"]
    ended = steps(events)
    assert ended["Promote the RDS read replica"]["by"] == "automated"
    assert ended["Switch DNS to the DR region"]["by"] == "done_when"
    assert ended["Verify checkout and the order API"]["by"] == "done_when"
    assert {e["outcome"] for e in ended.values()} == {"done"}
    waiting = [e for e in events if e["kind"] == OPERATOR_WAITING]
    assert [w["answered_by"] for w in waiting] == ["automated", "done_when", "done_when"]
    # the DNS step ended when the endpoint was served by B: the router's own switch came first
    switch = first(events, "routing.switch", to="B")
    assert switch["t"] <= ended["Switch DNS to the DR region"]["t"]
    checks = budget_checks(summary)
    assert {"promote", "dns", "verify"} <= set(checks) and all(checks[p]["passed"] for p in ("promote", "dns", "verify"))
    html = (out / "report.html").read_text()
    assert 'id="operator-steps"' in html and "Switch DNS to the DR region" in html


def _wait_for(path: Path, kind: str, title: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the drill ended (exit {proc.returncode}) before {kind} {title!r}")
        if path.is_file() and any(e["kind"] == kind and e.get("title") == title for e in read_events(path.parent)):
            return
        time.sleep(0.1)
    raise AssertionError(f"no {kind} {title!r} within {timeout} s")


def test_an_operator_at_the_terminal_confirms_a_step_and_its_note_lands_in_the_evidence(tmp_path, no_leftovers):
    out = tmp_path / "out"
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != OPERATOR_ENV}
    proc = subprocess.Popen([sys.executable, "-m", "drillkit.cli", "run", str(ROADCALL), "--out", str(out)],
                            cwd=ROOT, stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    os.close(slave)
    try:
        _wait_for(out / "events.jsonl", OPERATOR_WAITING, "Promote the Aurora replica in the DR region", proc)
        # while the drill waits on its operator, someone else notes what they see, from another terminal
        noted = subprocess.run([sys.executable, "-m", "drillkit.cli", "note", "the pager fired for region A",
                                "--under", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert noted.returncode == 0 and f"noted in {out}" in noted.stdout, noted.stdout + noted.stderr
        os.write(master, b"run replica promoted by the on-call DBA\n")
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        while select.select([master], [], [], 0)[0]:  # the terminal's echo
            try:
                if not os.read(master, 4096):
                    break
            except OSError:
                break
        os.close(master)
    assert proc.returncode == 0, stdout + stderr
    assert "▶ OPERATOR STEP: Promote the Aurora replica in the DR region" in stderr
    events = read_events(out)
    ended = steps(events)
    promote = ended["Promote the Aurora replica in the DR region"]
    assert promote["outcome"] == "done" and promote["by"].startswith("operator ") and promote["by"].endswith(", automated")
    assert promote["note"] == "replica promoted by the on-call DBA"
    assert first(events, "db.promoted")["t"] <= promote["t"], "the operator's `run` carried the step out"
    assert ended["Update DNS to the DR region"]["by"] == "done_when"
    summary = json.loads((out / "summary.json").read_text())
    checks = budget_checks(summary)
    assert checks["promote"]["passed"] and checks["promote"]["target"] == pytest.approx(10.0)
    html = (out / "report.html").read_text()
    assert "replica promoted by the on-call DBA" in html
    note = first(events, "operator.note")
    assert note["text"] == "the pager fired for region A" and note["t"] < promote["t"]
    assert 'id="observations"' in html and "the pager fired for region A" in html and ">N1<" in html
    late = subprocess.run([sys.executable, "-m", "drillkit.cli", "note", "too late", "--drill", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert late.returncode == 2 and "not a running drill" in late.stderr
    assert "too late" not in (out / "events.jsonl").read_text()


def test_a_step_without_an_alternative_is_refused_when_nobody_is_at_a_terminal(tmp_path, drillkit_cli):
    doc = json.loads((ROOT / "experiments" / "roadcall" / "gameday-region-failover.json").read_text())
    step = next(a for a in doc["method"] if a["name"] == "promote-aurora-replica")
    del step["provider"]["arguments"]["automated"]
    (tmp_path / "experiment.json").write_text(json.dumps(doc))
    scenario = ROADCALL.read_text().replace("../../experiments/roadcall/gameday-region-failover.json",
                                            str(tmp_path / "experiment.json"))
    scenario = scenario.replace("../../loadtests/", str(ROOT / "loadtests") + "/")
    (tmp_path / "s.yaml").write_text(scenario)
    for command in ("validate", "run"):
        run = drillkit_cli(command, str(tmp_path / "s.yaml"), *(["--out", str(tmp_path / "out")] if command == "run" else []))
        assert run.returncode == 2, run.stdout + run.stderr
        assert "method: promote-aurora-replica" in run.stderr and "needs a person" in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    with_terminal = drillkit_cli("validate", str(tmp_path / "s.yaml"), env={OPERATOR_ENV: "terminal"})
    assert with_terminal.returncode == 0, with_terminal.stderr


def test_an_answer_typed_at_the_terminal_ends_the_step_and_a_wrong_word_asks_again(tmp_path):
    events = tmp_path / "events.jsonl"
    events.touch()
    code = ("import json; from drillkit.chaos.gameday import operator_step; print(json.dumps(operator_step("
            f"'Call the incident manager', 'Phone them.', poll=0.05, timeout=60, "
            f"configuration={{'drillkit_events': {str(events)!r}}})))")
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != OPERATOR_ENV}
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    os.close(slave)
    try:
        _wait_for(events, OPERATOR_WAITING, "Call the incident manager", proc)
        os.write(master, b"maybe\ndone called, bridge open\n")   # both lines at once: the second is not left behind
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert proc.returncode == 0, err
    assert json.loads(out) == {"outcome": "done", "by": f"operator {getpass.getuser()}", "note": "called, bridge open"}
    assert "answer done, failed or skipped" in err and "▶ OPERATOR STEP: Call the incident manager" in err
    waiting = next(e for e in read_events(tmp_path) if e["kind"] == OPERATOR_WAITING)
    assert waiting["answered_by"] == "terminal" and waiting["instructions"] == "Phone them."


def _configuration(tmp_path: Path) -> dict:
    (tmp_path / "events.jsonl").touch()
    return {"drillkit_events": str(tmp_path / "events.jsonl")}


def test_a_check_that_never_holds_fails_the_step_at_its_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv(OPERATOR_ENV, "none")
    never = {"type": "probe", "provider": {"type": "python", "module": "os.path", "func": "isdir",
                                           "arguments": {"s": str(tmp_path / "absent")}}, "tolerance": True}
    with pytest.raises(ActivityFailed, match="not ended within 0.3 s"):
        operator_step("Wait for a folder", done_when=never, timeout=0.3, poll=0.05, configuration=_configuration(tmp_path))
    ended = [e for e in read_events(tmp_path) if e["kind"] == OPERATOR_STEP]
    assert ended[0]["outcome"] == "failed" and ended[0]["by"] == "timeout"


def test_a_failing_automated_alternative_fails_the_step_with_its_error(tmp_path, monkeypatch):
    monkeypatch.setenv(OPERATOR_ENV, "none")
    script = {"type": "action", "provider": {"type": "process", "path": sys.executable,
                                             "arguments": ["-c", "import sys; sys.exit('no route to the DR region')"]}}
    raising = {"type": "action", "provider": {"type": "python", "module": "json", "func": "loads",
                                              "arguments": {"s": "not json"}}}
    fine = {"type": "action", "provider": {"type": "process", "path": sys.executable, "arguments": ["-c", "pass"]}}
    config = _configuration(tmp_path)
    with pytest.raises(ActivityFailed, match="the process exited 1: no route to the DR region"):
        operator_step("Fail over by script", automated=script, configuration=config)
    with pytest.raises(ActivityFailed, match=r"operator step 'Promote' failed \(automated\)"):
        operator_step("Promote", automated=raising, configuration=config)
    assert operator_step("Run a script", automated=fine, configuration=config)["by"] == "automated"
    outcomes = [(e["title"], e["outcome"]) for e in read_events(tmp_path) if e["kind"] == OPERATOR_STEP]
    assert outcomes == [("Fail over by script", "failed"), ("Promote", "failed"), ("Run a script", "done")]


def test_a_note_with_no_running_drill_is_refused(tmp_path, drillkit_cli):
    (tmp_path / "killed").mkdir()
    (tmp_path / "killed" / "events.jsonl").write_text(json.dumps({"t": 1.0, "kind": "drill.start", "pid": 1,
                                                                  "pid_start": 0}) + "\n")
    for args in (("--under", str(tmp_path)), ("--drill", str(tmp_path / "killed"))):
        run = drillkit_cli("note", "anyone there?", *args)
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "anyone" not in (tmp_path / "killed" / "events.jsonl").read_text()
