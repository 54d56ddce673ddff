"""The trend across drills: RTO, RPO, verdict and lost writes per scenario over time, as a
terminal table and as history.html, read only from the evidence folders under one directory."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from markupsafe import Markup

import drillkit
from drillkit import evidence as ev
from drillkit.escape import terminal
from drillkit.errors import EvidenceError, InputError
from drillkit.evidence import register
from drillkit.evidence.register import read_register
from drillkit.judge import checks
from drillkit.report import fmt, pages
from drillkit.report.charts import chart_style, inline_svg
from drillkit.yamlfile import load_yaml

HISTORY = "history.html"
VERDICT_COLOURS = {"pass": "#1a7f37", "fail": "#c62828", "aborted": "#b26a00", "unknown": "#57606a",
                   "incomplete": "#6e4a9e", "missing": "#000000"}
INCOMPLETE = "incomplete"
"""A killed drill's folder: no summary.json, an event log without drill.end (ev.harness_killed)."""
MISSING = "missing"
"""A drill the register names whose folder is gone (drillkit.evidence.register)."""
SERIES = {"rto": ("RTO", "#2166ac", "o", "-"), "rpo": ("RPO", "#e08214", "s", "--")}


@dataclass
class Drill:
    folder: Path
    name: str
    scenario: str
    verdict: str
    start: float | None
    measures: dict[str, Any]
    targets: dict[str, float | None]
    description: str = ""
    operator: str = ""
    commit: str = ""
    has_report: bool = False
    checks: list[dict[str, Any]] = field(default_factory=list)
    readiness: dict[str, Any] = field(default_factory=dict)
    """The scenario's `readiness` block as the drill stored it (system, owner, cadence)."""
    registered: str | None = None
    """For a missing drill: what the register says of it (its verdict, or that it never sealed)."""

    @property
    def verdict_label(self) -> str:
        if self.verdict == MISSING:
            return f"MISSING (registered {self.registered})"
        return ev.HARNESS_KILLED if self.verdict == INCOMPLETE else self.verdict.upper()

    def m(self, key: str) -> float | None:
        return fmt.num(self.measures.get(key))

    @property
    def not_recovered(self) -> bool:
        return self.m("rto_s") is None and bool(self.measures.get("not_recovered"))

    def rto_text(self) -> str:
        return "not recovered" if self.not_recovered else fmt.secs(self.m("rto_s"))

    @cached_property
    def phases(self) -> dict[str, tuple[float | None, float | None, bool | None]]:
        """{phase: (measured s, budget s, passed)}: every measured phase, and every budgeted one
        (a budgeted phase that never ran has no measured time and failed)."""
        recorded = self.measures.get("phases") if isinstance(self.measures.get("phases"), dict) else {}
        out = {str(k): (fmt.num((v or {}).get("duration_s")), None, None) for k, v in recorded.items()}
        for subject, c in checks.by_subject(self.checks, checks.PHASE).items():
            out[subject] = (fmt.num(c.get("measured")), fmt.num(c.get("target")), bool(c.get("passed")))
        return out

    def phases_text(self) -> str:
        """The budgeted phases, `promote 2.25 s / 2 s ✗`; unbudgeted ones are in the HTML only."""
        return ", ".join(f"{name} {_phase_cell(got, budget, ok)}"
                         for name, (got, budget, ok) in self.phases.items() if budget is not None)

    def lost_text(self) -> str:
        lost, after = self.m("writes_lost"), self.m("writes_lost_after_fault")
        text = fmt.count(lost)
        return f"{text} (+{fmt.count(after)} after fault)" if after else text


