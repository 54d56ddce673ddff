"""Faults and runbook steps. Each fault records `fault.injected` (and `fault.cleared`) as it happens."""

from __future__ import annotations

import time
from typing import Any

from chaoslib.exceptions import ActivityFailed

from drillkit.chaos import Context, action
from drillkit.errors import FaultError
from drillkit.evidence import (APP_SCALED, CORRUPTION_DETECTED, DB_BACKUP, DB_PROMOTED, DB_RESTORED, FAULT_CLEARED,
                               FAULT_INJECTED, LAG_ALARM_DETECTED, RESTORE_TESTED)
from drillkit.targets.capabilities import (
    AppScaling,
    BackupRestore,
    GlobalTable,
    Links,
    PointInTimeRecovery,
    RegionFaults,
    Regions,
    ReplayControl,
    ReplicationObservation,
    RestoreTesting,
    Runbook,
)


def injected(ctx: Context, t: float, fault: str, precondition: bool = False, **fields: Any) -> None:
    """Record a fault at the moment it took effect. A `precondition` sets the stage (a lagging
    replica before a region loss) without starting the disaster's clock, t_fault."""
    ctx.record(FAULT_INJECTED, t=t, fault=fault, **fields, **({"precondition": True} if precondition else {}))


def _killed(ctx: Context, fault: str, result) -> list[str]:
    injected(ctx, result.t, fault, region=result.region, killed=list(result.processes))
    return list(result.processes)


@action(RegionFaults)
def kill_region(ctx: Context, region: str) -> list[str]:
    """Region loss: SIGKILL every process of the region (database and app) at once."""
    return _killed(ctx, "region-loss", ctx.target.kill_region(region))


@action(RegionFaults)
def freeze_region(ctx: Context, region: str, duration: float | None = None) -> dict:
    """A hung region (SIGSTOP): processes alive, sockets open, nothing answers; thawed after `duration`.

    Without `duration` the region stays frozen until `thaw_region` (the rollback).
    """
    return _freeze(ctx, region, duration)


def _freeze(ctx: Context, region: str, duration: float | None) -> dict:
    result = ctx.target.freeze_region(region)
    injected(ctx, result.t, "region-freeze", region=region, frozen=list(result.processes))
    if duration is None:
        return {"region": region, "frozen": list(result.processes)}
    time.sleep(max(0.0, result.t + float(duration) - time.time()))
    _thaw(ctx, region)
    return {"region": region, "frozen": list(result.processes), "duration": float(duration)}


def _thaw(ctx: Context, region: str) -> dict:
    result = ctx.target.thaw_region(region)
    if result.was_frozen:
        ctx.record(FAULT_CLEARED, t=result.t, fault="region-freeze", region=region)
    return {"region": region, "thawed": bool(result.was_frozen)}


@action(RegionFaults)
def thaw_region(ctx: Context, region: str) -> dict:
    """Rollback of a freeze: SIGCONT the region; safe to repeat (records the clearing once)."""
    return _thaw(ctx, region)


@action(RegionFaults)
def lose_region(ctx: Context, region: str, data: str = "gone", outage: float | None = None) -> dict:
    """Region loss, with its data `gone` for good (every process killed: the region's in-memory
    global table replica with it) or `kept` (every process frozen, as a region cut off by a
    power or network loss, and thawed after `outage` seconds: it comes back with its data and
    its replicator sends what it had not sent)."""
    if data == "gone":
        return {"region": region, "data": data, "killed": _killed(ctx, "region-loss", ctx.target.kill_region(region))}
    if data != "kept":
        raise ActivityFailed(f"lose_region: data must be 'gone' or 'kept', not {data!r}")
    return {**_freeze(ctx, region, outage), "data": data}


@action(GlobalTable)
def wait_for_every_home_served(ctx: Context, timeout: float = 30) -> dict:
    """Runbook check (active-active): every home region's clients are served again, a lost
    region's by the other once the endpoint's health check has moved them."""
    from drillkit.chaos.observe import homes_served

    deadline = time.monotonic() + float(timeout)
    while True:
        unserved = homes_served(ctx.target)
        if not unserved:
            return {"served": list(ctx.target.home_regions())}
        if time.monotonic() > deadline:
            raise ActivityFailed(f"the endpoint still does not serve the clients of {', '.join(unserved)} "
                                 f"after {timeout}s")
        time.sleep(0.05)


@action(RegionFaults)
def kill_app_tier(ctx: Context, region: str) -> list[str]:
    """Loss of the app tier only: compute gone, the region's data (its database) survives."""
    return _killed(ctx, "app-tier-loss", ctx.target.kill_app_tier(region))


@action(ReplayControl)
def pause_replay(ctx: Context, region: str, precondition: bool = False) -> dict:
    """Lag injection at the standby: it keeps receiving WAL but applies none (pg_wal_replay_pause)."""
    result = ctx.target.pause_replay(region)
    injected(ctx, result.t, "replay-paused", precondition, region=region)
    return {"region": region}


