"""Object-storage faults, runbook steps and probes: ransomware, tamper scans, version restore, replication."""

from __future__ import annotations

import time

from chaoslib.exceptions import ActivityFailed

from drillkit.chaos import Context, action
from drillkit.chaos.actions import injected
from drillkit.targets.capabilities import Objects, Regions
from drillkit.evidence import (FAULT_CLEARED, OBJECTS_REPLICATION_CONFIGURED, OBJECTS_RESTORED,
                               OBJECTS_TAMPERING_DETECTED)


def _region(ctx: Context, region: str | None) -> str:
    return region or ctx.target.serving_region()


@action(Objects, Regions)
def ransomware_objects(ctx: Context, count: int = 20, mode: str = "mixed", region: str | None = None,
                       seed: int | None = None) -> dict:
    """Ransomware: overwrite (encrypt) or delete `count` objects in the serving region's bucket.

    Overwrites replicate to the DR region like any write; deletes replicate only with
    delete-marker replication on. The rollback is `restore_object_versions`.
    """
    target = _region(ctx, region)
    result = ctx.target.objects.attack(target, int(count), mode, seed)
    injected(ctx, result.t, "ransomware", region=target, overwritten=list(result.overwritten),
             deleted=list(result.deleted), count=len(result.overwritten) + len(result.deleted))
    return result.as_dict()


@action(Objects, Regions)
def detect_object_tampering(ctx: Context, region: str | None = None, timeout: float = 30) -> dict:
    """Runbook check: scan object checksums until tampering shows (time to detect)."""
    target = _region(ctx, region)
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        found = ctx.target.objects.scan(target)
        if found.tampered or found.deleted:
            ctx.record(OBJECTS_TAMPERING_DETECTED, region=target, tampered=len(found.tampered),
                       deleted=len(found.deleted))
            return {"region": target, "tampered": len(found.tampered), "deleted": len(found.deleted)}
        time.sleep(0.1)
    raise ActivityFailed(f"no tampered or deleted object found in region {target} within {timeout}s")


@action(Objects, Regions)
def restore_object_versions(ctx: Context, region: str | None = None) -> dict:
    """Runbook (and the ransomware rollback): make each object's newest good version current again.

    Safe to repeat: objects whose current version verifies are left alone.
    """
    target = _region(ctx, region)
    result = ctx.target.objects.restore_versions(target)
    restored = len(result.reverted) + len(result.undeleted)
    ctx.record(OBJECTS_RESTORED, t=result.t, region=target, reverted=len(result.reverted),
               undeleted=len(result.undeleted), unrecoverable=list(result.unrecoverable),
               took_s=round(result.took_s, 6))
    if restored:
        ctx.record(FAULT_CLEARED, t=result.t, fault="ransomware", region=target, restored=restored)
    if result.unrecoverable:
        raise ActivityFailed(f"{len(result.unrecoverable)} object(s) have no good version to restore: "
                             f"{', '.join(result.unrecoverable[:5])}")
    return {"region": target, "reverted": len(result.reverted), "undeleted": len(result.undeleted)}


@action(Objects)
def wait_objects_replicated(ctx: Context, timeout: float = 30) -> dict:
    """Runbook check: the replication backlog is empty (the DR region has every change)."""
    return ctx.target.objects.wait_replicated(float(timeout)).as_dict()


@action(Objects)
def configure_object_replication(ctx: Context, delay: float | None = None, delete_markers: bool | None = None) -> dict:
    """Change the replication delay or delete-marker replication while the drill runs."""
    status = ctx.target.objects.configure_replication(delay, delete_markers)
    ctx.record(OBJECTS_REPLICATION_CONFIGURED, delay=status.delay, delete_markers=status.delete_markers)
    return status.as_dict()


@action(Objects)
def object_replication_status(ctx: Context) -> dict:
    """Probe: backlog, age of the oldest pending change, counts copied and skipped."""
    return ctx.target.objects.replication_status().as_dict()


@action(Objects, Regions)
def objects_tampered(ctx: Context, region: str | None = None) -> int:
    """Probe: objects of the region (default: the serving one) that are tampered with or deleted."""
    found = ctx.target.objects.scan(_region(ctx, region))
    return len(found.tampered) + len(found.deleted)