@dataclass
class Found:
    root: Path
    drills: list[Drill]
    skipped: list[str] = field(default_factory=list)

    def by_scenario(self) -> dict[str, list[Drill]]:
        out: dict[str, list[Drill]] = {}
        for d in sorted(self.drills, key=lambda d: (d.scenario, d.start is None, d.start or 0, d.name)):
            out.setdefault(d.scenario, []).append(d)
        return out


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _read(folder: Path, root: Path) -> Drill:
    """One drill from its summary; scenario.yaml and provenance.json only fill gaps."""
    summary = _json(folder / ev.SUMMARY)
    if not isinstance(summary, dict) or "verdict" not in summary:
        raise ValueError("summary.json has no verdict")
    try:
        scenario = load_yaml(folder / ev.SCENARIO, "scenario")
    except InputError:
        scenario = None
    scenario = scenario if isinstance(scenario, dict) else {}
    try:
        prov = _json(folder / ev.PROVENANCE)
    except (OSError, ValueError):
        prov = None
    prov = prov if isinstance(prov, dict) else {}
    measures = summary.get("measures") if isinstance(summary.get("measures"), dict) else {}
    targets = summary.get("targets") or scenario.get("targets") or {}
    start = fmt.num(measures.get("t_start"))
    if start is None and prov.get("started_utc"):
        start = fmt.iso_seconds(prov["started_utc"])
    verdict = str(summary.get("verdict")).lower()
    return Drill(
        folder=folder, name=folder.relative_to(root).as_posix(),
        scenario=str(summary.get("scenario") or scenario.get("name") or folder.name),
        verdict=verdict if verdict in VERDICT_COLOURS else "unknown", start=start,
        measures=measures,
        targets={k: fmt.seconds_of(targets.get(k)) for k in ("rto", "rpo")}
        if isinstance(targets, dict) else {},
        description=str(scenario.get("description") or ""),
        operator=str(prov.get("operator") or ""), commit=str(prov.get("git_commit") or "")[:10],
        has_report=(folder / ev.REPORT).is_file(),
        checks=[c for c in summary.get("checks") or [] if isinstance(c, dict)],
        readiness=_readiness(scenario),
    )


def _readiness(scenario: dict[str, Any]) -> dict[str, Any]:
    block = scenario.get("readiness")
    return {k: v for k, v in block.items() if isinstance(v, str)} if isinstance(block, dict) else {}


def _read_killed(folder: Path, root: Path) -> Drill | None:
    """A folder without summary.json whose event log says the harness was killed mid-drill; None
    when it is no such folder. What it can say comes from events.jsonl and scenario.yaml alone."""
    events = ev.read_events(folder)
    if not ev.harness_killed(events):
        return None
    try:
        scenario = load_yaml(folder / ev.SCENARIO, "scenario")
    except InputError:
        scenario = None
    scenario = scenario if isinstance(scenario, dict) else {}
    start = next((fmt.num(e.get("t")) for e in events if e.get("kind") == ev.DRILL_START), None)
    return Drill(folder=folder, name=folder.relative_to(root).as_posix(),
                 scenario=str(scenario.get("name") or folder.name), verdict=INCOMPLETE, start=start,
                 measures={}, targets={}, description=str(scenario.get("description") or ""),
                 readiness=_readiness(scenario))


def _registered_missing(here: Path, root: Path, present: set[Path]) -> list[Drill]:
    """The drills `here`'s register names whose folder is not among those found: each as missing,
    with what the register recorded of it (never silently left out)."""
    runs: dict[str, dict[str, Any]] = {}
    for entry in read_register(here):
        run = runs.setdefault(str(entry.get("run_id")), {})
        run.update({k: v for k, v in entry.items() if v is not None and k not in ("utc", "seq", "prev")})
        run.setdefault("started_utc", entry.get("utc"))
        run["ended"] = run.get("ended") or entry.get("event") != register.STARTED
    out = []
    for run in runs.values():
        name = run.get("drill")
        if not isinstance(name, str) or (here / name).resolve() in present:
            continue
        objectives = run.get("objectives") if isinstance(run.get("objectives"), dict) else {}
        measures = run.get("measures") if isinstance(run.get("measures"), dict) else {}
        registered = (str(run.get("verdict") or "").upper() or f"{run.get('event')}: {run.get('reason', '')}".strip(": ")
                      if run["ended"] else "started, never sealed")
        out.append(Drill(folder=here / name, name=(here / name).relative_to(root).as_posix(),
                         scenario=str(run.get("scenario") or name), verdict=MISSING,
                         start=fmt.iso_seconds(run.get("started_utc")), measures=measures,
                         targets={"rto": fmt.num(objectives.get("rto_s")), "rpo": fmt.num(objectives.get("rpo_s"))},
                         readiness={k: run[k] for k in ("system", "owner", "cadence") if isinstance(run.get(k), str)},
                         registered=registered))
    return out


def _phase_cell(got: float | None, budget: float | None, ok: bool | None) -> str:
    text = "not run" if got is None else fmt.secs(got)
    if budget is not None:
        text += f" / {budget:g} s " + ("✓" if ok else "✗")
    return text


