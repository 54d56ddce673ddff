"""The trend across drills: RTO, RPO, verdict and lost writes per scenario over time, as a
terminal table and as history.html, read only from the evidence folders under one directory."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import yaml
from jinja2 import Environment, StrictUndefined
from markupsafe import Markup

import drillkit
from drillkit import evidence as ev
from drillkit.errors import EvidenceError, InputError
from drillkit.report import fmt

HISTORY = "history.html"
VERDICT_COLOURS = {"pass": "#1a7f37", "fail": "#c62828", "aborted": "#b26a00", "unknown": "#57606a"}
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

    def m(self, key: str) -> float | None:
        return fmt.num(self.measures.get(key))

    @property
    def not_recovered(self) -> bool:
        return self.m("rto_s") is None and bool(self.measures.get("not_recovered"))

    def rto_text(self) -> str:
        return "not recovered" if self.not_recovered else fmt.secs(self.m("rto_s"))

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
        scenario = yaml.safe_load((folder / ev.SCENARIO).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
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
    )


def scan(root: str | os.PathLike[str]) -> Found:
    """Every drill (a folder with a summary.json) under `root`; drill folders are not entered,
    so a large requests/ costs nothing. Unreadable summaries are listed as skipped."""
    root = Path(root)
    if not root.is_dir():
        raise InputError("no such folder", file=str(root))
    if (root / ev.SUMMARY).is_file():
        raise InputError(f"this is one drill's evidence folder; give the folder that holds drills "
                         f"(e.g. {root.parent}) so {HISTORY} is not written into the evidence",
                         file=str(root))
    found = Found(root, [])
    for here, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if ev.SUMMARY not in names:
            continue
        dirs[:] = []
        folder = Path(here)
        try:
            found.drills.append(_read(folder, root))
        except (OSError, ValueError) as exc:
            found.skipped.append(f"{folder.relative_to(root).as_posix()}: {exc}")
    if not found.drills:
        raise EvidenceError(f"{root}: no drill evidence folder (one holding summary.json) under it")
    return found


def print_table(found: Found, file: TextIO | None = None) -> None:
    """Rows grouped by scenario, oldest first; a rule between scenarios."""
    import shutil

    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    styles = {"pass": "bold green", "fail": "bold red", "aborted": "bold yellow"}
    table = Table(box=box.SIMPLE_HEAD, title=f"drills under {found.root}", title_justify="left")
    for name, just in (("Scenario", "left"), ("Start (UTC)", "left"), ("Verdict", "left"),
                       ("RTO", "right"), ("RPO", "right"), ("Lost writes", "right"), ("Folder", "left")):
        table.add_column(name, justify=just, no_wrap=name != "Folder", overflow="fold")
    groups = found.by_scenario()
    for i, (scenario, drills) in enumerate(groups.items()):
        for j, d in enumerate(drills):
            target = d.targets.get("rto")
            rto_miss = target is not None and (d.not_recovered or (d.m("rto_s") or 0) > target)
            table.add_row(
                Text(scenario if j == 0 else ""), Text(fmt.utc(d.start).removesuffix(" UTC")),
                Text(d.verdict.upper(), style=styles.get(d.verdict, "")),
                Text(d.rto_text(), style="red" if rto_miss else ""), Text(fmt.secs(d.m("rpo_s"))),
                Text(d.lost_text()), Text(d.name),
                end_section=j == len(drills) - 1 and i < len(groups) - 1)
    width = shutil.get_terminal_size((160, 24)).columns
    Console(file=file, width=max(width, 100), highlight=False).print(table)


def _chart(drills: list[Drill], prefix: str) -> str | None:
    """RTO and RPO against drill start, targets dashed; marker fill is the verdict."""
    from matplotlib import rc_context
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from drillkit.report.charts import _RC, _inline

    timed = [d for d in drills if d.start is not None]
    if not timed:
        return None
    with rc_context(_RC | {"svg.hashsalt": prefix}):
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
        return _inline(fig, f"RTO and RPO per drill over time ({len(timed)} drills)", prefix)


def write_html(found: Found) -> Path:
    """history.html in the scanned folder: one self-contained page, links to each drill's
    report.html by relative path (a file beside it, never a network fetch)."""
    sections = []
    for i, (scenario, drills) in enumerate(found.by_scenario().items()):
        svg = _chart(drills, f"h{i}")
        rows = [{
            "start": fmt.utc(d.start), "verdict": d.verdict, "rto": d.rto_text(),
            "rto_w": fmt.secs(d.m("rto_write_s")), "rto_r": fmt.secs(d.m("rto_read_s")),
            "rpo": fmt.secs(d.m("rpo_s")), "lost": d.lost_text(),
            "acked": fmt.count(d.m("writes_acked")), "operator": d.operator, "commit": d.commit,
            "name": d.name, "href": quote(f"{d.name}/{ev.REPORT}") if d.has_report else None,
        } for d in drills]
        targets = drills[-1].targets
        sections.append({
            "id": f"s{i}", "name": scenario, "description": drills[-1].description,
            "svg": Markup(svg) if svg else None, "rows": rows,
            "targets": ", ".join(f"{k.upper()} ≤ {v:g} s" for k, v in targets.items() if v is not None),
            "counts": ", ".join(f"{n} {v}" for v in VERDICT_COLOURS
                                if (n := sum(d.verdict == v for d in drills))),
        })
    starts = [d.start for d in found.drills if d.start is not None]
    html = _env.from_string(_TEMPLATE).render(
        root=found.root.resolve().name or str(found.root), sections=sections,
        n_drills=len(found.drills), skipped=found.skipped,
        first=fmt.utc(min(starts)) if starts else "—", last=fmt.utc(max(starts)) if starts else "—",
        version=drillkit.__version__, colours=VERDICT_COLOURS,
        rendered=fmt.utc(datetime.now(timezone.utc).timestamp()))
    return ev.write_atomic(found.root / HISTORY, html)


_env = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="generator" content="drillkit {{ version }}">
<title>Drill history — {{ root }}</title>
<style>
:root { --ink: #1f2328; --muted: #57606a; --line: #d0d7de; --soft: #f6f8fa; }
body { margin: 0 auto; max-width: 1100px; padding: 0 20px 40px; color: var(--ink);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
h1 { font-size: 22px; margin: 20px 0 4px; }
h2 { font-size: 17px; margin: 28px 0 6px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.muted { color: var(--muted); }
table { border-collapse: collapse; width: 100%; margin: 6px 0; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { background: var(--soft); font-weight: 600; font-size: 12.5px; }
td.num { text-align: right; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12.5px; }
td.mono { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
td.wrap { white-space: normal; word-break: break-all; }
.badge { display: inline-block; min-width: 58px; text-align: center; padding: 1px 8px; border-radius: 10px;
         font-size: 12px; font-weight: 700; color: #fff; }
{% for v, c in colours.items() %}.badge.{{ v }} { background: {{ c }}; }
{% endfor %}
svg.chart { width: 100%; height: auto; display: block; }
footer { margin-top: 32px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line); padding-top: 8px; }
@media print { body { max-width: none; padding: 0; } section { break-inside: avoid; }
  .badge, th { -webkit-print-color-adjust: exact; print-color-adjust: exact; } }
</style>
</head>
<body>
<header>
<h1>Drill history — {{ root }}</h1>
<p class="muted">{{ n_drills }} drill{{ "" if n_drills == 1 else "s" }} of {{ sections|length }} scenario{{ "" if sections|length == 1 else "s" }}, {{ first }} → {{ last }}. Figures are read from each drill's summary.json; open a drill's report for its evidence.</p>
</header>
{% for s in sections %}
<section id="{{ s.id }}">
<h2>{{ s.name }}</h2>
<p class="muted">{% if s.description %}{{ s.description }} · {% endif %}{{ s.counts }}{% if s.targets %} · targets of the latest drill: {{ s.targets }}{% endif %}</p>
{% if s.svg %}<figure>{{ s.svg }}</figure>{% else %}<p class="muted">No drill of this scenario has a start time: no chart.</p>{% endif %}
<table>
<thead><tr><th>Start (UTC)</th><th>Verdict</th><th>RTO</th><th>writes</th><th>reads</th><th>RPO</th><th>Lost writes</th><th>Acknowledged</th><th>Operator</th><th>Commit</th><th>Drill</th></tr></thead>
<tbody>
{% for r in s.rows %}
<tr><td class="num">{{ r.start }}</td><td><span class="badge {{ r.verdict }}">{{ r.verdict|upper }}</span></td><td class="num">{{ r.rto }}</td><td class="num">{{ r.rto_w }}</td><td class="num">{{ r.rto_r }}</td><td class="num">{{ r.rpo }}</td><td class="num">{{ r.lost }}</td><td class="num">{{ r.acked }}</td><td>{{ r.operator }}</td><td class="mono">{{ r.commit }}</td><td class="mono wrap">{% if r.href %}<a href="{{ r.href }}">{{ r.name }}</a>{% else %}{{ r.name }}{% endif %}</td></tr>
{% endfor %}
</tbody>
</table>
</section>
{% endfor %}
{% if skipped %}
<section id="skipped"><h2>Not read</h2><ul>{% for s in skipped %}<li>{{ s }}</li>{% endfor %}</ul></section>
{% endif %}
<footer>drillkit {{ version }} · rendered {{ rendered }}</footer>
</body>
</html>
"""
