"""A method probe's tolerance is judged as Chaos Toolkit judges it: for every tolerance form, on an
output within it and one outside it, drillkit's check agrees with chaoslib's own verdict on the
same probe's same output, taken by chaoslib itself (the probe in the steady-state hypothesis)."""

from __future__ import annotations

import copy
import json
import sys

import pytest
from chaoslib.experiment import run_experiment
from chaoslib.types import Strategy

from drillkit.judge import summarize
from drillkit.judge.checks import RUNBOOK_STEP, hold_tolerances

from support.histories import W, drill


def nonzero(value):
    """The probe of a `probe` tolerance: chaoslib calls it with the output as `value`."""
    return bool(value)


def returns(value):
    """A probe whose output is `value`, through chaoslib's own python provider."""
    return {"type": "python", "module": "json", "func": "loads", "arguments": {"s": json.dumps(value)}}


def exits(code):
    return {"type": "process", "path": sys.executable, "arguments": ["-c", f"print('done'); raise SystemExit({code})"]}


PROBE_TOLERANCE = {"type": "probe", "name": "is-nonzero",
                   "provider": {"type": "python", "module": "test_tolerance", "func": "nonzero", "arguments": {}}}

# (form, tolerance, provider within it, provider outside it)
FORMS = [
    ("boolean", True, returns(True), returns(False)),
    ("number", 0, returns(0), returns(3)),
    ("number against a list", 0, returns(0), returns([1])),
    ("string", "A", returns("A"), returns("B")),
    ("string from configuration", "${expected_region}", returns("A"), returns("B")),
    ("pair: a range", [200, 204], returns(201), returns(500)),
    ("list: a set", [200, 201, 204], returns(201), returns(202)),
    ("range", {"type": "range", "range": [1, 5]}, returns(3), returns(7)),
    ("range of a field", {"type": "range", "range": [0, 2], "target": "lag"}, returns({"lag": 1}),
     returns({"lag": 4})),
    ("regex", {"type": "regex", "pattern": "^ok"}, returns("ok: 12 rows"), returns("not ok")),
    ("regex of a field", {"type": "regex", "pattern": "^B$", "target": "region"}, returns({"region": "B"}),
     returns({"region": "A"})),
    ("jsonpath", {"type": "jsonpath", "path": "$.healthy", "expect": True}, returns({"healthy": True}),
     returns({"healthy": False})),
    ("jsonpath count", {"type": "jsonpath", "path": "$.items[*]", "count": 2}, returns({"items": [1, 2]}),
     returns({"items": [1]})),
    ("probe", PROBE_TOLERANCE, returns(5), returns(0)),
    ("process exit code", 0, exits(0), exits(1)),
    ("process exit codes", [0, 3], exits(3), exits(2)),
    ("process stdout regex", {"type": "regex", "pattern": "^done", "target": "stdout"}, exits(0),
     returns({"stdout": "failed"})),
]


def chaoslib_journal(tolerance, provider):
    """The probe run in the method and, after it, in the steady-state hypothesis, where chaoslib
    holds it to its tolerance itself."""
    probe = {"type": "probe", "name": "check", "tolerance": tolerance, "provider": provider}
    experiment = {"title": "tolerance parity", "description": "one probe, judged twice",
                  "configuration": {"expected_region": "A"},
                  "steady-state-hypothesis": {"title": "within tolerance", "probes": [copy.deepcopy(probe)]},
                  "method": [copy.deepcopy(probe)]}
    journal = run_experiment(experiment, settings={"runtime": {"rollbacks": {"strategy": "always"}}},
                             strategy=Strategy.AFTER_METHOD)
    assert journal["run"][0]["status"] == "succeeded", journal["run"][0]
    return json.loads(json.dumps(journal, default=str))


def drillkit_check(tmp_path, journal):
    folder = drill(tmp_path, [W(9, 9.1), W(11, 11.1)])
    (folder / "journal.json").write_text(json.dumps(journal))
    return next(c for c in summarize(folder)["checks"] if c["kind"] == RUNBOOK_STEP)


@pytest.mark.parametrize("within", [True, False], ids=["within", "outside"])
@pytest.mark.parametrize("form,tolerance,inside,outside", FORMS, ids=[f[0] for f in FORMS])
def test_a_method_probe_is_judged_as_chaoslib_judges_it(tmp_path, form, tolerance, inside, outside, within):
    journal = chaoslib_journal(tolerance, inside if within else outside)
    chaoslib_verdict = journal["steady_states"]["after"]["probes"][0]["tolerance_met"]
    assert chaoslib_verdict is within  # the case is what it says

    judged = drillkit_check(tmp_path / "later", journal)   # `drillkit report`: from the journal alone
    assert judged["passed"] is chaoslib_verdict, judged["message"]
    held = copy.deepcopy(journal)   # `drillkit run`: the verdict taken while the system is up
    hold_tolerances(held, {"expected_region": "A"}, None)
    assert held["run"][0]["tolerance_met"] is chaoslib_verdict
    assert drillkit_check(tmp_path / "run", held)["passed"] is chaoslib_verdict
    if not within:
        assert judged["message"].startswith("check 'check' gave "), judged["message"]


def test_a_process_probe_with_tolerance_0_that_exits_0_is_met(tmp_path):
    """The usual way to write a process probe (the issue's [MISS]): its output is a mapping, its
    tolerance the exit code."""
    journal = chaoslib_journal(0, exits(0))
    assert journal["run"][0]["output"]["status"] == 0 and "done" in journal["run"][0]["output"]["stdout"]
    folder = drill(tmp_path, [W(9, 9.1), W(11, 11.1)])
    (folder / "journal.json").write_text(json.dumps(journal))
    s = summarize(folder)
    step = next(c for c in s["checks"] if c["kind"] == RUNBOOK_STEP)
    assert step["passed"] and step["message"] == "runbook step 'check' succeeded"
    assert s["verdict"] == "pass", s["reasons"]


def test_a_tolerance_chaoslib_cannot_check_is_not_met_and_says_why(tmp_path):
    """A regex against a number makes chaoslib's own check raise: not within it, never a pass."""
    journal = {"status": "completed", "deviated": False,
               "run": [{"activity": {"name": "scan", "type": "probe", "tolerance": {"type": "regex", "pattern": "x"}},
                        "status": "succeeded", "output": 3}]}
    folder = drill(tmp_path, [W(9, 9.1), W(11, 11.1)])
    (folder / "journal.json").write_text(json.dumps(journal))
    s = summarize(folder)
    assert s["verdict"] == "fail"
    assert s["reasons"][0].startswith("check 'scan' gave 3, its tolerance is {'type': 'regex', 'pattern': 'x'} "
                                      "(the check failed: TypeError"), s["reasons"]
