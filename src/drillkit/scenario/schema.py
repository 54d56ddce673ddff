"""The scenario schema: what to drill, on which system (one spec per `system.kind`), under which
load, against which targets. Pure pydantic models; drillkit.scenario.loader reads files into them."""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from drillkit.durations import parse_duration

MAX_DURATION_S = 86_400.0
"""A drill on the sandbox lasts minutes; a day bounds every duration so no typo runs forever."""

MAX_COUNT = 2**53
"""Counts stay exact in JSON readers that use doubles (the report's JavaScript, jq)."""


def _duration(value: Any) -> float:
    try:
        seconds = parse_duration(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(str(exc) if isinstance(exc, ValueError) else f"{value!r} is not a duration") from None
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a finite duration")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r} is longer than the {MAX_DURATION_S / 3600:g} h limit")
    return seconds


Duration = Annotated[float, BeforeValidator(_duration)]
PositiveDuration = Annotated[float, BeforeValidator(_duration), Field(gt=0)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]


class Strict(BaseModel):
    """Strict so that `users: true` or `rto: [5s]` is an error, not a silent coercion."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Routing(Strict):
    policy: Literal["dns", "origin-group", "manual", "config-json", "latency"] = "dns"
    """config-json: the endpoint is the frontend (a CDN failing over per request between the
    regions' sites, as origin-group); clients reach the backend API at the URL the site's
    config.json names, keep their copy `ttl`, and move when the runbook rewrites it."""
    interval: PositiveDuration = 0.5
    failure_threshold: int = Field(3, ge=1, le=100)
    ttl: Duration = 1.0
    """dns: the record's TTL; config-json: how long a client keeps its copy of config.json."""
    upstream_timeout: PositiveDuration = 2.0


class Replication(Strict):
    mode: Literal["async", "sync"] = "async"


class ObjectStoreSpec(Strict):
    """An S3 API per region, versioned, with cross-region replication from the primary region."""

    replication_delay: Duration = 0.0
    delete_marker_replication: bool = True


class GlobalTableSpec(Strict):
    """active-active: a DynamoDB API per region holding one global table, replicated both ways by
    drillkit's replicator (through links, so link faults apply), last writer wins by the writing
    region's clock."""

    replication_delay: Duration = 0.5
    """How long after a region took a write its replicator sends it to the other region."""
    clock_offset: dict[Literal["A", "B"], Duration] = {}
    """How far a region's clock runs ahead of the host's: the timestamps LWW compares."""


class AppTier(Strict):
    """Each region's app tier: instances behind its client link (balanced round-robin), each able
    to serve `capacity` requests a second (beyond it, 503 over capacity), as a pod or a VM is."""

    instances: int = Field(1, ge=1, le=16)
    """Instances in the primary region, and what the DR region scales up to at full capacity."""
    capacity: float | None = Field(None, gt=0, le=100_000)
    """Requests per second one instance serves (health checks aside); null: as many as it can."""
    dr_instances: int | None = Field(None, ge=0, le=16)
    """Instances running in the DR region before the disaster. Default by strategy: warm-standby
    and active-active all of `instances`, pilot-light and backup-restore none."""
    max_instances: int = Field(16, ge=1, le=16)
    """The quota per region: a scale-up beyond it fails, as a cloud service quota does."""

    @model_validator(mode="after")
    def _within_quota(self):
        for name in ("instances", "dr_instances"):
            if (getattr(self, name) or 0) > self.max_instances:
                raise ValueError(f"{name} ({getattr(self, name)}) exceeds max_instances ({self.max_instances})")
        return self


class Backups(Strict):
    """backup-restore: the primary's base backup and archived WAL, copied to a region-B archive
    `copy_delay` after each file is written (the cross-region backup copy job)."""

    copy_delay: Duration = 1.0
    """How long after a backup file (a base backup, a WAL segment) is written its copy lands in B."""
    archive_timeout: PositiveDuration = 1.0
    """PostgreSQL's archive_timeout: the longest a commit waits to be in an archived WAL segment
    (whole seconds, at least 1)."""

    @field_validator("archive_timeout")
    @classmethod
    def _whole_seconds(cls, value: float) -> float:
        if value < 1 or value != int(value):
            raise ValueError("must be whole seconds, at least 1s (PostgreSQL's archive_timeout)")
        return value


Strategy = Literal["warm-standby", "pilot-light", "backup-restore", "active-active"]


class SandboxSpec(Strict):
    """The embedded two-region system drillkit starts and stops (drillkit.targets.sandbox)."""

    kind: Literal["sandbox"] = "sandbox"
    SCALED_DURATIONS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("routing", "interval"), ("routing", "ttl"), ("routing", "upstream_timeout"),
        ("objects", "replication_delay"), ("backups", "copy_delay"), ("backups", "archive_timeout"),
        ("table", "replication_delay"))
    """Its timings `time_scale` divides, as (part, field) (drillkit.scenario.timescale)."""
    SCALED_MAPS: ClassVar[tuple[tuple[str, str], ...]] = (("table", "clock_offset"),)
    """Its maps of timings `time_scale` divides, value by value."""
    strategy: Strategy = "warm-standby"
    """warm-standby: B has a hot standby and a running (read-only) app tier; pilot-light: a hot
    standby, no app until scaled up; backup-restore: no database and no app in B, only the copied
    backups, restored by the runbook; active-active: both regions take writes to a global table
    (`table`), clients pinned to a home region (routing `latency`)."""
    routing: Routing = Routing()
    replication: Replication = Replication()
    objects: ObjectStoreSpec | None = None
    app: AppTier = AppTier()
    backups: Backups | None = None
    table: GlobalTableSpec | None = None

    @model_validator(mode="after")
    def _fits_strategy(self):
        if self.strategy == "active-active":
            if self.table is None:
                self.table = GlobalTableSpec()
            if self.routing.policy != "latency":
                raise ValueError(f"routing.policy: {self.routing.policy} sends every client to one region; "
                                 "active-active needs latency (each client to its home region)")
        elif self.table is not None:
            raise ValueError(f"table: only for strategy active-active (this is {self.strategy})")
        elif self.routing.policy == "latency":
            raise ValueError("routing.policy: latency pins clients to both regions; only strategy active-active "
                             "takes writes in both")
        if self.routing.policy == "config-json" and self.objects is None:
            raise ValueError("routing.policy: config-json serves the site and its config.json from each "
                             "region's object store: set system.objects")
        if self.strategy == "backup-restore":
            if self.backups is None:
                self.backups = Backups()
            if self.replication.mode == "sync":
                raise ValueError("replication.mode: sync needs a standby; backup-restore has none")
            if self.app.dr_instances:
                raise ValueError("app.dr_instances: backup-restore has no database in B to run an app over")
        elif self.backups is not None:
            raise ValueError(f"backups: only for strategy backup-restore (this is {self.strategy})")
        return self

    @property
    def dr_instances(self) -> int:
        if self.app.dr_instances is not None:
            return self.app.dr_instances
        return self.app.instances if self.strategy in ("warm-standby", "active-active") else 0


