"""The drill's fault: its instant `t_fault` and the interval [t_lo, t_hi] it is known to lie in, or
why there is none (docs/measurements.md, "The fault")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drillkit.evidence import FAULT_FAILED, FAULT_INJECTED


@dataclass(frozen=True)
class Fault:
    """`t` None: no fault instant, so no RTO and no RPO; `not_measured` says why."""

    t: float | None
    t_lo: float | None
    t_hi: float | None
    not_measured: str | None
    failed: tuple[dict[str, Any], ...] = ()
    source: str | None = None
    """Where the instant comes from: `system call`, `provider`, `activity` (None: not recorded, v1)."""

    @property
    def width(self) -> float:
        return 0.0 if self.t is None else self.t_hi - self.t_lo


def fault_of(events: list[dict[str, Any]]) -> Fault:
    """The first fault.injected not marked `precondition`; an event written before the interval
    (evidence v1 without `t_lo`/`t_hi`) is known to the instant, [t, t]. Any fault.failed leaves the
    drill without a fault instant: what was measured would not be the disaster the experiment
    describes."""
    failed = tuple(e for e in events if e.get("kind") == FAULT_FAILED)
    if failed:
        first = failed[0]
        why = (f"not measured: the fault {first.get('fault')!r} (activity {first.get('activity')!r}) failed: "
               f"{first.get('error') or 'no error recorded'}")
        return Fault(None, None, None, why, failed)
    event = next((e for e in events if e.get("kind") == FAULT_INJECTED and not e.get("precondition")), None)
    if event is None:
        return Fault(None, None, None, "not measured: the experiment injected no fault (no fault.injected event)")
    t = float(event["t"])
    lo, hi = float(event.get("t_lo", t)), float(event.get("t_hi", t))
    return Fault(t, min(lo, t), max(hi, t), None, source=event.get("instant"))
