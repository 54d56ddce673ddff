"""Judging: measures, targets and the journal in, typed checks out.

Each check has a kind (the objective it holds: RTO, RPO, a phase budget, an alarm…) so that the
probes, the report and `drillkit history` read `Check.kind`, never a check's name or message. The
verdict follows from the checks alone: aborted when the drill was stopped, fail when any check
failed, pass otherwise.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, Callable

from drillkit.measure import AUDIT_MEASURES, Measures
from drillkit.measure.lww import ITEM_MEASURES

# check kinds
RECOVERED = "recovered"
RTO = "rto"
RPO = "rpo"
RPO_STORE = "rpo_store"
RTO_OP = "rto_op"
LOST_WRITES = "lost_writes"
INTEGRITY = "integrity"
AVAILABILITY = "availability"
REPLICATION_LAG = "replication_lag"
PHASE = "phase"
ALARM = "alarm"
TIME_TO_DETECT = "time_to_detect"
EXPERIMENT = "experiment"
RUNBOOK_STEP = "runbook_step"
ROLLBACK = "rollback"
RESTORE_TEST = "restore_test"
BACKUP_AGE = "backup_age"
RESTORE_TIME = "restore_time"
LWW = "lww"
DIVERGENT = "divergent"
FAULT = "fault"

KINDS = (EXPERIMENT, RUNBOOK_STEP, ROLLBACK, RECOVERED, RTO, RTO_OP, RPO, RPO_STORE, LOST_WRITES, INTEGRITY,
         AVAILABILITY, REPLICATION_LAG, PHASE, ALARM, TIME_TO_DETECT, RESTORE_TEST, BACKUP_AGE, RESTORE_TIME,
         LWW, DIVERGENT, FAULT)

# target key -> (measure, kind, label, how it compares)
TARGETS: dict[str, tuple[str, str, str, str]] = {
    "rto": ("rto_s", RTO, "RTO", "max_duration"),
    "rto_write": ("rto_write_s", RTO, "write RTO", "max_duration"),
    "rto_read": ("rto_read_s", RTO, "read RTO", "max_duration"),
    "rpo": ("rpo_s", RPO, "RPO", "max_duration"),
    "max_lost_writes": ("writes_lost", LOST_WRITES, "lost writes", "max_count"),
    "max_corrupt": ("records_corrupt", INTEGRITY, "corrupt records", "max_count"),
    "max_unexpected": ("records_unexpected", INTEGRITY, "unexpected records", "max_count"),
    "min_availability": ("availability", AVAILABILITY, "availability", "min_ratio"),
    "max_replication_lag": ("max_replication_lag_s", REPLICATION_LAG, "max replication lag", "max_duration"),
    "max_time_to_detect": ("time_to_detect_s", TIME_TO_DETECT, "time to detect", "max_duration"),
    "max_backup_age": ("backup_age_s", BACKUP_AGE, "backup age", "max_duration"),
    "max_restore_time": ("restore_test_s", RESTORE_TIME, "restore test time", "max_duration"),
    "max_lww_anomalies": ("lww_anomalies", LWW, "LWW anomalies (overwritten by a write acknowledged earlier)",
                          "max_count"),
    "max_lww_discarded": ("lww_discarded", LWW, "writes LWW discarded for a concurrent one", "max_count"),
    "max_divergent": ("items_divergent", DIVERGENT, "keys the regions disagree on", "max_count"),
}
NAME_KINDS = {name: spec[1] for name, spec in TARGETS.items()} | {RECOVERED: RECOVERED}
"""For summaries written before checks had a kind: their names were exactly these target keys."""


@dataclass(frozen=True)
class Check:
    name: str
    kind: str
    target: Any
    measured: Any
    passed: bool
    message: str
    subject: str | None = None
    """What the check is about when its kind has several: the phase, the store, the alarm, the step."""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.subject is None:
            del out["subject"]
        return out


def kind_of(check: dict[str, Any]) -> str | None:
    """A stored check's kind: its own, or (older summaries) the one its target key names."""
    return check.get("kind") or NAME_KINDS.get(str(check.get("name")))


