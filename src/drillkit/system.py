"""The seam between drillkit and the system under test.

Chaos actions and probes, the lag sampler and the audit talk only to this protocol, so the
embedded sandbox (now) and a cloud account (later) are interchangeable, and tests use a fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable


@dataclass(frozen=True)
class LagSample:
    """Database replication lag of a standby region, or the object-replication backlog towards it."""

    t: float
    region: str
    replay_lag_s: float | None
    lag_bytes: int | None
    object_backlog: int | None = None
    object_backlog_age_s: float | None = None


class ObjectStore(Protocol):
    """The system's object storage, as drills act on it (drillkit.sandbox.object_storage for the sandbox)."""

    def replication_status(self) -> dict: ...

    def configure_replication(self, delay: float | None = None, delete_markers: bool | None = None) -> dict: ...

    def wait_replicated(self, timeout: float = 30) -> dict: ...

    def attack(self, region: str, count: int, mode: str = "mixed", seed: int | None = None) -> dict: ...

    def scan(self, region: str) -> dict[str, list[str]]: ...

    def restore_versions(self, region: str, keys: list[str] | None = None) -> dict: ...


@runtime_checkable
class System(Protocol):
    kind: str

    @property
    def endpoint(self) -> str: ...

    @property
    def events_file(self) -> Path: ...

    def event(self, kind: str, **fields) -> dict: ...

    def kill_region(self, region: str) -> dict: ...

    def freeze_region(self, region: str) -> dict: ...

    def thaw_region(self, region: str) -> dict: ...

    def kill_app_tier(self, region: str) -> dict: ...

    def pause_replay(self, region: str) -> dict: ...

    def resume_replay(self, region: str) -> dict: ...

    def promote_standby(self, region: str) -> float: ...

    def switch_routing(self, to: str, reason: str = "runbook") -> dict: ...

    def serving_region(self) -> str: ...

    def region_health(self, region: str, timeout: float = 1.0) -> dict: ...

    def replication_status(self) -> list[dict]: ...

    def replication_lag(self) -> list[LagSample]: ...

    def final_state(self) -> Iterator[tuple[str, str]]: ...

    @property
    def objects(self) -> ObjectStore: ...

    def down(self) -> None: ...


def attach(state_file: str) -> System:
    """The running system named by a state file (today always the sandbox)."""
    from drillkit.sandbox.system import Sandbox

    return Sandbox.attach(state_file)
