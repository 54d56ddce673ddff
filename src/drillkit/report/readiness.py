"""Readiness: per system and scenario, the last drill, its verdict and objectives, when the next
is due and what is overdue, read from the drills `drillkit history` found (folders and register).

A scenario's cadence (`readiness.cadence`: 1mo, 3mo, 6mo, 1y, 2w, 30d) counts from its last
drill that passed and whose evidence is here: a failed, aborted, killed or missing drill proves
no recovery, so it does not reset the clock. Months and years are calendar ones.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dateutil.relativedelta import relativedelta

from drillkit import evidence as ev
from drillkit.durations import utc_text

CSV = "readiness.csv"
JSON = "readiness.json"
UNITS = {"d": "days", "w": "weeks", "mo": "months", "y": "years"}
OVERDUE, DUE, NEVER, NO_CADENCE = "overdue", "due", "never passed", "no cadence"


def cadence_delta(cadence: str) -> relativedelta:
    m = re.fullmatch(r"([1-9][0-9]{0,3})(d|w|mo|y)", cadence)
    if not m:
        raise ValueError(f"not a cadence: {cadence!r} (1mo, 3mo, 6mo, 1y, 2w, 30d)")
    return relativedelta(**{UNITS[m.group(2)]: int(m.group(1))})


@dataclass
class Row:
    system: str
    scenario: str
    owner: str
    cadence: str
    last_drill_utc: str
    last_verdict: str
    last_drill: str
    objectives: str
    last_pass_utc: str
    next_due_utc: str
    status: str
    """due (not yet overdue) · overdue · never passed · no cadence"""


def _iso(t: datetime | float | None) -> str:
    return "" if t is None else utc_text(t, "seconds")


def rows(found: Any, as_of: datetime) -> list[Row]:
    """One row per scenario of `found` (a drillkit.report.history.Found), as of `as_of`."""
    out = []
    for scenario, drills in sorted(found.by_scenario().items()):
        timed = [d for d in drills if d.start is not None]
        last = max(timed, key=lambda d: d.start or 0.0) if timed else drills[-1]
        with_readiness = [d for d in timed if d.readiness] or [d for d in drills if d.readiness]
        ready = (max(with_readiness, key=lambda d: d.start or 0.0).readiness if with_readiness else {})
        passes = [d for d in timed if d.verdict == "pass"]
        last_pass = max(passes, key=lambda d: d.start or 0.0) if passes else None
        cadence = ready.get("cadence", "")
        due: datetime | None = None
        if not cadence:
            status = NO_CADENCE
        elif last_pass is None:
            status = NEVER
        else:
            due = datetime.fromtimestamp(last_pass.start or 0.0, timezone.utc) + cadence_delta(cadence)
            status = OVERDUE if as_of > due else DUE
        out.append(Row(
            system=ready.get("system", ""), scenario=scenario, owner=ready.get("owner", ""), cadence=cadence,
            last_drill_utc=_iso(last.start), last_verdict=last.verdict_label, last_drill=last.name,
            objectives=", ".join(f"{k.upper()} ≤ {v:g} s" for k, v in last.targets.items() if v is not None),
            last_pass_utc=_iso(last_pass.start if last_pass else None), next_due_utc=_iso(due), status=status))
    return sorted(out, key=lambda r: (r.system, r.scenario))


def write(found: Any, as_of: datetime) -> tuple[list[Row], Path, Path]:
    """readiness.csv and readiness.json beside history.html (for a GRC tool); returns the rows."""
    table = rows(found, as_of)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(Row.__dataclass_fields__), lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(r) for r in table)
    csv_path = ev.write_atomic(found.root / CSV, buf.getvalue())
    doc: dict[str, Any] = {"format": "drillkit-readiness/1", "as_of_utc": _iso(as_of),
                           "scenarios": [asdict(r) for r in table]}
    json_path = ev.write_atomic(found.root / JSON, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    return table, csv_path, json_path