_HTTP_URL = r"^https?://[^\s/]+(/\S*)?$"
Url = Annotated[str, Field(pattern=_HTTP_URL, max_length=2000)]


class _Audit(Strict):
    settle: Duration = 0.0
    """How long the system needs after its last acknowledged write before its final state is whole
    (a write-behind cache, an async indexer): the audit waits this long after the load stops."""


class _Secret(_Audit):
    """A secret (a DSN with a password) is never written in a scenario: it is read from an
    environment variable or a file, and redacted from the evidence."""

    dsn_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    dsn_file: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.dsn_env is None) == (self.dsn_file is None):
            raise ValueError("give exactly one of dsn_env (an environment variable) and dsn_file")
        return self


class PostgresAudit(_Secret):
    """A query over the user's database returning `(key, payload)` or `(key, checksum)` rows."""

    kind: Literal["postgres"]
    query: str = Field(min_length=1)
    returns: Literal["payload", "checksum"] = "payload"


class HttpAudit(_Audit):
    """A list endpoint: `{items_field: [...], next_field: URL or null}` pages, followed to the end."""

    kind: Literal["http"]
    url: Url
    items_field: str = "items"
    next_field: str | None = "next"
    key_field: str = "key"
    payload_field: str | None = "payload"
    checksum_field: str | None = None
    max_pages: int = Field(10_000, ge=1, le=1_000_000)


