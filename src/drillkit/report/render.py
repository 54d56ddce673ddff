"""report.html and summary.md from an evidence folder, and from nothing else."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

import drillkit
from drillkit import escape
from drillkit import evidence as ev
from drillkit.report import charts, controls, fmt, model, pages, view
from drillkit.report.load import Evidence, load
from drillkit.report.ops import timeline
SUMMARY_MD = "summary.md"
MEASUREMENTS = "measurements.md"
"""docs/measurements.md, shipped in the package (templates/measurements.md links to it) and
reproduced in every report, so an auditor holding only the report has the definitions too."""
VERDICT_LABELS = {"pass": "PASS", "fail": "FAIL", "aborted": "ABORTED"}
MD_ICONS = {"pass": "✅", "fail": "❌", "aborted": "⚠️", "none": "➖"}


def render_report(folder: str | os.PathLike[str]) -> Path:
    """Write report.html and summary.md into `folder`; return the report's path."""
    folder = Path(folder)
    ctx = context(load(folder))
    html = pages.render_page("report.html.j2", **ctx)
    out = folder / ev.REPORT
    ev.write_atomic(out, html)
    ev.write_atomic(folder / SUMMARY_MD, markdown(ctx))
    return out




def context(e: Evidence) -> dict[str, Any]:
    s, m = e.summary, e.measures
    verdict = str(s.get("verdict", "")).lower()
    verdict = verdict if verdict in VERDICT_LABELS else "unknown"
    scale = fmt.num((e.scenario or {}).get("time_scale")) or 1.0
    rows = model.at_scale(model.build_rows(s), scale)
    reason = view.abort_reason(e) if verdict == "aborted" else None
    t_ref, ref_label = view.reference(e)
    t_fault = fmt.num(m.get("t_fault"))
    if t_fault is None:
        t_fault = next((x["t"] for x in e.events if x["kind"] == ev.FAULT_INJECTED), None)
    phases = view.phases(e, t_fault)
    ctx: dict[str, Any] = {
        "drillkit_version": drillkit.__version__,
        "definitions": pages.template_source(MEASUREMENTS),
        "scenario": str(s.get("scenario") or (e.scenario or {}).get("name") or "unnamed drill"),
        "verdict": verdict,
        "verdict_label": VERDICT_LABELS.get(verdict, "UNKNOWN"),
        "sentence": model.sentence(s, rows, reason),
        "reasons": [str(r) for r in s.get("reasons") or []],
        "rows": rows,
        "derived_rto": any(r.key.startswith("rto:") and not r.checks and r.status != "none"
                           for r in rows),
        "findings": model.findings(s, rows, reason),
        "t_start": fmt.utc(m.get("t_start")), "t_end": _end(m.get("t_start"), m.get("t_end")),
        "t_fault": fmt.utc(t_fault) if t_fault is not None else "",
        "ref_label": ref_label,
        "phases": [p.cells(t_ref) for p in phases],
        "phases_missing": "no activity events in events.jsonl and no journal.json"
        if not e.events else "no activities recorded in events.jsonl",
        "time_scale": scale,
        "phase_budgets": view.phase_budgets(s, t_ref, scale),
        "alarms": view.alarms(s, t_ref),
        "restore_tests": view.restore_tests(s, t_ref, scale),
        "load_workers": view.load_workers(s, t_ref),
        "active_active": view.active_active(s, t_ref),
        "lost": view.lost_writes(m),
        "activities": view.activities(e.journal),
        "topo": view.topology(e),
        "aws_calls": view.aws_calls(e, t_ref),
        "provenance": view.provenance(e.provenance, e.events),
        "evidenced": controls.evidenced(e.folder, s, e.scenario),
        "operator_steps": view.operator_steps(e, t_ref),
        "observations": view.observations(e, t_ref),
        "folder_name": e.folder.name,
        "files": e.files,
        "missing": e.missing,
        "problems": e.problems,
        "notes": [str(n) for n in s.get("notes") or []],
        "rendered": fmt.utc(datetime.now(timezone.utc).timestamp()),
    }
    ctx.update(_charts(e, phases, t_ref, ref_label, t_fault))
    return ctx


def _end(start: Any, end: Any) -> str:
    """The end without its date when the drill did not cross midnight."""
    a, b = fmt.utc(start), fmt.utc(end)
    return fmt.clock(end) + " UTC" if a[:10] == b[:10] else b


