"""Probes: what the system looks like right now, for steady-state hypotheses and the journal."""

from __future__ import annotations

from typing import Any

from drillkit.chaos import system_from

Configuration = dict[str, Any] | None


def region_healthy(region: str, configuration: Configuration = None) -> bool:
    return bool(system_from(configuration).region_health(region)["healthy"])


def endpoint_writable(configuration: Configuration = None) -> bool:
    """The global endpoint routes to a healthy region whose database is a primary (accepts writes)."""
    system = system_from(configuration)
    region = system.serving_region()
    health = system.region_health(region)
    return bool(health["healthy"] and health.get("role") == "primary")


def serving_region(configuration: Configuration = None) -> str:
    return system_from(configuration).serving_region()


def replication_status(configuration: Configuration = None) -> list[dict]:
    """pg_stat_replication of the primary: who streams, in which sync state, how far behind."""
    return system_from(configuration).replication_status()


def standby_streaming(configuration: Configuration = None) -> bool:
    return any(r["state"] == "streaming" for r in system_from(configuration).replication_status())


def replication_lag(configuration: Configuration = None) -> float:
    """The largest replay lag in seconds over the standbys (0 when none)."""
    samples = system_from(configuration).replication_lag()
    return max((s.replay_lag_s for s in samples if s.replay_lag_s is not None), default=0.0)


def replication_lag_bytes(configuration: Configuration = None) -> int:
    """The largest WAL distance in bytes between the primary and a standby's replay (0 when none)."""
    return max((s.lag_bytes or 0 for s in system_from(configuration).replication_lag()), default=0)


def scan_checksums(region: str | None = None, configuration: Configuration = None) -> int:
    """Records of the serving region (or `region`) whose payload no longer matches its stored checksum."""
    return system_from(configuration).scan_checksums(region)