class S3Audit(_Audit):
    """Every object of a bucket (boto3): its SHA-256 from object metadata, or from its body."""

    kind: Literal["s3"]
    bucket: str = Field(min_length=3)
    prefix: str = ""
    region: str | None = None
    endpoint_url: Url | None = None
    checksum_metadata: str | None = "sha256"


class DynamoDBAudit(_Audit):
    """A scan of a table (boto3): the key attribute and a payload or checksum attribute."""

    kind: Literal["dynamodb"]
    table: str = Field(min_length=3)
    region: str | None = None
    endpoint_url: Url | None = None
    key_attribute: str = "key"
    payload_attribute: str | None = "payload"
    checksum_attribute: str | None = None


class CommandAudit(_Audit):
    """Any program printing one JSON object per line: `{"key", "payload"}` or `{"key", "checksum"}`."""

    kind: Literal["command"]
    argv: list[str] = Field(min_length=1)
    timeout: PositiveDuration = 300.0


AuditSpec = Annotated[Union[PostgresAudit, HttpAudit, S3Audit, DynamoDBAudit, CommandAudit],
                      Field(discriminator="kind")]


class DataPlane(Strict):
    """What clients and the audit reach, for a system drillkit did not start: the endpoint, the
    regions it names in its answers, and where the final state is read."""

    SCALED_DURATIONS: ClassVar[tuple[tuple[str, str], ...]] = ()
    """None of its settings is a production timing: `time_scale` leaves them as they are."""
    SCALED_MAPS: ClassVar[tuple[tuple[str, str], ...]] = ()
    endpoint: Url
    regions: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]] = []
    region_endpoints: dict[str, Url] = {}
    region_header: str | None = "X-Region"
    health_path: str = Field("/", pattern=r"^/")
    audit: AuditSpec
    object_audit: AuditSpec | None = None
    """The objects' final state (keys as the load wrote them; drillkit files them under `obj/`),
    for a workload mapping with `obj_write`."""

    @model_validator(mode="after")
    def _known_regions(self):
        unknown = [r for r in self.region_endpoints if self.regions and r not in self.regions]
        if unknown:
            raise ValueError(f"region_endpoints names {', '.join(unknown)}, not in regions")
        return self


class ExternalSpec(DataPlane):
    """A running system drillkit did not start and never stops (drillkit.targets.external)."""

    kind: Literal["external"]