def scan(root: str | os.PathLike[str]) -> Found:
    """Every drill (a folder with a summary.json) under `root`; drill folders are not entered,
    so a large requests/ costs nothing. Unreadable summaries are listed as skipped."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("no such folder", file=str(root))
    if (root / ev.SUMMARY).is_file() or (root / ev.EVENTS).is_file():
        raise InputError(f"this is one drill's evidence folder; give the folder that holds drills "
                         f"(e.g. {root.parent}) so {HISTORY} is not written into the evidence",
                         file=str(root))
    found = Found(root, [])
    registers, seen = [], set()
    for here, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if register.REGISTER in names:
            registers.append(Path(here))
        if ev.SUMMARY not in names and ev.EVENTS not in names:
            continue
        dirs[:] = []
        folder = Path(here)
        seen.add(folder.resolve())
        try:
            if ev.SUMMARY in names:
                found.drills.append(_read(folder, root))
            elif (killed := _read_killed(folder, root)) is not None:
                found.drills.append(killed)
            else:
                found.skipped.append(f"{folder.relative_to(root).as_posix()}: no {ev.SUMMARY} "
                                     "(run `drillkit measure` on it)")
        except (OSError, ValueError, KeyError, TypeError, EvidenceError) as exc:
            found.skipped.append(f"{folder.relative_to(root).as_posix()}: {exc}")
    for here in registers:
        found.drills += _registered_missing(here, root, seen)
    if not found.drills:
        raise EvidenceError(f"{root}: no drill evidence folder (one holding summary.json or events.jsonl) "
                            "under it" + (f"; skipped {'; '.join(found.skipped)}" if found.skipped else ""))
    return found


def print_table(found: Found, file: TextIO | None = None) -> None:
    """Rows grouped by scenario, oldest first; a rule between scenarios."""
    import shutil

    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    styles = {"pass": "bold green", "fail": "bold red", "aborted": "bold yellow"}
    table = Table(box=box.SIMPLE_HEAD, title=Text(f"drills under {terminal(found.root)}"), title_justify="left")
    for name, just in (("Scenario", "left"), ("Start (UTC)", "left"), ("Verdict", "left"),
                       ("RTO", "right"), ("RPO", "right"), ("Lost writes", "right"), ("Phases", "left"),
                       ("Folder", "left")):
        table.add_column(name, justify=just, no_wrap=name != "Folder", overflow="fold")
    groups = found.by_scenario()
    for i, (scenario, drills) in enumerate(groups.items()):
        for j, d in enumerate(drills):
            target = d.targets.get("rto")
            rto_miss = target is not None and (d.not_recovered or (d.m("rto_s") or 0) > target)
            table.add_row(
                Text(terminal(scenario) if j == 0 else ""), Text(fmt.utc(d.start).removesuffix(" UTC")),
                Text(d.verdict_label, style=styles.get(d.verdict, "")),
                Text(d.rto_text(), style="red" if rto_miss else ""), Text(fmt.secs(d.m("rpo_s"))),
                Text(d.lost_text()), Text(terminal(d.phases_text()), style="red" if any(
                    ok is False for _, _, ok in d.phases.values()) else ""), Text(terminal(d.name)),
                end_section=j == len(drills) - 1 and i < len(groups) - 1)
    # never narrower than the table: a figure cut to fit ("0.52" for 0.525 s) or a column dropped
    # misreports the drill; a wide table wraps in the terminal instead
    width = shutil.get_terminal_size((160, 24)).columns
    needed = Console(width=10_000).measure(table).maximum
    Console(file=file, width=max(width, needed), highlight=False).print(table)


def _chart(drills: list[Drill], prefix: str) -> str | None:
    """RTO and RPO against drill start, targets dashed; marker fill is the verdict."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    timed = [d for d in drills if d.start is not None]
    if not timed:
        return None
    with chart_style(prefix):
        fig = Figure(figsize=(10, 3.2))
        ax = fig.subplots()
        handles = []
        for key, (label, colour, marker, ls) in SERIES.items():
            pts = [(datetime.fromtimestamp(d.start, timezone.utc), d.m(f"{key}_s"), d.verdict)
                   for d in timed if d.m(f"{key}_s") is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour, ls=ls, lw=1.2, zorder=2)
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, s=60, zorder=3,
                           c=[VERDICT_COLOURS[p[2]] for p in pts], edgecolors=colour, linewidths=1.6)
            handles.append(Line2D([], [], color=colour, ls=ls, marker=marker, label=f"{label} (s)"))
            target = drills[-1].targets.get(key)
            if target is not None:
                ax.axhline(target, color=colour, lw=0.9, ls=":", zorder=1)
                handles.append(Line2D([], [], color=colour, ls=":", label=f"{label} target {target:g} s"))
        stuck = [datetime.fromtimestamp(d.start, timezone.utc) for d in timed if d.not_recovered]
        if stuck:
            ax.scatter(stuck, [1.0] * len(stuck), transform=ax.get_xaxis_transform(), marker="x",
                       s=60, color=VERDICT_COLOURS["fail"], clip_on=False, zorder=4)
            handles.append(Line2D([], [], color=VERDICT_COLOURS["fail"], marker="x", ls="",
                                  label="RTO: not recovered"))
        for verdict in sorted({d.verdict for d in timed}):
            handles.append(Line2D([], [], color="#888", marker="o", ls="", label=verdict,
                                  markerfacecolor=VERDICT_COLOURS[verdict]))
        locator = AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
        ax.set_ylim(bottom=0)
        ax.set_ylabel("seconds")
        ax.set_xlabel("drill start (UTC)")
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7.5)
        fig.subplots_adjust(left=0.07, right=0.78, top=0.93, bottom=0.2)
        return inline_svg(fig, f"RTO and RPO per drill over time ({len(timed)} drills)", prefix)


