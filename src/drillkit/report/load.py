"""Read an evidence folder for the report: everything but summary.json may be missing or damaged,
and the report must still render and say what it could not read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from drillkit import evidence as ev
from drillkit.errors import EvidenceError, InputError
from drillkit.evidence.history import History, history_files, read_timeline
from drillkit.measure.lag import read_lag
from drillkit.yamlfile import load_yaml


@dataclass
class Evidence:
    folder: Path
    summary: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    journal: dict[str, Any] | None = None
    scenario: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    lag: pd.DataFrame | None = None
    aws_calls: list[dict[str, Any]] = field(default_factory=list)
    history: History | None = None
    files: list[tuple[str, int]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def measures(self) -> dict[str, Any]:
        return self.summary.get("measures") or {}


def load(folder: str | Path) -> Evidence:
    folder = Path(folder)
    path = folder / ev.SUMMARY
    if not path.is_file():
        raise EvidenceError(f"{path}: no summary.json; run `drillkit measure {folder}` first")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvidenceError(f"{path}: not readable as JSON ({exc})") from exc
    if not isinstance(summary, dict):
        raise EvidenceError(f"{path}: expected a JSON object")
    e = Evidence(folder=folder, summary=summary)
    e.files = sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size)
        for p in folder.rglob("*") if p.is_file() and p.name not in (ev.REPORT, "summary.md")
        and not (p.name.startswith(".") and p.name.endswith(".tmp"))
    )
    e.events = _events(folder / ev.EVENTS, e)
    e.journal = _json(folder / ev.JOURNAL, e, "Chaos Toolkit activities")
    e.provenance = _json(folder / ev.PROVENANCE, e, "operator, host or versions")
    e.scenario = _scenario(folder / ev.SCENARIO, e)
    e.lag = _lag(folder / ev.LAG, e)
    try:
        e.aws_calls = ev.read_aws_calls(folder)
    except (OSError, ValueError) as exc:
        e.problems.append(f"{ev.AWS_CALLS}: unreadable ({exc}); the AWS call trail is not shown")
    if not history_files(folder):
        e.missing.append(f"{ev.REQUESTS_DIR}/*.jsonl (so no timeline chart)")
    else:
        e.history = read_timeline(folder)
        if e.history.unreadable:
            e.problems.append(f"{ev.REQUESTS_DIR}/: {_lines(e.history.unreadable)} could not be "
                              "read and are left out of the timeline chart")
        if not len(e.history):
            e.history = None
    return e


def _lines(n: int) -> str:
    return "1 line" if n == 1 else f"{n:,} lines"


def _missing(path: Path, e: Evidence, what: str) -> bool:
    if path.is_file():
        return False
    e.missing.append(f"{path.name} (so no {what})")
    return True


def _json(path: Path, e: Evidence, what: str) -> dict[str, Any] | None:
    if _missing(path, e, what):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        e.problems.append(f"{path.name}: not readable as JSON ({exc})")
        return None
    if not isinstance(data, dict):
        e.problems.append(f"{path.name}: expected a JSON object")
        return None
    return data


def _events(path: Path, e: Evidence) -> list[dict[str, Any]]:
    if _missing(path, e, "phases or event marks"):
        return []
    out, bad = [], 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                rec["t"] = float(rec["t"])
                rec["kind"] = str(rec["kind"])
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            out.append(rec)
    if bad:
        e.problems.append(f"{path.name}: {_lines(bad)} could not be read and are left out")
    return sorted(out, key=lambda r: r["t"])


def _scenario(path: Path, e: Evidence) -> dict[str, Any] | None:
    if _missing(path, e, "scenario and topology details"):
        return None
    try:
        data = load_yaml(path, "scenario")
    except InputError as exc:
        e.problems.append(f"{path.name}: not readable as YAML ({exc.message})")
        return None
    if not isinstance(data, dict):
        e.problems.append(f"{path.name}: expected a mapping")
        return None
    return data


def _lag(path: Path, e: Evidence) -> pd.DataFrame | None:
    if _missing(path, e, "replication-lag chart"):
        return None
    try:
        df = read_lag(path.parent)
    except EvidenceError as exc:
        e.problems.append(f"{path.name}: not readable as CSV ({exc})")
        return None
    if df is None:
        df = pd.DataFrame(columns=["t", "region", "replay_lag_s"])
    need = {"t", "region", "replay_lag_s"}
    if not need <= set(df.columns):
        e.problems.append(f"{path.name}: no column {', '.join(sorted(need - set(df.columns)))}")
        return None
    for col in ("t", "replay_lag_s", "lag_bytes"):
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    df["region"] = df["region"].astype(str)
    return df.dropna(subset=["t", "replay_lag_s"]).sort_values("t")
