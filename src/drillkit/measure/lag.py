"""Replication as lag.csv saw it, and the alarms the drill recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from drillkit.errors import EvidenceError
from drillkit.evidence import ALARM_STATE, LAG

from .read import seconds as _r


def read_lag(folder: Path) -> pd.DataFrame | None:
    """lag.csv as a frame (the one reader of the file: measure and the report); None when the
    drill wrote none or only its header. Read by Arrow's CSV reader: pandas' own C parser crashed
    the drill's process (SIGSEGV inside its tokenizer) reading a lag.csv a fresh process reads
    fine, every time a drill was interrupted just after its recovery."""
    path = folder / LAG
    try:
        if not path.exists() or path.stat().st_size == 0:
            return None
        frame = pd.read_csv(path, engine="pyarrow")
    except (pd.errors.ParserError, ValueError, OSError) as exc:  # Arrow's errors are ValueErrors
        raise EvidenceError(f"{path}: not a lag CSV ({exc})") from exc
    return None if frame.empty else frame


def lag(frame: pd.DataFrame | None) -> dict[str, Any]:
    out = {"max_replication_lag_s": None, "max_replication_lag_bytes": None,
           "max_object_backlog": None, "max_object_backlog_age_s": None}
    if frame is None:
        return out
    for col, name in (("replay_lag_s", "max_replication_lag_s"), ("lag_bytes", "max_replication_lag_bytes"),
                      ("object_backlog", "max_object_backlog"), ("object_backlog_age_s", "max_object_backlog_age_s")):
        if col in frame.columns:
            top = pd.to_numeric(frame[col], errors="coerce").max()
            if pd.notna(top):
                out[name] = _r(top) if col.endswith("_s") else int(top)
    return out


def alarms_raised(events: list[dict[str, Any]], t_fault: float | None) -> list[dict[str, Any]]:
    """Each time a scenario alarm went to ALARM during the drill (a state seen change, or ALARM at
    first sight), at the time its source says it changed, and how long after the fault."""
    out = []
    for e in events:
        if e.get("kind") != ALARM_STATE or e.get("state") != "ALARM" or e.get("previous") == "ALARM":
            continue
        at = float(e["changed_at"])
        out.append({"alarm": e.get("alarm"), "region": e.get("region"), "raised_at": _r(at),
                    "after_fault_s": None if t_fault is None else _r(at - t_fault),
                    "stops_drill": bool(e.get("stops_drill"))})
    return out