def _runbook(d: Drill) -> set[str]:
    """The phases that are runbook activities (the journal's method), not steady-state probes."""
    return set(checks.by_subject(d.checks, checks.RUNBOOK_STEP)) | {
        name for name, p in (d.measures.get("phases") or {}).items()
        if isinstance(p, dict) and len(p.get("activities") or []) > 1}


def write_html(found: Found, as_of: datetime | None = None) -> Path:
    """history.html in the scanned folder: one self-contained page, links to each drill's
    report.html by relative path (a file beside it, never a network fetch); readiness.csv and
    readiness.json beside it (drillkit.report.readiness), as of `as_of` (default now)."""
    from drillkit.report import readiness

    as_of = as_of or datetime.now(timezone.utc)
    ready, _, _ = readiness.write(found, as_of)
    sections = []
    for i, (scenario, drills) in enumerate(found.by_scenario().items()):
        svg = _chart(drills, f"h{i}")
        rows = [{
            "start": fmt.utc(d.start), "verdict": d.verdict, "label": d.verdict_label, "rto": d.rto_text(),
            "rto_w": fmt.secs(d.m("rto_write_s")), "rto_r": fmt.secs(d.m("rto_read_s")),
            "rpo": fmt.secs(d.m("rpo_s")), "lost": d.lost_text(),
            "acked": fmt.count(d.m("writes_acked")), "operator": d.operator, "commit": d.commit,
            "name": d.name, "href": quote(f"{d.name}/{ev.REPORT}") if d.has_report else None,
        } for d in drills]
        targets = drills[-1].targets
        names = list(dict.fromkeys(n for d in drills for n, (_, budget, _) in d.phases.items()
                                   if budget is not None or n in _runbook(d)))
        phase_rows = [{"start": fmt.utc(d.start), "cells": [
            {"text": _phase_cell(*d.phases[n]) if n in d.phases else "—",
             "fail": d.phases.get(n, (None, None, None))[2] is False} for n in names]} for d in drills]
        sections.append({
            "phase_names": names, "phase_rows": phase_rows if names else [],
            "id": f"s{i}", "name": scenario, "description": drills[-1].description,
            "svg": Markup(svg) if svg else None, "rows": rows,
            "targets": ", ".join(f"{k.upper()} ≤ {v:g} s" for k, v in targets.items() if v is not None),
            "counts": ", ".join(f"{n} {v}" for v in VERDICT_COLOURS
                                if (n := sum(d.verdict == v for d in drills))),
        })
    starts = [d.start for d in found.drills if d.start is not None]
    html = pages.render_page(
        "history.html.j2",
        root=found.root.resolve().name or str(found.root), sections=sections,
        n_drills=len(found.drills), skipped=found.skipped,
        first=fmt.utc(min(starts)) if starts else "—", last=fmt.utc(max(starts)) if starts else "—",
        drillkit_version=drillkit.__version__, colours=VERDICT_COLOURS, readiness=ready,
        as_of=fmt.utc(as_of.timestamp()),
        rendered=fmt.utc(datetime.now(timezone.utc).timestamp()))
    return ev.write_atomic(found.root / HISTORY, html)