@action(ReplayControl)
def resume_replay(ctx: Context, region: str) -> dict:
    """Rollback of pause_replay; a no-op on a standby that was promoted meanwhile."""
    result = ctx.target.resume_replay(region)
    if result.changed:
        ctx.record(FAULT_CLEARED, t=result.t, fault="replay-paused", region=region)
    return {"region": region, "resumed": result.changed}


@action(ReplicationObservation)
def await_lag_alarm(ctx: Context, threshold_seconds: float, timeout: float = 30) -> dict:
    """A "replica lag > N s" watch in the runbook: poll lag every 50 ms, record `lag_alarm.detected`
    when first over (a scenario's `alarms` are the sampler's, recorded as `alarm.raised`).

    Returns `detected_after_s`, the time from the last `fault.injected` to the alarm (time to detect).
    """
    threshold = float(threshold_seconds)
    deadline = time.monotonic() + float(timeout)
    worst = 0.0
    while time.monotonic() < deadline:
        samples = ctx.target.replication_lag()
        lag = max((s.replay_lag_s for s in samples if s.replay_lag_s is not None), default=0.0)
        worst = max(worst, lag)
        if lag > threshold:
            t = max(s.t for s in samples)
            ctx.record(LAG_ALARM_DETECTED, t=t, alarm="replication-lag", threshold_s=threshold, lag_s=round(lag, 6))
            faults = [e for e in ctx.read_events() if e["kind"] == FAULT_INJECTED and e["t"] <= t]
            since = round(t - faults[-1]["t"], 6) if faults else None
            return {"alarm": "replication-lag", "t": t, "lag_s": lag, "detected_after_s": since}
        time.sleep(0.05)
    raise ActivityFailed(f"replication lag never exceeded {threshold}s within {timeout}s (worst {worst:.3f}s)")


@action(Runbook)
def promote_standby(ctx: Context, region: str) -> dict:
    """Runbook: promote the region's standby database to primary."""
    took = ctx.target.promote_standby(region).took_s
    ctx.record(DB_PROMOTED, region=region, took_s=round(took, 6))
    return {"region": region, "took_s": took}


@action(Runbook)
def switch_routing(ctx: Context, to: str, reason: str = "runbook") -> dict:
    """Runbook: point the global endpoint at `to` (the router records `routing.switch`)."""
    return ctx.target.switch_routing(to, reason).as_dict()


@action(Regions)
def wait_for_routing(ctx: Context, region: str, timeout: float = 30) -> dict:
    """Runbook check: block until the global endpoint answers with `region`."""
    deadline = time.monotonic() + float(timeout)
    answer = None
    while time.monotonic() < deadline:
        try:
            answer = ctx.target.serving_region()
        except FaultError as exc:  # an endpoint still resolving to the lost region does not answer
            answer = f"no answer ({exc})"
        if answer == region:
            return {"region": region}
        time.sleep(0.02)
    raise ActivityFailed(f"global endpoint still serves {answer} after {timeout}s, not {region}")


@action(Regions)
def wait_for_region_down(ctx: Context, region: str, timeout: float = 30) -> dict:
    """Runbook check: confirm the region no longer answers before acting on it."""
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        if not ctx.target.region_health(region, timeout=0.5).healthy:
            return {"region": region, "healthy": False}
        time.sleep(0.05)
    raise ActivityFailed(f"region {region} still answers after {timeout}s")


@action(Links)
def inject_link_fault(ctx: Context, link: str, kind: str, duration: float | None = None, precondition: bool = False,
                      **params: Any) -> dict:
    """Network fault on a link (`client-A`, `client-B`, `repl-A-B`); cleared after `duration` if given.

    `precondition: true` marks a fault that sets the stage for the disaster (a lagging replica
    before a region loss): it is recorded, but the disaster's clock (t_fault) starts later.
    """
    t = ctx.target.inject_link_fault(link, kind, **params).at
    injected(ctx, t, f"link-{kind}", precondition, link=link, params=params)
    if duration is None:
        return {"link": link, "kind": kind}
    time.sleep(max(0.0, t + float(duration) - time.time()))
    healed = ctx.target.clear_link_fault(link, kind).at
    ctx.record(FAULT_CLEARED, t=healed, fault=f"link-{kind}", link=link, lasted_s=round(healed - t, 6))
    return {"link": link, "kind": kind, "duration": float(duration)}


@action(Links)
def clear_link_faults(ctx: Context, link: str | None = None) -> list[str]:
    """Rollback: heal one link or every link."""
    names = [link] if link else ctx.target.link_names()
    for name in names:
        ctx.target.clear_link_fault(name)
    ctx.record(FAULT_CLEARED, fault="links", links=names)
    return names


@action(PointInTimeRecovery)
def take_base_backup(ctx: Context) -> dict:
    """Runbook: the nightly base backup a point-in-time restore starts from (before any fault)."""
    result = ctx.target.take_base_backup()
    ctx.record(DB_BACKUP, t=result.t, took_s=round(result.took_s, 6), wal_segment=result.wal_segment)
    return result.as_dict()