def by_subject(stored: list[Any], kind: str) -> dict[str, dict[str, Any]]:
    """The stored checks of one kind that have a subject, by subject (the phase, the alarm, the step)."""
    return {str(c["subject"]): c for c in stored or []
            if isinstance(c, dict) and kind_of(c) == kind and c.get("subject")}


def judge(measures: Measures, targets: dict[str, Any], journal: dict[str, Any] | None) -> list[Check]:
    """Every check of the drill: the experiment's own outcome, one per target the scenario sets, and
    always `recovered`. `targets` is the parsed Targets model as a dict (seconds, counts, ratios)."""
    m = measures.values
    checks = _experiment(measures, journal)
    checks += [_fault_failed(f) for f in m.get("faults_failed") or []]
    for name, (key, kind, label, how) in TARGETS.items():
        if targets.get(name) is not None:
            checks.append(_hold(name, kind, label, how, targets[name], m.get(key), key, m))
    if targets.get("max_lost_writes") is not None and "items_lost" in m:
        checks.append(_hold("max_lost_items", LOST_WRITES, "lost items", "max_count", targets["max_lost_writes"],
                            m["items_lost"], "items_lost", m, subject="items"))
    for store, budget in (targets.get("rpo_by_store") or {}).items():
        got = (m.get("rpo_by_store") or {}).get(store)
        measured = got["rpo_s"] if got else (None if m.get("rpo_by_store") is None else 0.0)
        checks.append(_hold(f"rpo:{store}", RPO_STORE, f"RPO of {store}", "max_duration", budget, measured,
                            "rpo_by_store", m, subject=store))
    for op, budget in (targets.get("rto_by_op") or {}).items():
        got = (m.get("rto_by_op") or {}).get(op)
        if got is None:
            checks.append(Check(f"rto:{op}", RTO_OP, budget, None, False,
                                f"RTO of {op} ops not measured: the drill recorded no {op} op; "
                                f"target {budget:g} s", op))
        else:
            checks.append(_hold(f"rto:{op}", RTO_OP, f"RTO of {op} ops", "max_duration", budget,
                                got["rto_s"], "rto_by_op", m, subject=op))
    recorded = m.get("phases") or {}
    for phase, budget in (targets.get("phases") or {}).items():
        got = recorded.get(phase)
        check = _hold(f"phase:{phase}", PHASE, f"phase {phase!r}", "max_duration", budget,
                      got["duration_s"] if got else None, "phases", m, subject=phase)
        if got and got["status"] != "succeeded":
            check = Check(check.name, PHASE, check.target, check.measured, False,
                          f"phase {phase!r} did not succeed ({got['status']}); budget {budget:g} s", phase)
        checks.append(check)
    checks += [_alarm(a) for a in m.get("alarms") or [] if a.get("expect")]
    checks += [_restore_test(t) for t in m.get("restore_tests") or []]
    stuck = m.get("not_recovered") or []
    checks.append(Check(RECOVERED, RECOVERED, True, not stuck, not stuck,
                        f"not recovered: {', '.join(stuck)} (no recovery held for the stable window before "
                        "the load ended)" if stuck else "every op class recovered"))
    return checks


def _restore_test(t: dict[str, Any]) -> Check:
    """Every restore test the drill ran must have verified and left no scratch cluster behind."""
    point = str(t.get("restore_point"))
    if t.get("error"):
        why = f"the backup did not restore to {point}: {t['error']}"
    elif not t.get("verified"):
        digests = "match" if t.get("digest_matches") else "differ"
        why = (f"the restore to {point} differs from the primary at that point: {t.get('rows_restored')} rows "
               f"restored of {t.get('rows_expected')}, digests {digests}, {t.get('corrupt_restored')} corrupt")
    elif not t.get("torn_down"):
        why = f"the scratch cluster of {point} was not torn down"
    else:
        return Check(f"restore_test:{point}", RESTORE_TEST, True, True, True,
                     f"{t.get('base_backup')} restored to {point}: {t.get('rows_restored')} rows, digest and "
                     f"checksums as on the primary, in {t.get('restore_s'):.3f} s", point)
    return Check(f"restore_test:{point}", RESTORE_TEST, True, False, False, why, point)


