"""How figures read in the report: UTC with milliseconds, seconds with three decimals, counts with
thousands separators. One place, so the HTML and the Markdown say the same thing."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from drillkit.durations import format_duration, parse_duration


def num(x: Any) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def utc(t: Any) -> str:
    v = num(t)
    if v is None:
        return "—"
    return datetime.fromtimestamp(round(v, 3), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def clock(t: Any) -> str:
    v = num(t)
    if v is None:
        return "—"
    return datetime.fromtimestamp(round(v, 3), tz=timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def iso_seconds(text: Any) -> float | None:
    """Chaos Toolkit writes naive ISO times, in UTC."""
    try:
        d = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (d if d.tzinfo else d.replace(tzinfo=timezone.utc)).timestamp()


def iso_utc(text: Any) -> str:
    if not text:
        return "—"
    t = iso_seconds(text)
    return str(text) if t is None else utc(t)


def secs(x: Any, none: str = "—") -> str:
    v = num(x)
    return none if v is None else f"{v:.3f} s"


def ms(x: Any) -> str:
    v = num(x)
    return "—" if v is None else f"{v * 1000:.1f} ms"


def rel(x: Any) -> str:
    v = num(x)
    return "—" if v is None else f"{round(v, 3) + 0.0:+.3f} s"


def dur(x: Any) -> str:
    v = num(x)
    return "—" if v is None else format_duration(max(v, 0.0))


def count(x: Any) -> str:
    v = num(x)
    if v is None:
        return "—"
    return f"{int(v):,}" if float(v).is_integer() else f"{v:,.3f}"


def pct(x: Any) -> str:
    """Availability is a fraction in summary.json; a value above 1 is taken as already a percent."""
    v = num(x)
    if v is None:
        return "—" if x is None else str(x)
    return f"{v * 100 if v <= 1 else v:.3f} %"


def nbytes(x: Any) -> str:
    v = num(x)
    if v is None:
        return "—"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(v) < 1024 or unit == "GiB":
            return f"{v:,.0f} {unit}" if unit == "bytes" else f"{v:,.1f} {unit}"
        v /= 1024
    return f"{v:,.1f} GiB"


def seconds_of(target: Any) -> float | None:
    try:
        return parse_duration(target)
    except (TypeError, ValueError):
        return None


def human_target(target: Any, seconds: bool = False) -> str:
    """'10s' reads as '10 s', '1m30s' as '1 min 30.0 s'; a bare number is seconds only where
    `seconds` says the target is a time; anything else reads as written."""
    if target is None:
        return "—"
    v = seconds_of(target) if isinstance(target, str) else None
    if v is None and seconds:
        v = num(target)
    if v is None:
        return str(target)
    return format_duration(v) if v >= 120 or v < 1 else f"{v:g} s"


def plural(n: Any, one: str, many: str) -> str:
    return f"{count(n)} {one if num(n) == 1 else many}"


def at_scale(x: Any, scale: float) -> str:
    """A drill duration as the production time it stands for at `time_scale` (drillkit.scenario.timescale)."""
    v = num(x)
    return "" if v is None or scale == 1 else f"≙ {format_duration(max(v, 0.0) * scale)} in production"

