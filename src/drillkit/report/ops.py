"""The client history reduced to what the timeline chart needs: per-bin counts and latency
percentiles, so the chart's size depends on the drill's length in bins, never on its number of
operations. The history itself is read by drillkit.evidence.history (`read_timeline`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from drillkit.evidence.history import History

MAX_CLASSES = 4
NICE_WIDTHS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)


@dataclass
class Timeline:
    """Per-bin counts and latency percentiles; x values are seconds from the reference time."""

    width: float
    x: np.ndarray
    classes: list[str]
    ok: np.ndarray
    failed: np.ndarray
    p50: np.ndarray
    p99: np.ndarray
    totals: dict[str, dict[str, int]] = field(default_factory=dict)


def bin_width(span: float, max_bins: int = 400) -> float:
    """The smallest round bin width that keeps the chart under `max_bins`, whatever the span."""
    for w in NICE_WIDTHS:
        if span / w <= max_bins:
            return float(w)
    return float(math.ceil(span / max_bins / 3600) * 3600)


def timeline(h: History, t_ref: float, t_lo: float | None = None, t_hi: float | None = None,
             max_bins: int = 400) -> Timeline:
    """Bin ops by the time their outcome was known (t1); latency over all ops, failed included."""
    lo = float(np.min(h.t1)) if t_lo is None else t_lo
    hi = float(np.max(h.t1)) if t_hi is None else t_hi
    hi = max(hi, lo + 1e-3)
    width = bin_width(hi - lo, max_bins)
    n_bins = int(math.ceil((hi - lo) / width)) or 1
    b = np.floor((h.t1 - lo) / width).astype(np.int64)
    inside = (b >= 0) & (b < n_bins)

    counts = pd.Series(h.op).value_counts()
    top = [int(c) for c in counts.index[:MAX_CLASSES]]
    classes = [str(h.classes[c]) for c in top]
    remap = np.full(len(h.classes) + 1, len(top), dtype=np.int64)
    remap[top] = np.arange(len(top))
    if len(counts) > len(top):
        classes.append("other")
    cls = remap[h.op]
    k = len(classes)

    idx = (cls * n_bins + b)[inside]
    ok = h.ok[inside]
    ok_counts = np.bincount(idx[ok], minlength=k * n_bins).reshape(k, n_bins)
    fail_counts = np.bincount(idx[~ok], minlength=k * n_bins).reshape(k, n_bins)

    lat = pd.DataFrame({"key": idx, "lat": (h.t1 - h.t0)[inside]})
    q = lat.groupby("key")["lat"].quantile([0.5, 0.99]).unstack()
    p50 = np.full(k * n_bins, np.nan)
    p99 = np.full(k * n_bins, np.nan)
    p50[q.index.to_numpy()] = q[0.5].to_numpy()
    p99[q.index.to_numpy()] = q[0.99].to_numpy()

    totals = {c: {"ok": int(ok_counts[i].sum()), "failed": int(fail_counts[i].sum())}
              for i, c in enumerate(classes)}
    return Timeline(
        width=width,
        x=lo - t_ref + width * np.arange(n_bins),
        classes=classes,
        ok=ok_counts / width,
        failed=fail_counts / width,
        p50=p50.reshape(k, n_bins),
        p99=p99.reshape(k, n_bins),
        totals=totals,
    )