def verdict(measures: Measures, checks: list[Check]) -> str:
    if measures.aborted:
        return "aborted"
    return "fail" if any(not c.passed for c in checks) else "pass"


def reasons(measures: Measures, checks: list[Check]) -> list[str]:
    out = [f"drill aborted: {r}" for r in measures.aborted]
    if not measures.aborted:
        out += [c.message for c in checks if not c.passed]
    return out


_SHOW: dict[str, Callable[[Any], str]] = {
    "max_duration": lambda v: f"{v:g} s", "max_count": str, "min_ratio": lambda v: f"{v * 100:g}%"}


def _hold(name: str, kind: str, label: str, how: str, target: Any, measured: Any, key: str,
          m: dict[str, Any], subject: str | None = None) -> Check:
    shown = _SHOW[how](target)
    if measured is None:
        if kind in (RTO, RTO_OP, RPO, RPO_STORE) and m.get("not_measured"):
            unknown = m["not_measured"]
        elif kind in (RTO, RTO_OP):
            unknown = "not recovered"
        elif key in AUDIT_MEASURES and not m.get("audited") or key in ITEM_MEASURES:
            unknown = "not audited"
        elif kind == PHASE:
            unknown = "not run"
        else:
            unknown = "not measured"
        return Check(name, kind, target, None, False, f"{label} {unknown}; target {shown}", subject)
    if how == "min_ratio":
        passed = measured >= target
        message = f"{label} {measured * 100:.3f}% {'meets' if passed else 'below'} target {shown}"
    elif how == "max_count":
        passed = measured <= target
        message = f"{label}: {measured} {'within' if passed else 'exceeds'} limit {shown}"
    else:
        passed = measured <= target
        message = f"{label} {measured:.3f} s {'within' if passed else 'exceeds'} target {shown}"
    return Check(name, kind, target, measured, bool(passed), message, subject)


def _fault_failed(f: dict[str, Any]) -> Check:
    """A fault the experiment meant to inject and did not: the drill measured no disaster."""
    name = str(f.get("fault"))
    return Check(f"fault:{name}", FAULT, "injected", "failed", False,
                 f"fault {name!r} (activity {f.get('activity')!r}) failed: {f.get('error')}; no RTO or RPO", name)


def _alarm(a: dict[str, Any]) -> Check:
    name, raised = a["alarm"], a["raised_at"] is not None
    if a["expect"] == "fire":
        if raised:
            message = f"alarm {name!r} raised" + (
                f" {a['time_to_detect_s']:.3f} s after its condition held" if a["time_to_detect_s"] is not None
                else "")
        elif a["condition_held_at"] is not None:
            message = f"alarm {name!r} never raised, though {a['metric']} exceeded {a['threshold']:g} (peak {a['peak']:g})"
        else:
            peak = "no samples" if a["peak"] is None else f"peak {a['peak']:g}"
            message = f"alarm {name!r} never raised: {a['metric']} never exceeded {a['threshold']:g} ({peak})"
        return Check(f"alarm:{name}", ALARM, "fire", raised, raised, message, name)
    message = (f"alarm {name!r} raised {a['raised_count']} time(s); it should stay quiet" if raised
               else f"alarm {name!r} stayed quiet")
    return Check(f"alarm:{name}", ALARM, "quiet", raised, not raised, message, name)


