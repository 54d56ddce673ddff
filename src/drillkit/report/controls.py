"""What a drill evidences, and which controls ask for it: the report's section "What this drill
evidences".

The facts come from summary.json alone; the mapping from facts to controls is a YAML file
(drillkit.scenario.controls: the shipped one, or the scenario's `readiness.controls`, kept in the
evidence folder as controls.yaml so a report rendered months later uses the mapping the drill used). A control is
listed as evidenced only when every fact it needs is shown, each with the figures that show it;
the others are listed with the facts this drill does not show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from drillkit.errors import InputError
from drillkit.judge import checks
from drillkit.report import fmt
from drillkit.scenario.controls import EVIDENCE_FILE, Control, load_mapping


@dataclass
class Shown:
    fact: str
    statement: str


@dataclass
class Evidenced:
    shown: list[Shown] = field(default_factory=list)
    met: list[tuple[Control, list[str]]] = field(default_factory=list)
    """(control, the facts it needs, all shown)"""
    unmet: list[tuple[Control, list[str]]] = field(default_factory=list)
    """(control, the facts this drill does not show)"""
    mapping: str = "drillkit's shipped mapping"

    @property
    def recovery_tested(self) -> bool:
        return any(s.fact == "recovery_test" for s in self.shown)


def facts(summary: dict[str, Any], scenario: dict[str, Any] | None) -> list[Shown]:
    """The facts summary.json shows, each as one sentence with its figures."""
    m = summary.get("measures") if isinstance(summary.get("measures"), dict) else {}
    stored = [c for c in summary.get("checks") or [] if isinstance(c, dict)]
    verdict = str(summary.get("verdict") or "").lower()
    readiness = (scenario or {}).get("readiness") if isinstance((scenario or {}).get("readiness"), dict) else {}
    system = readiness.get("system") or "the system"
    out = []
    t_fault = fmt.num(m.get("t_fault"))
    if t_fault is not None and verdict in ("pass", "fail"):
        day = datetime.fromtimestamp(t_fault, timezone.utc).strftime("%Y-%m-%d")
        out.append(Shown("recovery_test", f"A recovery test of {system} (scenario {summary.get('scenario')}) on {day}: "
                                          f"a fault injected at {fmt.utc(t_fault)}, the drill judged {verdict.upper()}."))
    judged = [c for c in stored if checks.kind_of(c) in (checks.RTO, checks.RPO) and c.get("target") is not None]
    if judged and t_fault is not None and verdict in ("pass", "fail"):
        parts = [f"{str(c.get('name')).upper()} measured {fmt.secs(fmt.num(c.get('measured')))} against "
                 f"{fmt.secs(fmt.num(c.get('target')))}: {'met' if c.get('passed') else 'missed'}" for c in judged]
        out.append(Shown("objectives_judged", "; ".join(parts) + "."))
    if m.get("audited") is True and m.get("writes_lost") is not None:
        out.append(Shown("data_loss_counted", f"The final state was audited: {fmt.count(m.get('writes_acked'))} "
                                              f"acknowledged writes, {fmt.count(m.get('writes_lost'))} lost."))
    restores = [t for t in m.get("restore_tests") or [] if isinstance(t, dict)]
    verified = [t for t in restores if t.get("verified") is True]
    if verified:
        out.append(Shown("restore_test", f"{len(verified)} of {len(restores)} restore test(s) verified."))
    return out


def evidenced(folder: Path, summary: dict[str, Any], scenario: dict[str, Any] | None) -> Evidenced:
    kept = folder / EVIDENCE_FILE
    try:
        mapping = load_mapping(kept if kept.is_file() else None)
        label = f"the mapping kept with this drill ({EVIDENCE_FILE})" if kept.is_file() else "drillkit's shipped mapping"
    except InputError as exc:
        return Evidenced(mapping=f"unreadable control mapping: {exc}")
    shown = facts(summary, scenario)
    by_fact = {s.fact: s.statement for s in shown}
    out = Evidenced(shown=shown, mapping=label)
    for control in mapping.controls:
        missing = [f for f in control.needs if f not in by_fact]
        if missing:
            out.unmet.append((control, missing))
        else:
            out.met.append((control, list(control.needs)))
    return out

