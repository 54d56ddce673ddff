"""summary.json and audit.json: the measures, the checks and the verdict of one evidence folder.

`summarize(folder)` is the one road from evidence to verdict: measure, then judge. The drill, the
`drillkit measure` command, the probes and the report all take it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from drillkit.durations import utc_text
from drillkit.errors import EvidenceError
from drillkit.evidence import JOURNAL, SCENARIO, SUMMARY
from drillkit.measure import Measures, measure

from .checks import Check, judge, reasons, verdict

AUDIT = "audit.json"
EVIDENCE_FORMAT = 1


class Summary(dict):
    """The summary.json dict; `.audit` carries the full key lists and series for audit.json, and
    `.check_list` the typed checks."""

    audit: dict[str, Any] | None = None
    check_list: list[Check] = []


def summarize(folder: Path | str) -> Summary:
    measures = measure(folder)
    journal = read_journal(measures)
    checks = judge(measures, parse_targets(measures), journal)
    out = Summary(
        scenario=measures.scenario.get("name"),
        verdict=verdict(measures, checks),
        reasons=reasons(measures, checks),
        measures=measures.values,
        targets=measures.scenario.get("targets") or {},
        checks=[c.as_dict() for c in checks],
        notes=measures.notes,
        measured_at=utc_text(timespec="seconds"),
        evidence_format=EVIDENCE_FORMAT,
    )
    out.audit = measures.audit
    out.check_list = checks
    return out


def parse_targets(measures: Measures) -> dict[str, Any]:
    """The stored scenario's targets, through the scenario schema (seconds, counts, ratios)."""
    from drillkit.scenario.schema import Targets

    raw = measures.scenario.get("targets") or {}
    if not isinstance(raw, dict):
        raise EvidenceError(f"{measures.folder / SCENARIO}: targets: must be a mapping")
    try:
        return Targets.model_validate(raw).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise EvidenceError(f"{measures.folder / SCENARIO}: targets.{where}: {err['msg']}") from None


def read_journal(measures: Measures) -> dict[str, Any] | None:
    path = measures.folder / JOURNAL
    if not path.exists():
        measures.notes.append(f"no {JOURNAL}: the experiment is taken as completed")
        return None
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EvidenceError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(journal, dict):
        raise EvidenceError(f"{path}: not a Chaos Toolkit journal")
    return journal


def write_summary(folder: Path | str, summary: dict) -> Path:
    """Write summary.json and, beside it, audit.json with every key list and the per-second series."""
    folder = Path(folder)
    audit = getattr(summary, "audit", None)
    if audit is None:
        audit = measure(folder).audit
    (folder / AUDIT).write_text(json.dumps(audit, indent=None, separators=(",", ":")) + "\n", encoding="utf-8")
    path = folder / SUMMARY
    path.write_text(json.dumps(dict(summary), indent=2) + "\n", encoding="utf-8")
    return path
