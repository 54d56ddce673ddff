"""Reading the evidence folder's other files into typed columns (the client history has its own
reader, drillkit.evidence.history): final_state.jsonl a key/checksum pair of Arrow columns,
scenario.yaml the stored mapping, the active-active table files. A bad line is reported with its
file and line number.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from drillkit.durations import parse_duration
from drillkit.errors import EvidenceError, InputError
from drillkit.evidence import FINAL_STATE, FINAL_TABLE, SCENARIO, TABLE_REPLICATION
from drillkit.evidence.columns import read_columns
from drillkit.yamlfile import load_yaml

DEFAULT_STABLE = 2.0


def seconds(x: Any) -> float | None:
    """Seconds to the microsecond; the clocks say no more."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


def read_scenario(folder: Path, notes: list[str]) -> dict[str, Any]:
    path = folder / SCENARIO
    if not path.exists():
        notes.append(f"no {SCENARIO}: default stable window {DEFAULT_STABLE:g} s and no targets")
        return {}
    try:
        data = load_yaml(path, "scenario") or {}
    except InputError as exc:
        raise EvidenceError(str(exc)) from None
    if not isinstance(data, dict):
        raise EvidenceError(f"{path}: not a scenario mapping")
    if not isinstance(data.get("targets") or {}, dict):
        raise EvidenceError(f"{path}: targets: must be a mapping")
    return data


def duration(value: Any, path: Path, field: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise EvidenceError(f"{path}: {field}: {exc}") from exc


FINAL_FIELDS = {"key": "string", "checksum": "string?"}
APPLIED_FIELDS = {"t": "number", "key": "string", "value": "string", "to": "string", "outcome": "string"}


def read_final_state(folder: Path, required: bool) -> dict[str, Any] | None:
    """`key` and `checksum`, Arrow string arrays (None: not audited)."""
    path = folder / FINAL_STATE
    if not path.exists():
        if required:
            raise EvidenceError(f"{path}: missing (the post-drill audit of the serving region)")
        return None
    return read_columns(path, FINAL_FIELDS)



# -- active-active: the global table's evidence (drillkit.measure.lww) ------------------------


def read_final_table(folder: Path) -> dict[str, dict[str, str]] | None:
    """Each standing region's final table, region → key → value (None: not audited)."""
    path = folder / FINAL_TABLE
    if not path.exists():
        return None
    try:
        regions = json.loads(path.read_text())["regions"]
        return {str(r): {str(k): str(item["value"]) for k, item in table.items()} for r, table in regions.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EvidenceError(f"{path}: malformed final table ({exc})") from None


def read_table_replication(folder: Path) -> list[dict[str, Any]]:
    path = folder / TABLE_REPLICATION
    if not path.exists():
        return []
    cols = {f: c.to_pylist() for f, c in read_columns(path, APPLIED_FIELDS).items()}
    return [dict(zip(APPLIED_FIELDS, row)) for row in zip(*(cols[f] for f in APPLIED_FIELDS))]
