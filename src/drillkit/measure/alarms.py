"""The scenario's alarms as measured results: when each condition first held (from lag.csv), when
the live evaluator raised it (from events.jsonl), and the time to detect between the two.

The moment a condition first held is the ground truth the alarm is held against. For a metric that
grows one second per second while nothing is applied (replication lag, object backlog age) it is
exact from the first sample over the threshold: `t - value + threshold`, never before the previous
sample of the same series. For a count (object backlog) it is that first sample's time, to the
sampling interval. An event metric (backup age, a region unhealthy) grows from a known event, so
its condition first held exactly `threshold` after the start of the first span that lasted longer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from drillkit.evidence import ALARM_CLEARED, ALARM_METRICS, ALARM_RAISED, EVENT_METRICS, TIME_METRICS, metric_spans

from .read import seconds as _r


def alarms(definitions: list[dict[str, Any]], events: list[dict[str, Any]], lag: pd.DataFrame | None,
           t_fault: float | None) -> list[dict[str, Any]]:
    return [_alarm(d, events, lag, t_fault) for d in definitions]


def _alarm(d: dict[str, Any], events: list[dict[str, Any]], lag: pd.DataFrame | None,
           t_fault: float | None) -> dict[str, Any]:
    name, metric, threshold = d["name"], d["metric"], float(d["above"])
    if metric in EVENT_METRICS:
        onset, peak = _event_onset(events, metric, threshold, d.get("region"))
    else:
        onset, peak = _onset(lag, metric, threshold, d.get("region"))
    mine = [e for e in events if e.get("alarm") == name and e.get("kind") in (ALARM_RAISED, ALARM_CLEARED)]
    raised = next((float(e["t"]) for e in mine if e["kind"] == ALARM_RAISED), None)
    cleared = next((float(e["t"]) for e in mine if e["kind"] == ALARM_CLEARED and raised is not None
                    and e["t"] >= raised), None)
    return {
        "alarm": name, "metric": metric, "threshold": threshold, "region": d.get("region"),
        "expect": d.get("expect"),
        "condition_held_at": _r(onset), "raised_at": _r(raised), "cleared_at": _r(cleared),
        "raised_count": sum(e["kind"] == ALARM_RAISED for e in mine),
        "time_to_detect_s": _r(raised - onset) if None not in (raised, onset) else None,
        "raised_after_fault_s": _r(raised - t_fault) if None not in (raised, t_fault) else None,
        "peak": _r(peak) if metric in TIME_METRICS else (None if peak is None else int(peak)),
    }


def _onset(lag: pd.DataFrame | None, metric: str, threshold: float, region: str | None
           ) -> tuple[float | None, float | None]:
    column = ALARM_METRICS[metric]
    if lag is None or column not in lag.columns:
        return None, None
    rows = lag if region is None else lag[lag["region"].astype(str) == region]
    values = pd.to_numeric(rows[column], errors="coerce")
    rows = rows[values.notna()]
    values = values[values.notna()].to_numpy(float)
    if not values.size:
        return None, None
    t = pd.to_numeric(rows["t"], errors="coerce").to_numpy(float)
    over = np.flatnonzero(values > threshold)
    if not over.size:
        return None, float(values.max())
    i = int(over[0])
    onset = t[i]
    if metric in TIME_METRICS:
        onset = t[i] - values[i] + threshold
        if i > 0:
            onset = max(onset, t[i - 1])
    return float(onset), float(values.max())


def _event_onset(events: list[dict[str, Any]], metric: str, threshold: float, region: str | None
                 ) -> tuple[float | None, float | None]:
    """An open span is bounded by the last event: the drill saw no further."""
    spans = metric_spans(events, metric, region)
    if not spans:
        return None, None
    last = max(float(e["t"]) for e in events)
    lengths = [(start, (last if end is None else end) - start) for start, end in spans]
    onset = next((start + threshold for start, length in lengths if length > threshold), None)
    return onset, max(length for _, length in lengths)
