"""Faults and runbook steps. Each fault records `fault.injected` (and `fault.cleared`) as it happens."""

from __future__ import annotations

import time
from typing import Any

from chaoslib.exceptions import ActivityFailed

from drillkit.chaos import system_from
from drillkit.errors import DrillkitError
from drillkit.evidence import read_events

Configuration = dict[str, Any] | None


def _guard(call):
    """Chaos Toolkit reports ActivityFailed as a failed activity; anything else would be a crash."""
    try:
        return call()
    except DrillkitError as exc:
        raise ActivityFailed(str(exc)) from exc


def _injected(system, t: float, fault: str, precondition: bool = False, **fields: Any) -> None:
    """Record a fault at the moment it took effect. A `precondition` sets the stage (a lagging
    replica before a region loss) without starting the disaster's clock, t_fault."""
    system.event("fault.injected", t=t, fault=fault, **fields, **({"precondition": True} if precondition else {}))


def kill_region(region: str, configuration: Configuration = None) -> list[str]:
    """Region loss: SIGKILL every process of the region (database and app) at once."""
    system = system_from(configuration)
    result = _guard(lambda: system.kill_region(region))
    _injected(system, result["t"], "region-loss", region=region, killed=result["killed"])
    return result["killed"]


def freeze_region(region: str, duration: float | None = None, configuration: Configuration = None) -> dict:
    """A hung region (SIGSTOP): processes alive, sockets open, nothing answers; thawed after `duration`.

    Without `duration` the region stays frozen until `thaw_region` (the rollback).
    """
    system = system_from(configuration)
    result = _guard(lambda: system.freeze_region(region))
    _injected(system, result["t"], "region-freeze", region=region, frozen=result["frozen"])
    if duration is None:
        return {"region": region, "frozen": result["frozen"]}
    time.sleep(max(0.0, result["t"] + float(duration) - time.time()))
    thaw_region(region, configuration)
    return {"region": region, "frozen": result["frozen"], "duration": float(duration)}


def thaw_region(region: str, configuration: Configuration = None) -> dict:
    """Rollback of a freeze: SIGCONT the region; safe to repeat (records the clearing once)."""
    system = system_from(configuration)
    result = _guard(lambda: system.thaw_region(region))
    if result["was_frozen"]:
        system.event("fault.cleared", t=result["t"], fault="region-freeze", region=region)
    return {"region": region, "thawed": result["was_frozen"]}


def kill_app_tier(region: str, configuration: Configuration = None) -> list[str]:
    """Loss of the app tier only: compute gone, the region's data (its database) survives."""
    system = system_from(configuration)
    result = _guard(lambda: system.kill_app_tier(region))
    _injected(system, result["t"], "app-tier-loss", region=region, killed=result["killed"])
    return result["killed"]


def pause_replay(region: str, precondition: bool = False, configuration: Configuration = None) -> dict:
    """Lag injection at the standby: it keeps receiving WAL but applies none (pg_wal_replay_pause)."""
    system = system_from(configuration)
    result = _guard(lambda: system.pause_replay(region))
    _injected(system, result["t"], "replay-paused", precondition, region=region)
    return {"region": region}


def resume_replay(region: str, configuration: Configuration = None) -> dict:
    """Rollback of pause_replay; a no-op on a standby that was promoted meanwhile."""
    system = system_from(configuration)
    result = _guard(lambda: system.resume_replay(region))
    if result["resumed"]:
        system.event("fault.cleared", t=result["t"], fault="replay-paused", region=region)
    return {"region": region, "resumed": result["resumed"]}


def await_lag_alarm(threshold_seconds: float, timeout: float = 30, configuration: Configuration = None) -> dict:
    """A "replica lag > N s" alarm: poll lag every 50 ms, record `alarm.raised` when first over.

    Returns `detected_after_s`, the time from the last `fault.injected` to the alarm (time to detect).
    """
    system = system_from(configuration)
    threshold = float(threshold_seconds)
    deadline = time.monotonic() + float(timeout)
    worst = 0.0
    while time.monotonic() < deadline:
        samples = _guard(system.replication_lag)
        lag = max((s.replay_lag_s for s in samples if s.replay_lag_s is not None), default=0.0)
        worst = max(worst, lag)
        if lag > threshold:
            t = max(s.t for s in samples)
            system.event("alarm.raised", t=t, alarm="replication-lag", threshold_s=threshold, lag_s=round(lag, 6))
            faults = [e for e in read_events(system.events_file.parent)
                      if e["kind"] == "fault.injected" and e["t"] <= t]
            since = round(t - faults[-1]["t"], 6) if faults else None
            return {"alarm": "replication-lag", "t": t, "lag_s": lag, "detected_after_s": since}
        time.sleep(0.05)
    raise ActivityFailed(f"replication lag never exceeded {threshold}s within {timeout}s (worst {worst:.3f}s)")


def promote_standby(region: str, configuration: Configuration = None) -> dict:
    """Runbook: promote the region's standby database to primary."""
    system = system_from(configuration)
    took = _guard(lambda: system.promote_standby(region))
    system.event("db.promoted", region=region, took_s=round(took, 6))
    return {"region": region, "took_s": took}


def switch_routing(to: str, reason: str = "runbook", configuration: Configuration = None) -> dict:
    """Runbook: point the global endpoint at `to` (the router records `routing.switch`)."""
    system = system_from(configuration)
    return _guard(lambda: system.switch_routing(to, reason))


