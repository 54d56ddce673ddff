"""Failback runbook steps: rebuild the lost region as a standby, move reads back in steps, then
switch the primary back. Each step records its event as it happens, so its duration is a phase."""

from __future__ import annotations

from drillkit.chaos import system_from
from drillkit.chaos.actions import Configuration, _guard


def rebuild_as_standby(region: str, timeout: float = 60, configuration: Configuration = None) -> dict:
    """Runbook: the lost region comes back as a hot standby of the current primary (fresh base backup)."""
    system = system_from(configuration)
    result = _guard(lambda: system.rebuild_as_standby(region, float(timeout)))
    system.event("failback.rebuilt", region=region, source=result["source"], link=result["link"],
                 started=result["t"], took_s=round(result["took_s"], 6))
    return result


def wait_caught_up(region: str, timeout: float = 60, configuration: Configuration = None) -> dict:
    """Runbook check: the rebuilt standby streams and has replayed the primary's WAL."""
    system = system_from(configuration)
    result = _guard(lambda: system.wait_caught_up(region, float(timeout)))
    system.event("failback.caught_up", t=result["t"], region=region, lsn=result["lsn"],
                 took_s=round(result["took_s"], 6))
    return result


def shift_reads(region: str, percent: float, configuration: Configuration = None) -> dict:
    """Runbook: send `percent` % of the reads to `region`; the router records `routing.shift`."""
    system = system_from(configuration)
    return _guard(lambda: system.shift_reads(region, float(percent)))


def switchover(to: str, timeout: float = 60, configuration: Configuration = None) -> dict:
    """Runbook: planned, lossless move of the primary to `to`; the old primary follows it as a standby."""
    system = system_from(configuration)
    result = _guard(lambda: system.switchover(to, float(timeout)))
    system.event("db.switchover", **{"from": result["from"]}, to=to, checkpoint=result["checkpoint"],
                 started=result["t"], stopping_at=result["stopping_at"], promoted_at=result["promoted_at"],
                 routed_at=result["routed_at"], no_primary_s=round(result["no_primary_s"], 6),
                 promote_s=round(result["promote_s"], 6), took_s=round(result["took_s"], 6))
    return result
