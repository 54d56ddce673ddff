"""Charts as inline SVG. Data are binned before plotting (at most a few hundred steps per series),
so the SVG size depends on the drill's length in bins, never on its number of operations."""

from __future__ import annotations

import io
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter

from drillkit.report.ops import Timeline, bin_width

OK_COLOURS = ("#2166ac", "#5aae61", "#9970ab", "#80cdc1", "#969696")
FAIL_COLOURS = ("#d6604d", "#fdb863", "#c51b7d", "#8c510a", "#525252")
LINE_COLOURS = ("#2166ac", "#1b7837", "#7570b3", "#e08214", "#525252")
FAULT = "#b2182b"
RECOVERED = "#1a9850"
SWITCH = "#762a83"
NOTE = "#8c510a"
RECOVERY_POINT = "#e08214"
RECOVERED_STYLES = ("--", "-.", (0, (1, 1)), (0, (5, 1, 1, 1)))

_RC = {
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e0e0e0",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
}


def chart_style(salt: str) -> AbstractContextManager:
    """The Matplotlib settings every drillkit chart is drawn under: text stays text in the SVG,
    and `salt` seeds the SVG's generated ids, so a chart's SVG is the same on every render."""
    return rc_context(_RC | {"svg.hashsalt": salt})


@dataclass
class Marks:
    """Moments drawn on every time chart, as seconds from the reference time."""

    fault: float | None = None
    phases: list[tuple[int, float, float]] = field(default_factory=list)
    recovered: list[tuple[str, float]] = field(default_factory=list)
    switches: list[tuple[str, float]] = field(default_factory=list)
    recovery_point: tuple[str, float] | None = None
    notes: list[tuple[str, float]] = field(default_factory=list)
    """Observations written during the drill (`drillkit note`), labelled N1, N2, …"""


def _signed(x: float, _pos: object = None) -> str:
    return f"{x:+g}" if x else "0"


def _phase_labels(phases: list[tuple[int, float, float]], span: float) -> list[tuple[str, float]]:
    """Numbers of phases that would print on top of each other share one label, "3,4,5"."""
    out: list[tuple[list[int], float]] = []
    for num, start, end in sorted(phases, key=lambda p: (p[1] + p[2]) / 2):
        x = (start + end) / 2
        if out and x - out[-1][1] < span * 0.025:
            out[-1][0].append(num)
        else:
            out.append(([num], x))
    return [(",".join(map(str, nums)), x) for nums, x in out]


def _draw_marks(ax, marks: Marks, label_phases: bool, span: float) -> list[Line2D]:
    """Draw the marks; return legend handles naming them."""
    handles = []
    for num, start, end in marks.phases:
        ax.axvspan(start, max(end, start + 1e-3), color="#bdbdbd", alpha=0.3, lw=0)
    if label_phases:
        for text, x in _phase_labels(marks.phases, span):
            ax.text(x, 1.0, text, transform=ax.get_xaxis_transform(), fontsize=7, va="bottom",
                    ha="center", color="#404040")
    if marks.phases:
        handles.append(Patch(color="#bdbdbd", alpha=0.3, label="runbook phase (numbered)"))
    if marks.fault is not None:
        handles.append(ax.axvline(marks.fault, color=FAULT, lw=1.4, label="fault"))
    if marks.recovery_point is not None:
        label, x = marks.recovery_point
        handles.append(ax.axvline(x, color=RECOVERY_POINT, lw=1.2, ls="-.", label=label))
    for label, x in marks.switches:
        handles.append(ax.axvline(x, color=SWITCH, lw=1, ls=":", label=label))
    for i, (label, x) in enumerate(marks.recovered):
        handles.append(ax.axvline(x, color=RECOVERED, lw=1.2, label=label,
                                  ls=RECOVERED_STYLES[i % len(RECOVERED_STYLES)]))
    for i, (label, x) in enumerate(marks.notes):
        line = ax.axvline(x, color=NOTE, lw=0.9, ls=(0, (1, 2)), label="observation (N…, see Observations)")
        if label_phases:
            ax.text(x, 1.0, label, transform=ax.get_xaxis_transform(), fontsize=7, va="bottom", ha="left", color=NOTE)
        if i == 0:
            handles.append(line)
    return handles