def wait_for_routing(region: str, timeout: float = 30, configuration: Configuration = None) -> dict:
    """Runbook check: block until the global endpoint answers with `region`."""
    system = system_from(configuration)
    deadline = time.monotonic() + float(timeout)
    answer = None
    while time.monotonic() < deadline:
        answer = _guard(system.serving_region)
        if answer == region:
            return {"region": region}
        time.sleep(0.02)
    raise ActivityFailed(f"global endpoint still serves {answer} after {timeout}s, not {region}")


def wait_for_region_down(region: str, timeout: float = 30, configuration: Configuration = None) -> dict:
    """Runbook check: confirm the region no longer answers before acting on it."""
    system = system_from(configuration)
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        if not system.region_health(region, timeout=0.5)["healthy"]:
            return {"region": region, "healthy": False}
        time.sleep(0.05)
    raise ActivityFailed(f"region {region} still answers after {timeout}s")


def inject_link_fault(link: str, kind: str, duration: float | None = None, precondition: bool = False,
                      configuration: Configuration = None, **params: Any) -> dict:
    """Network fault on a link (`client-A`, `client-B`, `repl-A-B`); cleared after `duration` if given.

    `precondition: true` marks a fault that sets the stage for the disaster (a lagging replica
    before a region loss): it is recorded, but the disaster's clock (t_fault) starts later.
    """
    system = system_from(configuration)
    t = _guard(lambda: system.link(link).inject(kind, **params))["at"]
    _injected(system, t, f"link-{kind}", precondition, link=link, params=params)
    if duration is None:
        return {"link": link, "kind": kind}
    time.sleep(max(0.0, t + float(duration) - time.time()))
    healed = _guard(lambda: system.link(link).clear(kind))["at"]
    system.event("fault.cleared", t=healed, fault=f"link-{kind}", link=link, lasted_s=round(healed - t, 6))
    return {"link": link, "kind": kind, "duration": float(duration)}


def clear_link_faults(link: str | None = None, configuration: Configuration = None) -> list[str]:
    """Rollback: heal one link or every link."""
    system = system_from(configuration)
    names = [link] if link else system.link_names()
    for name in names:
        _guard(lambda n=name: system.link(n).clear())
    system.event("fault.cleared", fault="links", links=names)
    return names


def take_base_backup(configuration: Configuration = None) -> dict:
    """Runbook: the nightly base backup a point-in-time restore starts from (before any fault)."""
    system = system_from(configuration)
    result = _guard(system.take_base_backup)
    system.event("db.backup", t=result["t"], took_s=round(result["took_s"], 6), wal_segment=result["wal_segment"])
    return result


def corrupt_records(count: int = 20, region: str | None = None, configuration: Configuration = None) -> dict:
    """Logical corruption of `count` records on the primary; it replicates like any good write."""
    system = system_from(configuration)
    result = _guard(lambda: system.corrupt_records(int(count), region))
    _injected(system, result["t"], "data-corruption", region=result["region"], keys=result["keys"],
              count=len(result["keys"]))
    return result


def detect_corruption(timeout: float = 30, configuration: Configuration = None) -> dict:
    """Runbook check: scan checksums on the serving region until corruption shows (time to detect)."""
    system = system_from(configuration)
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        found = _guard(system.scan_checksums)
        if found > 0:
            system.event("corruption.detected", count=found)
            return {"count": found}
        time.sleep(0.05)
    raise ActivityFailed(f"no corrupt record found by the checksum scan within {timeout}s")


def _last_fault_time(system, fault: str) -> float:
    for event in reversed(read_events(system.events_file.parent)):
        if event["kind"] == "fault.injected" and event.get("fault") == fault:
            return float(event["t"])
    raise ActivityFailed(f"no {fault} fault recorded: nothing to restore before")


def restore_to_point_in_time(restore_point: float, region: str | None = None,
                             configuration: Configuration = None) -> dict:
    """Runbook: PITR of the database to `restore_point` (epoch seconds) into a new cluster that then
    serves the region."""
    system = system_from(configuration)
    result = _guard(lambda: system.restore_to_point_in_time(float(restore_point), region))
    system.event("db.restored", region=result["region"], restore_point=result["restore_point"],
                 recovery_target_time=result["recovery_target_time"], took_s=round(result["took_s"], 6),
                 newest_record_at=result["newest_record_at"], cutover_at=result["cutover_at"])
    return result


def restore_before_corruption(margin_s: float = 1.0, region: str | None = None,
                              configuration: Configuration = None) -> dict:
    """Runbook: PITR to `margin_s` before the recorded corruption, the last point known to be clean."""
    system = system_from(configuration)
    t_corrupt = _last_fault_time(system, "data-corruption")
    return restore_to_point_in_time(t_corrupt - float(margin_s), region, configuration)


def wait_for_writable(timeout: float = 30, configuration: Configuration = None) -> dict:
    """Runbook check: the global endpoint routes to a healthy primary again."""
    system = system_from(configuration)
    deadline = time.monotonic() + float(timeout)
    health: dict = {}
    while time.monotonic() < deadline:
        region = _guard(system.serving_region)
        health = system.region_health(region, timeout=0.5)
        if health["healthy"] and health.get("role") == "primary":
            return {"region": region}
        time.sleep(0.05)
    raise ActivityFailed(f"the global endpoint does not reach a writable region after {timeout}s: {health}")
