"""Faults and runbook steps. Each fault records `fault.injected` (and `fault.cleared`) as it happens."""

from __future__ import annotations

import time
from typing import Any

from chaoslib.exceptions import ActivityFailed

from drillkit.chaos import system_from
from drillkit.errors import DrillkitError

Configuration = dict[str, Any] | None


def _guard(call):
    """Chaos Toolkit reports ActivityFailed as a failed activity; anything else would be a crash."""
    try:
        return call()
    except DrillkitError as exc:
        raise ActivityFailed(str(exc)) from exc


def kill_region(region: str, configuration: Configuration = None) -> list[str]:
    """Region loss: SIGKILL every process of the region (database and app) at once."""
    system = system_from(configuration)
    result = _guard(lambda: system.kill_region(region))
    system.event("fault.injected", t=result["t"], fault="region-loss", region=region, killed=result["killed"])
    return result["killed"]


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
    system.event("fault.injected", t=t, fault=f"link-{kind}", link=link, params=params,
                 **({"precondition": True} if precondition else {}))
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
