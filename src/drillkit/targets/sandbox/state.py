"""The sandbox state file: what runs where. Actions, probes and the CLI read it; only the sandbox writes it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from drillkit.errors import InputError
from drillkit.evidence import write_atomic
from drillkit.targets.processes import ProcessEntry

STATE_FILE = "sandbox.json"

Role = Literal["primary", "standby", "down", "empty"]
"""`empty`: a region with no database yet (backup-restore's DR region, until the runbook restores it)."""


class RegionState(BaseModel):
    name: str
    role: Role
    db_port: int | None
    datadir: str | None
    apps: dict[str, int] = {}
    """The region's running app instances: name → port, balanced behind its client link."""
    link: str
    frozen: bool = False
    s3_port: int | None = None
    table_port: int | None = None
    """active-active: the region's replica of the global table (DynamoDB API)."""
    clock_offset: float = 0.0
    """active-active: how far the region's clock (its LWW timestamps) runs ahead of the host's."""
    table_replicator_port: int | None = None
    """active-active: the status API of the replicator sending this region's writes to the other."""


class LinkState(BaseModel):
    name: str
    port: int
    control_port: int
    upstream: str


class SandboxState(BaseModel):
    kind: Literal["sandbox"] = "sandbox"
    root: str
    events_file: str
    pg_bin: str
    pg_version: str
    pg_user: str | None
    archive_dir: str
    strategy: str
    replication_mode: str
    routing_policy: str
    primary_region: str
    router_port: int
    regions: dict[str, RegionState]
    links: dict[str, LinkState]
    processes: list[ProcessEntry] = []
    app_capacity: float | None = None
    max_instances: int = 16
    backup_archive: str | None = None
    """backup-restore: region B's archive, where the copier puts the base backup and WAL segments."""
    config_backend: str | None = None
    """routing config-json: the region whose API config.json names (as the runbook last wrote it)."""
    config_switches: list[dict] = []
    config_ttl: float | None = None
    """routing config-json: how long each client keeps its copy of config.json."""
    object_replicator_port: int | None = None
    table_replication_delay: float = 0.0
    """active-active: how long the global table's replicators hold each change before delivering it."""
    object_source: str = "A"
    object_destination: str = "B"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.router_port}"

    def save(self) -> Path:
        return write_atomic(Path(self.root) / STATE_FILE, self.model_dump_json(indent=2))


def load_state(path: str | os.PathLike[str]) -> SandboxState:
    p = Path(path)
    if p.is_dir():
        p = p / STATE_FILE
    try:
        return SandboxState.model_validate_json(p.read_text())
    except FileNotFoundError:
        raise InputError("no sandbox state here (is the sandbox up?)", file=str(p)) from None
    except ValueError as exc:
        raise InputError(f"not a sandbox state file: {str(exc).splitlines()[0]}", file=str(p)) from None
