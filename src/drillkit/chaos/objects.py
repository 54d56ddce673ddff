"""Object-storage faults, runbook steps and probes: ransomware, tamper scans, version restore, replication."""

from __future__ import annotations

import time

from chaoslib.exceptions import ActivityFailed

from drillkit.chaos import system_from
from drillkit.chaos.actions import Configuration, _guard, _injected


def ransomware_objects(count: int = 20, mode: str = "mixed", region: str | None = None, seed: int | None = None,
                       configuration: Configuration = None) -> dict:
    """Ransomware: overwrite (encrypt) or delete `count` objects in the serving region's bucket.

    Overwrites replicate to the DR region like any write; deletes replicate only with
    delete-marker replication on. The rollback is `restore_object_versions`.
    """
    system = system_from(configuration)
    target = region or _guard(system.serving_region)
    result = _guard(lambda: system.objects.attack(target, int(count), mode, seed))
    _injected(system, result["t"], "ransomware", region=target, overwritten=result["overwritten"],
              deleted=result["deleted"], count=len(result["overwritten"]) + len(result["deleted"]))
    return result


def detect_object_tampering(region: str | None = None, timeout: float = 30,
                            configuration: Configuration = None) -> dict:
    """Runbook check: scan object checksums until tampering shows (time to detect)."""
    system = system_from(configuration)
    target = region or _guard(system.serving_region)
    deadline = time.monotonic() + float(timeout)
    while time.monotonic() < deadline:
        found = _guard(lambda: system.objects.scan(target))
        if found["tampered"] or found["deleted"]:
            system.event("objects.tampering.detected", region=target, tampered=len(found["tampered"]),
                         deleted=len(found["deleted"]))
            return {"region": target, "tampered": len(found["tampered"]), "deleted": len(found["deleted"])}
        time.sleep(0.1)
    raise ActivityFailed(f"no tampered or deleted object found in region {target} within {timeout}s")


def restore_object_versions(region: str | None = None, configuration: Configuration = None) -> dict:
    """Runbook (and the ransomware rollback): make each object's newest good version current again.

    Safe to repeat: objects whose current version verifies are left alone.
    """
    system = system_from(configuration)
    target = region or _guard(system.serving_region)
    result = _guard(lambda: system.objects.restore_versions(target))
    restored = len(result["reverted"]) + len(result["undeleted"])
    system.event("objects.restored", t=result["t"], region=target, reverted=len(result["reverted"]),
                 undeleted=len(result["undeleted"]), unrecoverable=result["unrecoverable"],
                 took_s=round(result["took_s"], 6))
    if restored:
        system.event("fault.cleared", t=result["t"], fault="ransomware", region=target, restored=restored)
    if result["unrecoverable"]:
        raise ActivityFailed(f"{len(result['unrecoverable'])} object(s) have no good version to restore: "
                             f"{', '.join(result['unrecoverable'][:5])}")
    return {"region": target, "reverted": len(result["reverted"]), "undeleted": len(result["undeleted"])}


def wait_objects_replicated(timeout: float = 30, configuration: Configuration = None) -> dict:
    """Runbook check: the replication backlog is empty (the DR region has every change)."""
    system = system_from(configuration)
    return _guard(lambda: system.objects.wait_replicated(float(timeout)))


def configure_object_replication(delay: float | None = None, delete_markers: bool | None = None,
                                 configuration: Configuration = None) -> dict:
    """Change the replication delay or delete-marker replication while the drill runs."""
    system = system_from(configuration)
    status = _guard(lambda: system.objects.configure_replication(delay, delete_markers))
    system.event("objects.replication.configured", delay=status["delay"], delete_markers=status["delete_markers"])
    return status


def object_replication_status(configuration: Configuration = None) -> dict:
    """Probe: backlog, age of the oldest pending change, counts copied and skipped."""
    return _guard(system_from(configuration).objects.replication_status)


def objects_tampered(region: str | None = None, configuration: Configuration = None) -> int:
    """Probe: objects of the region (default: the serving one) that are tampered with or deleted."""
    system = system_from(configuration)
    found = _guard(lambda: system.objects.scan(region or system.serving_region()))
    return len(found["tampered"]) + len(found["deleted"])
