"""Runbook phases: named activities, or groups of them, timed from the event log.

An activity belongs to the phase its `drillkit` mark names (`{"phase": "promote"}`); an unmarked
activity is a phase of its own, under its own name. A phase lasts from the first of its activities'
provider calls to the end of the last (chaoslib's own times, without the activities' pauses, as the
fault marks are timed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from drillkit.evidence import ACTIVITY_END, METHOD_END, METHOD_START, ROLLBACKS_END, ROLLBACKS_START

from .read import seconds as _r


def phases(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{phase: {start, end, duration_s, activities, status}} in the order the phases began."""
    out: dict[str, dict[str, Any]] = {}
    for e in _runbook(events):
        if e.get("kind") != ACTIVITY_END or not e.get("name"):
            continue
        end = float(e["t"])
        start = _started(e, end)
        if e.get("duration") is not None and start != end:
            end = start + float(e["duration"])
        name = str(e.get("phase") or e["name"])
        p = out.setdefault(name, {"start": start, "end": end, "activities": [], "status": "succeeded"})
        p["start"], p["end"] = min(p["start"], start), max(p["end"], end)
        p["activities"].append(str(e["name"]))
        if e.get("status") != "succeeded":
            p["status"] = str(e.get("status") or "no status recorded")
    for p in out.values():
        p["duration_s"] = _r(p["end"] - p["start"])
        p["start"], p["end"] = _r(p["start"]), _r(p["end"])
    return dict(sorted(out.items(), key=lambda kv: kv[1]["start"]))


def _started(e: dict[str, Any], fallback: float) -> float:
    try:
        return datetime.fromisoformat(e["started"]).timestamp() if e.get("started") else fallback
    except (TypeError, ValueError):
        return fallback


def _runbook(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of the method and the rollbacks: the steady-state hypothesis's probes, before
    and after the method, are no runbook phase. Evidence without these marks keeps every event."""
    bounds = {METHOD_START: True, METHOD_END: False, ROLLBACKS_START: True, ROLLBACKS_END: False}
    if not any(e.get("kind") == METHOD_START for e in events):
        return events
    out, inside = [], False
    for e in events:
        inside = bounds.get(e.get("kind"), inside)
        if inside:
            out.append(e)
    return out