def timeline_svg(tl: Timeline, marks: Marks, ref_label: str) -> str:
    """Successes up and failures down per class, stacked; latency p50/p99 per class below."""
    edges = np.append(tl.x, tl.x[-1] + tl.width)
    with chart_style("timeline"):
        fig = Figure(figsize=(10, 5.6))
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
        base = np.zeros(len(tl.x))
        for i, cls in enumerate(tl.classes):
            top.stairs(base + tl.ok[i], edges, baseline=base.copy(), fill=True,
                       color=OK_COLOURS[i % 5], label=f"{cls} ok", lw=0)
            base = base + tl.ok[i]
        base = np.zeros(len(tl.x))
        for i, cls in enumerate(tl.classes):
            if not tl.failed[i].any():
                continue
            top.stairs(base - tl.failed[i], edges, baseline=base.copy(), fill=True,
                       color=FAIL_COLOURS[i % 5], label=f"{cls} failed", lw=0)
            base = base - tl.failed[i]
        top.axhline(0, color="#404040", lw=0.6)
        top.set_ylabel("ops/s  (failed below 0)")
        top.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{abs(v):g}"))
        mark_handles = _draw_marks(top, marks, label_phases=True, span=edges[-1] - edges[0])
        handles, _ = top.get_legend_handles_labels()
        top.legend(handles=[h for h in handles if h not in mark_handles] + mark_handles,
                   loc="upper left", bbox_to_anchor=(1.0, 1.02), fontsize=7.5)

        mid = tl.x + tl.width / 2
        for i, cls in enumerate(tl.classes):
            colour = LINE_COLOURS[i % 5]
            bottom.plot(mid, tl.p50[i] * 1000, color=colour, lw=1, label=f"{cls} p50")
            bottom.plot(mid, tl.p99[i] * 1000, color=colour, lw=1, ls="--", label=f"{cls} p99")
        finite = np.concatenate([tl.p50.ravel(), tl.p99.ravel()]) * 1000
        finite = finite[np.isfinite(finite) & (finite > 0)]
        if finite.size and finite.max() / max(finite.min(), 1e-3) > 30:
            bottom.set_yscale("log")
            # a log axis labels its ticks in mathtext ($10^{2}$), which text.parse_math off (for the
            # SVG's plain text) would print raw: plain numbers, no minor labels
            bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:g}"))
            bottom.yaxis.set_minor_formatter(NullFormatter())
        bottom.set_ylabel("latency (ms)")
        bottom.set_xlabel(f"seconds from {ref_label}   (bins of {tl.width:g} s, by op end time)")
        bottom.xaxis.set_major_formatter(FuncFormatter(_signed))
        drawn = _draw_marks(bottom, marks, label_phases=False, span=edges[-1] - edges[0])
        bottom.legend(handles=[h for h in bottom.get_legend_handles_labels()[0] if h not in drawn],
                      loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7.5)
        bottom.set_xlim(edges[0], edges[-1])
        fig.subplots_adjust(left=0.07, right=0.78, top=0.95, bottom=0.1, hspace=0.12)
        return inline_svg(fig, "Timeline: successes, failures and latency over time", "tl")


def lag_svg(lag: pd.DataFrame, t_ref: float, marks: Marks, ref_label: str,
            rpo_target_s: float | None, max_points: int = 1200) -> str:
    """Replay lag per region, each region reduced to at most `max_points` bins of its maximum, so
    spikes survive the downsampling."""
    with chart_style("lag"):
        fig = Figure(figsize=(10, 2.8))
        ax = fig.subplots()
        ax2 = None
        span = float(lag["t"].max() - lag["t"].min()) or 1.0
        width = bin_width(span, max_points) if len(lag) > max_points else 0.0
        for i, (region, df) in enumerate(lag.groupby("region", sort=True)):
            x = df["t"].to_numpy() - t_ref
            y = df["replay_lag_s"].to_numpy(dtype=float)
            b = df["lag_bytes"].to_numpy(dtype=float) if "lag_bytes" in df else None
            if width:
                key = np.floor(x / width)
                g = pd.DataFrame({"k": key, "y": y, "b": b if b is not None else np.nan})
                g = g.groupby("k", sort=True).max()
                x, y = g.index.to_numpy() * width, g["y"].to_numpy()
                b = g["b"].to_numpy() if b is not None else None
            colour = LINE_COLOURS[i % 5]
            ax.plot(x, y, color=colour, lw=1.1, label=f"{region} replay lag (s)")
            if b is not None and np.isfinite(b).any():
                ax2 = ax2 or ax.twinx()
                ax2.plot(x, b / 1024, color=colour, lw=0.8, alpha=0.5, ls="-.",
                         label=f"{region} lag (KiB)")
        if rpo_target_s is not None:
            ax.axhline(rpo_target_s, color=FAULT, lw=0.8, ls="--", label=f"RPO target {rpo_target_s:g} s")
        mark_handles = _draw_marks(ax, marks, label_phases=True, span=span)
        ax.set_ylabel("replay lag (s)")
        ax.set_ylim(bottom=0)
        ax.set_xlabel(f"seconds from {ref_label}")
        ax.xaxis.set_major_formatter(FuncFormatter(_signed))
        handles = [h for h in ax.get_legend_handles_labels()[0] if h not in mark_handles]
        if ax2 is not None:
            ax2.set_ylabel("KiB behind")
            ax2.set_ylim(bottom=0)
            ax2.grid(False)
            ax2.spines["right"].set_visible(True)
            handles += ax2.get_legend_handles_labels()[0]
        ax.legend(handles=handles + [h for h in mark_handles if h.get_label() == "fault"
                                     or h.get_label().startswith("recovery point")],
                  loc="upper left", bbox_to_anchor=(1.07, 1.0), fontsize=7.5)
        fig.subplots_adjust(left=0.07, right=0.74, top=0.9, bottom=0.18)
        return inline_svg(fig, "Replication lag over time", "lag")


_STRIP = [
    (re.compile(r"^.*?(?=<svg)", re.S), ""),
    (re.compile(r"<metadata>.*?</metadata>\s*", re.S), ""),
    (re.compile(r"<style[^>]*>.*?</style>\s*", re.S), ""),
    (re.compile(r'\s+xmlns(?::\w+)?="[^"]*"'), ""),
    (re.compile(r"xlink:href="), "href="),
]


def inline_svg(fig: Figure, title: str, prefix: str) -> str:
    """SVG fit for pasting into HTML: no XML prologue, namespaces, metadata links or global
    style rule; ids prefixed so that two charts in one page never share one; scales to its
    container through its viewBox."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    for pattern, repl in _STRIP:
        svg = pattern.sub(repl, svg)
    svg = svg.replace('id="', f'id="{prefix}-').replace('href="#', f'href="#{prefix}-')
    svg = svg.replace("url(#", f"url(#{prefix}-")
    svg = re.sub(r'<svg\s+width="[^"]*"\s+height="[^"]*"',
                 f'<svg class="chart" role="img" aria-label="{title}"', svg, count=1)
    return svg.strip()
