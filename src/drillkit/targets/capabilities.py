"""What a drill can ask of a target: small capability protocols, each returning frozen dataclasses.

A target (drillkit.targets.sandbox, drillkit.targets.external, ...) implements the lifecycle in
`Target` and whichever capabilities its system has. A chaos action asks for the one it needs with
`require(target, Capability)`; a target without it fails the activity with one line naming the
capability (MissingCapability), never an AttributeError half-way through a fault.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Protocol, TypeVar, runtime_checkable

from drillkit.errors import MissingCapability

# -- results -------------------------------------------------------------------------------


class Result:
    """Every capability result is a frozen dataclass; `as_dict` is its journal/event form."""

    def as_dict(self) -> dict[str, Any]:
        """As JSON has it (tuples become lists), for the journal and the events."""
        return _plain(asdict(self))  # type: ignore[call-overload]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class RegionHealth(Result):
    region: str
    healthy: bool
    status: int | None = None
    role: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class RegionFault(Result):
    """Processes of a region killed, frozen or thawed; `t` is when the signals went out."""

    region: str
    t: float
    processes: tuple[str, ...]
    was_frozen: bool | None = None


@dataclass(frozen=True)
class ReplayChange(Result):
    region: str
    t: float
    changed: bool = True


@dataclass(frozen=True)
class Promotion(Result):
    region: str
    took_s: float


@dataclass(frozen=True)
class RoutingStatus(Result):
    """What the global endpoint answers now, and every switch it made so far."""

    policy: str
    answer: str
    read_shares: dict[str, float] = field(default_factory=dict)
    switches: tuple[dict, ...] = ()


@dataclass(frozen=True)
class ClientConfigSpec(Result):
    """Clients find the backend in a document on the endpoint (a frontend's config.json), each
    keeping its copy `ttl` seconds: the harness's own clients (the load, the canary) do so too."""

    path: str
    ttl: float


@dataclass(frozen=True)
class ReplicaStatus(Result):
    """One row of the primary's view of a standby (pg_stat_replication)."""

    application_name: str | None
    state: str | None
    sync_state: str | None
    lag_bytes: int | None
    replay_lag_s: float | None


@dataclass(frozen=True)
class LagSample(Result):
    """Database replication lag of a standby region, or the object-replication backlog towards it."""

    t: float
    region: str
    replay_lag_s: float | None
    lag_bytes: int | None
    object_backlog: int | None = None
    object_backlog_age_s: float | None = None


@dataclass(frozen=True)
class Backup(Result):
    path: str
    t: float
    took_s: float
    wal_segment: str


@dataclass(frozen=True)
class TableDrop(Result):
    """An operator's mistake: the table dropped on the primary (`t`, the commit), with the rows it held."""

    region: str
    t: float
    table: str
    rows: int


@dataclass(frozen=True)
class Corruption(Result):
    region: str
    t: float
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Restore(Result):
    region: str
    restore_point: float
    recovery_target_time: str
    newest_record_at: float | None
    cutover_at: float
    took_s: float
    db_port: int
    retired: tuple[str, ...]


@dataclass(frozen=True)
class RestoreTest(Result):
    """The latest backup restored into a scratch cluster beside production, to a restore point
    made at `point_at`, compared with the primary as it was at that point, then torn down."""

    base_backup: str
    backup_taken_at: float
    backup_age_s: float
    """From the end of the backup to the restore point: how old the newest restorable backup was."""
    restore_point: str
    point_at: float
    wal_segments: int
    rows_expected: int
    rows_restored: int
    digest_expected: str
    digest_restored: str
    corrupt_restored: int
    writes_held_s: float
    """How long production writes waited while the primary's rows were counted at the point."""
    restore_s: float
    """From the restore point to the scratch cluster promoted and answering."""
    took_s: float
    t: float
    torn_down: bool
    error: str | None = None
    """Why the backup could not be restored to the point (a property of the backups, not of drillkit).
    Whether the restore verified is measure's to say (drillkit.measure.restore_tests)."""


@dataclass(frozen=True)
class Scaling(Result):
    """A region's app tier scaled from `before` to `after` instances; `t` is when the last new
    instance answered its health check (ready to take traffic)."""

    region: str
    before: int
    after: int
    t: float
    took_s: float
    instances: tuple[str, ...]


@dataclass(frozen=True)
class RegionRestore(Result):
    """A region's database restored from the backups copied to it: the base backup and every WAL
    segment that had reached its archive, replayed to the end and promoted."""

    region: str
    base_backup: str
    wal_segments: int
    last_segment: str | None
    newest_record_at: float | None
    t: float
    took_s: float
    db_port: int


@dataclass(frozen=True)
class Rebuild(Result):
    region: str
    source: str
    datadir: str
    db_port: int
    link: str
    retired: tuple[str, ...]
    t: float
    took_s: float


@dataclass(frozen=True)
class CatchUp(Result):
    region: str
    lsn: str
    replayed: str
    t: float
    took_s: float
    objects_seen: int | None


@dataclass(frozen=True)
class Switchover(Result):
    old: str
    to: str
    checkpoint: str
    stopping_at: float
    stopped_at: float
    replayed_at: float
    promoted_at: float
    promote_s: float
    routed_at: float
    no_primary_s: float
    t: float
    took_s: float


@dataclass(frozen=True)
class LinkChange(Result):
    link: str
    at: float


@dataclass(frozen=True)
class ObjectReplicationStatus(Result):
    backlog: int
    oldest_pending_s: float | None
    seen: int
    delay: float
    delete_markers: bool
    max_latency_s: float
    last_error: str | None
    replicated: int = 0
    delete_markers_replicated: int = 0
    delete_markers_skipped: int = 0
    at: float | None = None
    """When the replicator read its backlog (its clock, the machine's): the instant `oldest_pending_s` held."""
    errors: int = 0
    paused: bool = False
    disabled: bool = False
    not_replicated: int = 0


@dataclass(frozen=True)
class ObjectAttack(Result):
    region: str
    overwritten: tuple[str, ...]
    deleted: tuple[str, ...]
    t0: float
    t: float


@dataclass(frozen=True)
class ObjectScan(Result):
    tampered: tuple[str, ...]
    deleted: tuple[str, ...]


@dataclass(frozen=True)
class ObjectRestore(Result):
    region: str
    reverted: tuple[str, ...]
    undeleted: tuple[str, ...]
    unrecoverable: tuple[str, ...]
    t: float
    took_s: float


# -- the lifecycle every target has ---------------------------------------------------------


@runtime_checkable
class Target(Protocol):
    """A running system under test, as the harness holds it. `attach(state_file)` gives another
    handle on the same system (chaos providers and threads each take their own)."""

    kind: str
    lag_interval: float
    """Seconds between two replication-lag samples (where it has ReplicationObservation)."""

    @property
    def endpoint(self) -> str: ...

    @property
    def state_file(self): ...

    @property
    def region_header(self) -> str | None:
        """The response header naming the region that answered (None: its answers do not say)."""

    def ready(self) -> list[tuple[str, dict]]:
        """Wait until it can take load; the events to record (kind, fields)."""

    def facts(self) -> dict[str, str]:
        """Versions of what it runs, for the provenance."""

    def adopt(self, name: str, pid: int) -> None:
        """Take a harness process (Locust) into its registry: its teardown and reaper stop it."""

    def service_failure(self) -> str | None: ...

    def down(self) -> None: ...


# -- capabilities --------------------------------------------------------------------------


@runtime_checkable
class Regions(Protocol):
    """Which region the global endpoint serves from, and whether a region answers."""

    def serving_region(self) -> str: ...

    def region_health(self, region: str, timeout: float = 1.0) -> RegionHealth: ...


@runtime_checkable
class RegionFaults(Protocol):
    """Process-level disasters of a whole region or its app tier."""

    def kill_region(self, region: str) -> RegionFault: ...

    def freeze_region(self, region: str) -> RegionFault: ...

    def thaw_region(self, region: str) -> RegionFault: ...

    def kill_app_tier(self, region: str) -> RegionFault: ...


@runtime_checkable
class Runbook(Protocol):
    """The failover steps: promote the standby's database, move the global endpoint."""

    def promote_standby(self, region: str) -> Promotion: ...

    def switch_routing(self, to: str, reason: str = "runbook") -> RoutingStatus: ...

    def routing(self) -> RoutingStatus: ...


@runtime_checkable
class ClientRouting(Protocol):
    """The backend is chosen by the client from a cached document, not by the endpoint."""

    def client_config(self) -> ClientConfigSpec | None: ...


@runtime_checkable
class ReplicationObservation(Protocol):
    def replication_status(self) -> list[ReplicaStatus]: ...

    def replication_lag(self) -> list[LagSample]: ...


@runtime_checkable
class ReplayControl(Protocol):
    """Lag injected at the standby: WAL received but not applied."""

    def pause_replay(self, region: str) -> ReplayChange: ...

    def resume_replay(self, region: str) -> ReplayChange: ...


@runtime_checkable
class Links(Protocol):
    """Fault-injecting proxies on the client and replication connections."""

    def link_names(self) -> list[str]: ...

    def inject_link_fault(self, link: str, kind: str, **params: Any) -> LinkChange: ...

    def clear_link_fault(self, link: str, kind: str | None = None) -> LinkChange: ...


@runtime_checkable
class PointInTimeRecovery(Protocol):
    """Base backups, logical corruption and restores to a point in time."""

    def take_base_backup(self) -> Backup: ...

    def corrupt_records(self, count: int, region: str | None = None) -> Corruption: ...

    def drop_table(self, region: str | None = None) -> TableDrop: ...

    def scan_checksums(self, region: str | None = None) -> int: ...

    def restore_to_point_in_time(self, restore_point: float, region: str | None = None) -> Restore: ...


@runtime_checkable
class RestoreTesting(Protocol):
    """The monthly restore test: the latest backup restored, verified and timed with production
    running, the scratch cluster torn down."""

    def restore_test(self, timeout: float = 120) -> RestoreTest: ...


@runtime_checkable
class AppScaling(Protocol):
    """Start or stop app instances in a region (pilot light's scale-up, a warm standby's growth
    to full capacity), within the region's quota."""

    def scale_app_tier(self, region: str, instances: int, timeout: float = 30) -> Scaling: ...


@runtime_checkable
class BackupRestore(Protocol):
    """Backup-and-restore: the DR region holds only copied backups until the runbook restores it."""

    def restore_region(self, region: str, timeout: float = 120) -> RegionRestore: ...


@runtime_checkable
class Failback(Protocol):
    def rebuild_as_standby(self, region: str, timeout: float = 60) -> Rebuild: ...

    def wait_caught_up(self, region: str, timeout: float = 60) -> CatchUp: ...

    def shift_reads(self, region: str, percent: float) -> RoutingStatus: ...

    def switchover(self, to: str, timeout: float = 60) -> Switchover: ...


@runtime_checkable
class ObjectStore(Protocol):
    """The system's object storage, as drills act on it."""

    def replication_status(self) -> ObjectReplicationStatus: ...

    def configure_replication(self, delay: float | None = None, delete_markers: bool | None = None,
                              paused: bool | None = None, disabled: bool | None = None) -> ObjectReplicationStatus: ...

    def wait_replicated(self, timeout: float = 30) -> ObjectReplicationStatus: ...

    def attack(self, region: str, count: int, mode: str = "mixed", seed: int | None = None) -> ObjectAttack: ...

    def scan(self, region: str) -> ObjectScan: ...

    def restore_versions(self, region: str, keys: list[str] | None = None) -> ObjectRestore: ...


@runtime_checkable
class Objects(Protocol):
    @property
    def objects(self) -> ObjectStore: ...


@dataclass(frozen=True)
class TableReplicationStatus(Result):
    """One direction of a global table's replication: changes `source` has not yet delivered to
    `destination` (None: its replicator did not answer), and what it delivered so far."""
    source: str
    destination: str
    backlog: int | None
    oldest_pending_s: float | None
    applied: int
    discarded: int
    error: str | None = None


@runtime_checkable
class GlobalTable(Protocol):
    """active-active: a table both regions write, replicated both ways, last writer wins."""

    def home_regions(self) -> list[str]: ...

    def table_regions(self) -> list[str]: ...

    def table_replication(self) -> list[TableReplicationStatus]: ...

    def settle_table(self, timeout: float | None = None) -> list[TableReplicationStatus]: ...

    def table_final_state(self) -> dict[str, dict[str, dict]]: ...


@runtime_checkable
class FinalStateAudit(Protocol):
    """After recovery: every record the system holds, `(key, checksum)`, and where it was read."""

    def audit_source(self) -> str: ...

    def final_state(self) -> Iterator[tuple[str, str]]: ...


@runtime_checkable
class AwsApi(Protocol):
    """An AWS account to act on (drillkit.targets.aws.account.Account): allowlisted, guarded, trailed;
    and the scenario's CloudWatch alarms as stop conditions."""

    def aws_account(self) -> Any: ...

    def stop_condition(self) -> str | None: ...

    @property
    def alarm_poll(self) -> float:
        """Seconds between two reads of the stop-condition alarms."""


CAPABILITIES: dict[str, type] = {c.__name__: c for c in (
    Regions, RegionFaults, Runbook, ClientRouting, ReplicationObservation, ReplayControl, Links, PointInTimeRecovery,
    RestoreTesting, AppScaling, BackupRestore, Failback, Objects, GlobalTable, FinalStateAudit, AwsApi)}
"""Every capability a target may offer, by name (ObjectStore is the object storage `Objects` hands
out, not a target's own)."""

C = TypeVar("C")


def has(target: object, capability: type) -> bool:
    """Whether the target offers the capability: it implements the protocol's methods, and does
    not say otherwise (a target whose configuration lacks a part lists it in `lacks()`)."""
    lacks = getattr(target, "lacks", None)
    if callable(lacks) and capability.__name__ in lacks():
        return False
    return isinstance(target, capability)


def require(target: object, capability: type[C]) -> C:
    """The target as `capability`, or MissingCapability naming it and the target's kind."""
    if not has(target, capability):
        kind = getattr(target, "kind", type(target).__name__)
        raise MissingCapability(capability.__name__, kind)
    return target  # type: ignore[return-value]


def capabilities_of(target: object) -> list[str]:
    return [name for name, cap in CAPABILITIES.items() if has(target, cap)]