@action(PointInTimeRecovery)
def corrupt_records(ctx: Context, count: int = 20, region: str | None = None) -> dict:
    """Logical corruption of `count` records on the primary; it replicates like any good write."""
    result = ctx.target.corrupt_records(int(count), region)
    injected(ctx, result.t, "data-corruption", region=result.region, keys=list(result.keys), count=len(result.keys))
    return result.as_dict()


@action(PointInTimeRecovery)
def drop_table(ctx: Context, region: str | None = None) -> dict:
    """An operator's mistake: the records table dropped on the primary; it replicates to B too."""
    result = ctx.target.drop_table(region)
    injected(ctx, result.t, "table-drop", region=result.region, table=result.table, rows=result.rows)
    return result.as_dict()


@action(PointInTimeRecovery)
def detect_corruption(ctx: Context, timeout: float = 30) -> dict:
    """Runbook check: scan checksums on the serving region until corruption shows (time to detect)."""
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        found = ctx.target.scan_checksums()
        if found > 0:
            ctx.record(CORRUPTION_DETECTED, count=found)
            return {"count": found}
        time.sleep(0.05)
    raise ActivityFailed(f"no corrupt record found by the checksum scan within {timeout}s")


def _last_fault_time(ctx: Context, fault: str) -> float:
    for event in reversed(ctx.read_events()):
        if event["kind"] == FAULT_INJECTED and event.get("fault") == fault:
            return float(event["t"])
    raise ActivityFailed(f"no {fault} fault recorded: nothing to restore before")


def _restore(ctx: Context, restore_point: float, region: str | None) -> dict:
    result = ctx.target.restore_to_point_in_time(float(restore_point), region)
    ctx.record(DB_RESTORED, region=result.region, restore_point=result.restore_point,
               recovery_target_time=result.recovery_target_time, took_s=round(result.took_s, 6),
               newest_record_at=result.newest_record_at, cutover_at=result.cutover_at)
    return result.as_dict()


@action(RestoreTesting)
def restore_test(ctx: Context, timeout: float = 120) -> dict:
    """The monthly restore test: the latest backup restored into a scratch cluster while production
    runs, compared with the primary at a restore point, timed, torn down (`restore.tested`). A
    backup that does not verify is the drill's finding (its check fails), not a failed activity."""
    out = ctx.target.restore_test(float(timeout)).as_dict()
    ctx.record(RESTORE_TESTED, **out)
    return out


@action(PointInTimeRecovery)
def restore_to_point_in_time(ctx: Context, restore_point: float, region: str | None = None) -> dict:
    """Runbook: PITR of the database to `restore_point` (epoch seconds) into a new cluster that then
    serves the region."""
    return _restore(ctx, restore_point, region)


@action(PointInTimeRecovery)
def restore_before_corruption(ctx: Context, margin_s: float = 1.0, region: str | None = None) -> dict:
    """Runbook: PITR to `margin_s` before the recorded corruption, the last point known to be clean."""
    return _restore(ctx, _last_fault_time(ctx, "data-corruption") - float(margin_s), region)


@action(PointInTimeRecovery)
def restore_before_fault(ctx: Context, fault: str, margin_s: float = 1.0, region: str | None = None) -> dict:
    """Runbook: PITR to `margin_s` before the last recorded fault named `fault` (`table-drop`…)."""
    return _restore(ctx, _last_fault_time(ctx, fault) - float(margin_s), region)


@action(Regions)
def wait_for_writable(ctx: Context, timeout: float = 30) -> dict:
    """Runbook check: the global endpoint routes to a healthy primary again."""
    deadline = time.monotonic() + float(timeout)
    health = None
    while time.monotonic() < deadline:
        region = ctx.target.serving_region()
        health = ctx.target.region_health(region, timeout=0.5)
        if health.healthy and health.role == "primary":
            return {"region": region}
        time.sleep(0.05)
    raise ActivityFailed(f"the global endpoint does not reach a writable region after {timeout}s: {health}")


@action(AppScaling)
def scale_app_tier(ctx: Context, region: str, instances: int, timeout: float = 30) -> dict:
    """Runbook: start (or stop) app instances until `region` runs `instances`, within its quota;
    done when every new one is healthy (pilot light's scale-up, a warm standby's growth)."""
    result = ctx.target.scale_app_tier(region, int(instances), timeout=float(timeout))
    ctx.record(APP_SCALED, t=result.t, region=result.region, before=result.before, after=result.after,
               took_s=round(result.took_s, 6), instances=list(result.instances))
    return result.as_dict()


@action(BackupRestore)
def restore_region_from_backup(ctx: Context, region: str, timeout: float = 120) -> dict:
    """Runbook (backup-and-restore): restore `region`'s database from the base backup and WAL the
    copy job delivered to it, replayed to the end and promoted; it then needs its app tier."""
    result = ctx.target.restore_region(region, timeout=float(timeout))
    ctx.record(DB_RESTORED, t=result.t, region=result.region, source="backup copy", base_backup=result.base_backup,
               wal_segments=result.wal_segments, last_segment=result.last_segment,
               newest_record_at=result.newest_record_at, took_s=round(result.took_s, 6))
    return result.as_dict()