def _experiment(measures: Measures, journal: dict[str, Any] | None) -> list[Check]:
    """The experiment ran to its end, every runbook step and rollback succeeded, and every probe in
    the method that states a tolerance met it, as chaoslib judges it (Chaos Toolkit itself holds
    only the steady-state probes to their tolerance)."""
    problems = [f"drill aborted: {r}" for r in measures.aborted]
    out = []
    configuration = static_configuration(journal)
    if journal is not None:
        if journal.get("status") != "completed":
            problems.append(f"experiment status is {journal.get('status')!r}, not 'completed'")
        if journal.get("deviated"):
            problems.append("experiment deviated from its steady-state hypothesis")
        for part, kind, what in (("run", RUNBOOK_STEP, "runbook step"), ("rollbacks", ROLLBACK, "rollback")):
            for i, run in enumerate(journal.get(part) or []):
                if isinstance(run, dict) and isinstance(run.get("activity"), dict):
                    out.append(_activity(run, kind, what, i, configuration))
    head = Check(EXPERIMENT, EXPERIMENT, "completed", journal.get("status") if journal else None, not problems,
                 "; ".join(problems) if problems else "experiment completed", None)
    return [head] + out


def static_configuration(journal: dict[str, Any] | None) -> dict[str, Any]:
    """The experiment's configuration values that need no environment (those read from one at
    the drill's time are not read again when a drill is judged later)."""
    experiment = (journal or {}).get("experiment")
    configuration = experiment.get("configuration") if isinstance(experiment, dict) else None
    return {k: v for k, v in (configuration or {}).items() if not isinstance(v, dict)} if isinstance(
        configuration, dict) else {}


def hold_tolerances(journal: dict[str, Any], configuration: dict[str, Any] | None,
                    secrets: dict[str, Any] | None) -> None:
    """Record, on each of the method's probes that states a tolerance, chaoslib's verdict
    (`tolerance_met`) while the system is still up: a `probe` tolerance runs a probe."""
    for run in journal.get("run") or []:
        if (isinstance(run, dict) and isinstance(run.get("activity"), dict) and run.get("status") == "succeeded"
                and run["activity"].get("tolerance") is not None):
            run["tolerance_met"] = tolerance_met(run, configuration, secrets)[0]


def _activity(run: dict[str, Any], kind: str, what: str, i: int, configuration: dict[str, Any]) -> Check:
    activity = run["activity"]
    name = str(activity.get("name", "?"))
    status = run.get("status")
    message = f"{what} {name!r} {status or 'has no status'}"
    passed = status != "failed"
    if status == "failed":
        error = run.get("exception") or ""
        error = ("".join(map(str, error)) if isinstance(error, list) else str(error)).strip().splitlines()
        message = f"{what} {name!r} failed" + (f": {error[-1][:200]}" if error else "")
    tolerance = activity.get("tolerance")
    if kind == RUNBOOK_STEP and tolerance is not None and status == "succeeded":
        met, why = tolerance_met(run, configuration)
        if not met:
            passed = False
            message = f"check {name!r} gave {_shown(run.get('output'))}, its tolerance is {tolerance!r}{why}"
    return Check(f"{kind}[{i}]", kind, "succeeded", status, passed, message, name)


def tolerance_met(run: dict[str, Any], configuration: dict[str, Any] | None = None,
                  secrets: dict[str, Any] | None = None) -> tuple[bool, str]:
    """Whether a probe's output is within its tolerance, as Chaos Toolkit decides it: chaoslib's
    own check (`chaoslib.hypothesis.within_tolerance`), so a process probe's number is its exit
    code, a list is a range or a set, and the regex, jsonpath, range and probe forms mean what
    chaoslib says. A verdict the run already took (`tolerance_met`, as chaoslib records it for
    the steady-state probes) stands. Gives the verdict and, when the check itself failed, why."""
    if isinstance(run.get("tolerance_met"), bool):
        return run["tolerance_met"], ""
    from chaoslib import substitute
    from chaoslib.hypothesis import within_tolerance

    tolerance = copy.deepcopy(run["activity"]["tolerance"])  # chaoslib writes the value into a probe tolerance
    try:
        if isinstance(tolerance, str):
            tolerance = substitute(tolerance, configuration, secrets)
        return bool(within_tolerance(tolerance, run.get("output"), configuration=configuration, secrets=secrets)), ""
    except Exception as exc:  # chaoslib's check itself failed (a regex on a number...): not within it
        return False, f" (the check failed: {type(exc).__name__}: {str(exc)[:200]})"


def _shown(output: Any) -> str:
    text = repr(output)
    return text if len(text) <= 300 else text[:300] + "…"
