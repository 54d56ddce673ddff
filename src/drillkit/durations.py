"""Durations as people write them in scenarios (`500ms`, `5s`, `1m30s`, `2h`), and instants as
evidence writes them (UTC, ISO 8601 with a `Z`)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str | int | float) -> float:
    """Seconds in `text`; bare numbers are seconds. Raises ValueError with the reason."""
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"{text!r} is negative")
        return float(text)
    s = str(text).strip().replace(" ", "")
    if not s:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _FACTOR[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise ValueError(f"{text!r} is not a duration like 500ms, 5s or 1m30s")
    return total


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.3f} s"
    m, s = divmod(seconds, 60)
    return f"{int(m)} min {s:.1f} s"


def utc_text(t: datetime | float | None = None, timespec: str = "milliseconds") -> str:
    """`t` (a datetime, a Unix time, or now when None) as UTC ISO 8601 ending in `Z`:
    how the manifest, the register, the summary and the readiness table spell an instant."""
    if t is None:
        t = datetime.now(timezone.utc)
    elif isinstance(t, (int, float)):
        t = datetime.fromtimestamp(t, timezone.utc)
    return t.astimezone(timezone.utc).isoformat(timespec=timespec).replace("+00:00", "Z")