AccountId = Annotated[str, Field(pattern=r"^[0-9]{12}$")]
AwsRegion = Annotated[str, Field(pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")]
Name = Annotated[str, Field(min_length=1, max_length=2048)]


class AwsRegions(Strict):
    primary: AwsRegion
    secondary: AwsRegion

    @model_validator(mode="after")
    def _two(self):
        if self.primary == self.secondary:
            raise ValueError("primary and secondary must be two regions")
        return self


class AwsDatabase(Strict):
    """`rds-replica`: a primary instance and its cross-region read replica (ids or ARNs).
    `aurora-cluster`: a cluster and the instance a failover must name. `aurora-global`: a global
    cluster and the secondary cluster (ARN) to fail over to."""

    kind: Literal["rds-replica", "aurora-cluster", "aurora-global"] = "rds-replica"
    primary: Name
    replica: Name


class AwsDns(Strict):
    """A Route 53 hosted zone (id or name) and the failover record pair clients resolve."""

    zone: Name
    record: Name


class AwsObjects(Strict):
    source_bucket: Name
    replica_bucket: Name


class AwsTable(Strict):
    table: Name


class AwsAccount(Strict):
    """The account, regions and resources a drill may touch: nothing else is ever called."""

    profile: str | None = None
    endpoint_url: Url | None = None
    """Else $AWS_ENDPOINT_URL, else AWS itself."""
    accounts: list[AccountId] = Field(min_length=1)
    regions: AwsRegions
    required_tag: dict[str, str] = {}
    database: AwsDatabase | None = None
    dns: AwsDns | None = None
    objects: AwsObjects | None = None
    dynamodb: AwsTable | None = None
    alarms: list[Name] = []
    """CloudWatch alarms (in either region) that stop the drill when one goes to ALARM."""
    watch_alarms: list[Name] = []
    """CloudWatch alarms that should fire during the drill (the detection under test): each state
    change is recorded with AWS's own change time, and when it went to ALARM after the fault."""
    fis_templates: list[Name] = []
    """FIS experiment templates the experiment may start: ids, or the value of their Name tag."""
    alarm_poll: PositiveDuration = 1.0

    @model_validator(mode="after")
    def _alarms_once(self):
        both = sorted(set(self.alarms) & set(self.watch_alarms))
        if both:
            raise ValueError(f"{', '.join(both)} is in both alarms (stop conditions) and watch_alarms")
        return self

    @field_validator("required_tag")
    @classmethod
    def _one_tag(cls, tag: dict[str, str]) -> dict[str, str]:
        if len(tag) > 1:
            raise ValueError("name one tag: {key: value}")
        return tag


class AwsSpec(DataPlane):
    """A system on AWS (drillkit.targets.aws): the data plane as for `external`, plus the account."""

    kind: Literal["aws"]
    aws: AwsAccount


def _default_kind(value: Any) -> Any:
    """`kind` defaults to sandbox, as before there was any other."""
    if isinstance(value, dict) and "kind" not in value:
        return {"kind": "sandbox", **value}
    return value


SystemSpec = Annotated[Union[SandboxSpec, ExternalSpec, AwsSpec], BeforeValidator(_default_kind), Field(discriminator="kind")]
UNION_TAGS = frozenset({"sandbox", "external", "aws", "postgres", "http", "s3", "dynamodb", "command"})
"""Tags pydantic puts in an error's location inside a discriminated union (not keys of the file)."""


class Load(Strict):
    locustfile: str | None = Field(None, min_length=1)
    workload: str | None = Field(None, min_length=1)
    users: int = Field(10, ge=1, le=500)
    spawn_rate: float | None = Field(None, gt=0, le=10_000)
    warmup: Duration = 3.0
    duration: PositiveDuration = 30.0
    request_timeout: PositiveDuration = 1.0
    cooldown: Duration | None = None
    canary: Duration | None = 0.02
    workers: int = Field(0, ge=0, le=64)
    """Locust worker processes started on this host under a master (Locust's distributed mode);
    0 with no external_workers: one Locust process."""
    external_workers: int = Field(0, ge=0, le=1000)
    """Workers started elsewhere (other hosts, the Locust operator on Kubernetes) that connect to
    the master at master_bind:master_port; the drill waits worker_timeout for all of them."""
    master_bind: str = Field("127.0.0.1", min_length=1, max_length=255)
    master_port: int = Field(0, ge=0, le=65535)
    """0: a free port, named in events.jsonl (`load.master`)."""
    worker_timeout: PositiveDuration = 30.0


PhaseName = Annotated[str, Field(min_length=1, max_length=200)]
Store = Literal["records", "objects", "items"]
OpClass = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=40)]


class Targets(Strict):
    rto: Duration | None = None
    rto_write: Duration | None = None
    rto_read: Duration | None = None
    rpo: Duration | None = None
    max_lost_writes: Count | None = None
    max_corrupt: Count | None = None
    max_unexpected: Count | None = None
    min_availability: float | None = Field(None, ge=0, le=1)
    max_replication_lag: Duration | None = None
    phases: dict[PhaseName, Duration] = {}
    """Budgets per runbook phase: an activity's name, or the `phase` its drillkit mark names."""
    rto_by_op: dict[OpClass, Duration] = {}
    """RTO per operation class (`page`, `write`, `obj_read`…), where endpoints have different ones."""
    rpo_by_store: dict[Store, Duration] = {}
    """RPO per data store, where the seeds state different ones (records, objects)."""
    max_time_to_detect: Duration | None = None
    """The longest any scenario alarm may take from its condition holding to being raised."""
    max_backup_age: Duration | None = None
    """Restore tests: how old the newest restorable backup may be at the test's restore point."""
    max_restore_time: Duration | None = None
    """Restore tests: the longest a restore may take, from the restore point to the scratch cluster serving."""
    max_lww_anomalies: Count | None = None
    """Active-active: writes the final state orders against real time (a winner acknowledged before them)."""
    max_lww_discarded: Count | None = None
    """Active-active: acknowledged writes LWW threw away for a concurrent one."""
    max_divergent: Count | None = None
    """Active-active: keys whose regions' final values differ after settling."""


