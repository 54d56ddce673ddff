"""measure: the drill's figures, a pure function of its evidence folder (docs/measurements.md).

    read.py     the folder's other files as typed columns (final state, scenario, the global
                table); the client history is drillkit.evidence.history's
    rto.py      RTO per op class, outages, availability, op counts
    audit.py    lost / recovered / unexpected / corrupt per key; RPO overall and per store
    lag.py      replication lag from lag.csv; the AWS alarms' state changes
    alarms.py   the scenario's alarms: when each condition held, when it was raised, time to detect
    phases.py   runbook phases timed from the event log
    restore_tests.py  restore tests: verified or not, backup age, restore time
    lww.py      active-active: what last-writer-wins kept, discarded and lost, per key
    workers.py  distributed load: each Locust worker's ops, and the workers lost mid-drill

No verdict is decided here: drillkit.judge holds these measures against the scenario's targets.
An archived drill re-derives the same figures months later. Vectorised over numpy and Arrow: a
million-op history is measured in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drillkit.errors import EvidenceError
from drillkit.evidence import (AUDIT_DONE, DRILL_ABORTED, DRILL_END, DRILL_START, EVENTS, FINAL_STATE,
                               HARNESS_KILLED, REQUESTS_DIR, SCENARIO, harness_killed, read_events)
from drillkit.evidence.history import read_history

from . import read
from .alarms import alarms
from .audit import AUDIT_MEASURES, audit, indeterminate_counts, outside_scope
from .lag import alarms_raised, lag, read_lag
from .fault import fault_of
from .lww import measure_items
from .phases import phases
from .read import DEFAULT_STABLE, seconds
from .restore_tests import restore_tests
from .rto import availability, counts, last_client, rto
from .workers import load_workers

__all__ = ["AUDIT_MEASURES", "Measures", "compare_measures", "measure"]


@dataclass
class Measures:
    """What measure() found: the figures (summary.json's `measures`), the full key lists and
    series (audit.json), the scenario as stored, the reasons the drill was aborted, and notes on
    what the folder lacked."""

    folder: Path
    scenario: dict[str, Any]
    values: dict[str, Any]
    audit: dict[str, Any]
    aborted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)


def measure(folder: Path | str) -> Measures:
    """Every measure of the drill in `folder`, from its files only."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvidenceError(f"{folder}: no such folder")
    if not (folder / REQUESTS_DIR).is_dir() and not (folder / EVENTS).exists():
        raise EvidenceError(f"{folder}: not a drill evidence folder (no {REQUESTS_DIR}/ or {EVENTS})")
    notes: list[str] = []
    scenario = read.read_scenario(folder, notes)
    stable = read.duration(scenario.get("stable", DEFAULT_STABLE), folder / SCENARIO, "stable")
    try:
        events = read_events(folder)
    except (ValueError, KeyError, TypeError) as exc:
        raise EvidenceError(f"{folder / EVENTS}: malformed event log ({exc})") from exc
    aborted = [str(e.get("reason", "no reason recorded")) for e in events if e.get("kind") == DRILL_ABORTED]
    if harness_killed(events) and not aborted:
        if (folder / FINAL_STATE).exists():
            notes.append(f"{EVENTS} has no {DRILL_END}: the harness stopped after the data audit, "
                         "before its teardown ended")
        else:  # killed before the audit: what the records allow is measured, the data is unknown
            aborted.append(f"{HARNESS_KILLED}: {EVENTS} has no {DRILL_END}")
    fault = fault_of(events)
    t_fault = fault.t
    if fault.not_measured:
        notes.append(f"RTO and RPO {fault.not_measured}")

    ops = read_history(folder)
    final = read.read_final_state(folder, required=not aborted)
    if final is None:
        notes.append(f"not audited: no {FINAL_STATE} (the drill was aborted before or during the data audit), "
                     "so the data measures are unknown")
    scope = next((e["scope"] for e in events if e.get("kind") in (DRILL_START, AUDIT_DONE)
                  and isinstance(e.get("scope"), str) and e["scope"]), None)
    if scope is not None:  # the drill's keys only: other data is not the drill's
        held, wrote = outside_scope(ops, final, scope)
        if held:
            notes.append(f"{held} records of the final state are not the drill's keys ({scope}…): not audited")
        if wrote:
            notes.append(f"{wrote} keys written outside the drill's keys ({scope}…), named by the locustfile "
                         "itself: not audited (docs/targets.md, key scope)")

    m: dict[str, Any] = {}
    m.update(rto(ops, t_fault, stable, fault.t_lo, fault.width))
    m.update(last_client(ops, t_fault, fault.t_lo))
    audit_measures, lists = audit(ops, final, t_fault, None if t_fault is None else (fault.t_lo, fault.t_hi),
                                  scope)
    m.update(audit_measures)
    m["audited"] = final is not None
    m.update(counts(ops))
    m.update(indeterminate_counts(ops))
    avail, series = availability(ops)
    m["availability"] = avail
    lists["availability_per_second"] = series
    frame = read_lag(folder)
    m.update(lag(frame))
    m["alarms_raised"] = alarms_raised(events, t_fault)
    m["alarms"] = alarms(_alarm_definitions(scenario, folder), events, frame, t_fault)
    detected = [a["time_to_detect_s"] for a in m["alarms"] if a["time_to_detect_s"] is not None]
    m["time_to_detect_s"] = max(detected) if detected else None
    m["phases"] = phases(events)
    m.update(restore_tests(events))
    m.update(load_workers(events))
    m["clock_offsets"] = [c.as_dict() for c in ops.clocks]
    m["clock_uncertainty_s"] = ops.clock_uncertainty_s
    if "item_write" in ops.classes:
        items, item_lists = measure_items(folder, ops.item_writes, events, t_fault)
        m.update(items)
        lists.update(item_lists)
        if items["rpo_items_s"] is not None and m.get("rpo_by_store") is not None:
            m["rpo_by_store"]["items"] = {"rpo_s": items["rpo_items_s"], "writes_acked": items["items_acked"],
                                          "writes_lost": items["items_lost"]}
            m["rpo_s"] = max(m["rpo_s"] or 0.0, items["rpo_items_s"])
    m["t_fault"] = seconds(t_fault)
    m["t_fault_lo"], m["t_fault_hi"] = seconds(fault.t_lo), seconds(fault.t_hi)
    m["t_fault_source"] = fault.source
    m["not_measured"] = fault.not_measured
    m["faults_failed"] = [{k: e.get(k) for k in ("fault", "activity", "error", "t")} for e in fault.failed]
    if fault.not_measured:
        _without_fault(m)
    t_start = next((e["t"] for e in events if e.get("kind") == DRILL_START), None)
    t_end = next((e["t"] for e in reversed(events) if e.get("kind") == DRILL_END), None)
    m["t_start"] = seconds(t_start if t_start is not None else (ops.t0.min() if ops.t0.size else None))
    m["t_end"] = seconds(t_end if t_end is not None else (ops.t1.max() if ops.t1.size else None))
    return Measures(folder, scenario, m, lists, aborted, notes)


NEEDS_FAULT = ("rto_s", "rto_write_s", "rto_read_s", "rto_resolution_s", "rto_last_client_s", "rpo_s",
               "rpo_items_s", "writes_lost_after_fault", "writes_lost_around_fault")
"""Measures taken from the fault's instant: null ("not measured") in a drill without one."""


def _without_fault(m: dict[str, Any]) -> None:
    """No fault instant: no RTO and no RPO, never 0 (docs/measurements.md, "The fault")."""
    for name in NEEDS_FAULT:
        if name in m:
            m[name] = None
    for got in (m.get("rto_by_op") or {}).values():
        got.update(rto_s=None, resolution_s=None)
    for got in (m.get("rpo_by_store") or {}).values():
        got["rpo_s"] = None


def _alarm_definitions(scenario: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    from pydantic import ValidationError

    from drillkit.scenario.schema import Alarm

    raw = scenario.get("alarms") or []
    if not isinstance(raw, list):
        raise EvidenceError(f"{folder / SCENARIO}: alarms: must be a list")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(Alarm.model_validate(item).model_dump())
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise EvidenceError(f"{folder / SCENARIO}: alarms[{i}].{where}: {err['msg']}") from None
    return out


def compare_measures(stored: dict[str, Any], recomputed: dict[str, Any], tolerance: float = 1e-6) -> list[str]:
    """The measures whose stored value differs from the recomputed one, as `name: stored → now`."""
    out = []
    for name in sorted(set(stored) | set(recomputed)):
        a, b = stored.get(name), recomputed.get(name)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            same = abs(a - b) <= tolerance
        else:
            same = a == b
        if not same:
            out.append(f"{name}: {a!r} → {b!r}")
    return out