def _marks(e: Evidence, phases: list[view.Phase], t_ref: float, t_fault: float | None) -> charts.Marks:
    marks = charts.Marks(fault=None if t_fault is None else t_fault - t_ref)
    for p in phases:
        if p.kind == "action" and p.start is not None and p.end is not None:
            marks.phases.append((p.num, p.start - t_ref, p.end - t_ref))
        elif p.kind == "derived" and p.name.startswith("recovered") and p.end is not None:
            marks.recovered.append((f"{p.name.removeprefix('recovered ').strip('()')} recovered "
                                    f"{fmt.rel(p.end - t_ref)}", p.end - t_ref))
    rpo = fmt.num(e.measures.get("rpo_s"))
    if rpo and t_fault is not None:
        marks.recovery_point = (f"recovery point {fmt.rel(t_fault - rpo - t_ref)} (RPO)",
                                t_fault - rpo - t_ref)
    for x in e.events:
        if x["kind"] == ev.ROUTING_SWITCH:
            marks.switches.append((f"traffic switched {x.get('from', '?')} → {x.get('to', '?')}",
                                   x["t"] - t_ref))
    marks.notes = [(o["label"], o["t"] - t_ref) for o in view.observations(e, t_ref)]
    return marks


def _charts(e: Evidence, phases, t_ref, ref_label, t_fault) -> dict[str, Any]:
    """Draw what the evidence allows; a chart that fails is reported, never fatal to the report."""
    out: dict[str, Any] = {"timeline_svg": None, "lag_svg": None, "timeline_note": "",
                           "lag_note": "", "timeline_missing": "", "lag_missing": ""}
    m = e.measures
    if t_ref is None:
        out["timeline_missing"] = out["lag_missing"] = "No time reference in the evidence: no chart."
        return out
    marks = _marks(e, phases, t_ref, t_fault)
    if e.history is None:
        out["timeline_missing"] = "No client operations in requests/*.jsonl: no timeline chart."
    else:
        try:
            h = e.history
            lo = min(float(h.t1.min()), fmt.num(m.get("t_start")) or np.inf)
            hi = max(float(h.t1.max()), fmt.num(m.get("t_end")) or -np.inf)
            tl = timeline(h, t_ref, lo, hi)
            out["timeline_svg"] = Markup(charts.timeline_svg(tl, marks, ref_label))
            totals = "; ".join(f"{c}: {fmt.count(v['ok'])} ok, {fmt.count(v['failed'])} failed"
                               for c, v in tl.totals.items())
            out["timeline_note"] = (f"{fmt.count(len(h))} operations in bins of {tl.width:g} s "
                                    f"({totals}).")
        except Exception as exc:  # noqa: BLE001 - the rest of the report must still render
            out["timeline_missing"] = f"The timeline chart could not be drawn: {exc!r}"
    lag = e.lag
    if lag is None or lag.empty:
        out["lag_missing"] = ("No lag.csv in the evidence folder: no replication-lag chart."
                              if lag is None else "lag.csv holds no samples.")
        return out
    try:
        rpo = fmt.seconds_of((e.summary.get("targets") or {}).get("rpo"))
        out["lag_svg"] = Markup(charts.lag_svg(lag, t_ref, replace(marks, recovered=[]),
                                               ref_label, rpo))
        out["lag_note"] = (f"{fmt.count(len(lag))} samples from "
                           f"{', '.join(sorted(lag['region'].unique()))}"
                           f"{'; the dashed red line is the RPO target' if rpo else ''}.")
    except Exception as exc:  # noqa: BLE001
        out["lag_missing"] = f"The replication-lag chart could not be drawn: {exc!r}"
    return out


_md = escape.markdown


def markdown(ctx: dict[str, Any]) -> str:
    """A short summary for a CI job summary or a PR comment; the HTML report has the rest."""
    icon = MD_ICONS.get(ctx["verdict"], "❔")
    lines = [f"## {icon} {ctx['verdict_label']} — {_md(ctx['scenario'])}", "", _md(ctx["sentence"]),
             "", "| Objective | Target | Measured | Result |", "| --- | --- | --- | --- |"]
    for r in ctx["rows"]:
        measured = f"{r.measured} ({r.detail})" if r.detail else r.measured
        result = {"pass": "pass", "fail": "**FAIL**"}.get(r.status, r.badge)
        lines.append(f"| {_md(r.label)} | {_md(r.target)} | {_md(measured)} | "
                     f"{MD_ICONS.get(r.status, '')} {result} |")
    if ctx["findings"]:
        lines += ["", "### Findings", ""] + [f"- {_md(f)}" for f in ctx["findings"]]
    if ctx["phases"]:
        lines += ["", f"<details><summary>Phases ({len(ctx['phases'])})</summary>", "",
                  "| # | Phase | Start | Duration | End |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {_md(p['num'])} | {_md(p['name'])} | {_md(p['start'])} | {_md(p['duration'])} | {_md(p['end'])} |"
                  for p in ctx["phases"]]
        lines += ["", f"Times relative to {_md(ctx['ref_label'])}.", "", "</details>"]
    lines += ["", f"Drill {_md(ctx['t_start'])} → {_md(ctx['t_end'])} · evidence {_md(ctx['folder_name'])}"
              f" · full report: `report.html` · drillkit {ctx['drillkit_version']}"]
    if ctx["missing"]:
        lines += ["", "Not in the evidence folder: " + "; ".join(_md(x) for x in ctx["missing"])]
    return "\n".join(lines) + "\n"