class Alarm(Strict):
    """A condition over what the drill observes, evaluated live by the sampler (`alarm.raised`,
    `alarm.cleared`) and from lag.csv afterwards (when the condition first held)."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    metric: Literal["replication_lag", "object_backlog_age", "object_backlog", "backup_age", "unhealthy"]
    """From lag.csv: replication_lag, object_backlog_age, object_backlog. From events: backup_age
    (since the newest base backup completed, or reached the DR region), unhealthy (how long the
    router's health check has said the region is unhealthy)."""
    above: float = Field(ge=0)
    """Seconds for every metric but object_backlog (a duration), objects for object_backlog."""
    region: str | None = None
    expect: Literal["fire", "quiet"] | None = None
    """`fire`: the drill is built to trip this alarm, and fails if it is never raised; `quiet`:
    it fails if it is."""

    @field_validator("above", mode="before")
    @classmethod
    def _threshold(cls, value: Any) -> Any:
        return _duration(value) if isinstance(value, str) else value


class ErrorRateGuard(Strict):
    above: float = Field(gt=0, lt=1)
    sustained: Duration = 3.0


class Safeguards(Strict):
    max_duration: PositiveDuration = 120.0
    max_error_rate: ErrorRateGuard | None = None
    expected_outage: Duration | None = None
    max_lost_writes: int | None = Field(None, ge=0)


CADENCE_PATTERN = r"^[1-9][0-9]{0,3}(d|w|mo|y)$"


class Readiness(Strict):
    """What an auditor asks of a scenario besides its outcome: which system it proves, who owns
    it, how often it must be drilled, and which controls its evidence answers (drillkit history,
    the report's "What this drill evidences")."""

    system: str | None = Field(None, min_length=1, max_length=100)
    """The system as the organisation names it (roadcall, the e-commerce platform)."""
    owner: str | None = Field(None, min_length=1, max_length=200)
    cadence: str | None = Field(None, pattern=CADENCE_PATTERN)
    """How often: a count and a unit, d (days), w (weeks), mo (calendar months), y (years): 1mo, 3mo, 6mo, 1y."""
    controls: str | None = Field(None, min_length=1)
    """A YAML control mapping replacing drillkit's shipped one (relative to the scenario file)."""


class Scenario(Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    experiment: str = Field(min_length=1)
    system: SystemSpec = SandboxSpec()
    load: Load
    targets: Targets = Targets()
    stable: Duration = 2.0
    safeguards: Safeguards = Safeguards()
    alarms: list[Alarm] = []
    time_scale: float = Field(1.0, ge=1, le=86_400)
    """Seconds of production one second of drill stands for (drillkit.scenario.timescale)."""
    scaled: bool = False
    """The durations are drill values already (a resolved scenario, as stored with the evidence)."""
    readiness: Readiness = Readiness()

    def at_drill_scale(self) -> "Scenario":
        """This scenario with its production durations divided by `time_scale` (once)."""
        if self.scaled or self.time_scale == 1:
            return self
        from drillkit.scenario.timescale import scaled_fields

        return Scenario.model_validate(scaled_fields(self.model_dump(exclude_unset=True), self.time_scale,
                                                     type(self.system)),
                                       strict=False)

    @field_validator("alarms")
    @classmethod
    def _alarm_names_once(cls, alarms: list[Alarm]) -> list[Alarm]:
        names = [a.name for a in alarms]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"alarm {', '.join(twice)} is defined twice")
        return alarms

    @field_validator("load")
    @classmethod
    def _warmup_inside_duration(cls, load: Load) -> Load:
        if load.warmup >= load.duration:
            raise ValueError("warmup must be shorter than duration")
        if (load.locustfile is None) == (load.workload is None):
            raise ValueError("give exactly one of locustfile (a Locust file) and workload (a workload mapping)")
        return load
