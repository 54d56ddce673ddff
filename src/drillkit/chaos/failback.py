"""Failback runbook steps: rebuild the lost region as a standby, move reads back in steps, then
switch the primary back. Each step records its event as it happens, so its duration is a phase."""

from __future__ import annotations

from drillkit.chaos import Context, action
from drillkit.targets.capabilities import Failback
from drillkit.evidence import DB_SWITCHOVER, FAILBACK_CAUGHT_UP, FAILBACK_REBUILT


@action(Failback)
def rebuild_as_standby(ctx: Context, region: str, timeout: float = 60) -> dict:
    """Runbook: the lost region comes back as a hot standby of the current primary (fresh base backup)."""
    result = ctx.target.rebuild_as_standby(region, float(timeout))
    ctx.record(FAILBACK_REBUILT, region=region, source=result.source, link=result.link,
               started=result.t, took_s=round(result.took_s, 6))
    return result.as_dict()


@action(Failback)
def wait_caught_up(ctx: Context, region: str, timeout: float = 60) -> dict:
    """Runbook check: the rebuilt standby streams and has replayed the primary's WAL."""
    result = ctx.target.wait_caught_up(region, float(timeout))
    ctx.record(FAILBACK_CAUGHT_UP, t=result.t, region=region, lsn=result.lsn, took_s=round(result.took_s, 6))
    return result.as_dict()


@action(Failback)
def shift_reads(ctx: Context, region: str, percent: float) -> dict:
    """Runbook: send `percent` % of the reads to `region`; the router records `routing.shift`."""
    return ctx.target.shift_reads(region, float(percent)).as_dict()


@action(Failback)
def switchover(ctx: Context, to: str, timeout: float = 60) -> dict:
    """Runbook: planned, lossless move of the primary to `to`; the old primary follows it as a standby."""
    r = ctx.target.switchover(to, float(timeout))
    ctx.record(DB_SWITCHOVER, **{"from": r.old}, to=to, checkpoint=r.checkpoint, started=r.t,
               stopping_at=r.stopping_at, promoted_at=r.promoted_at, routed_at=r.routed_at,
               no_primary_s=round(r.no_primary_s, 6), promote_s=round(r.promote_s, 6), took_s=round(r.took_s, 6))
    return r.as_dict()
