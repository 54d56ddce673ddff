"""The drill folder: its file names, its record types and the event log.

Every stage talks to the next through these files; the records here are the
evidence format v1 (docs/evidence.md). Fields may be added, never renamed. Standard library only:
the sandbox's processes write events, and must not stall on heavy imports while they do.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

REQUESTS_DIR = "requests"
INVOCATIONS_DIR = "invocations"
"""invocations/<client>.jsonl: each operation as it was invoked, before its request left; its
completion is in requests/<client>.jsonl (drillkit.evidence.recorder)."""
EVENTS = "events.jsonl"
LAG = "lag.csv"
FINAL_STATE = "final_state.jsonl"
FINAL_TABLE = "final_table.json"
"""active-active: every standing region's global table after settling ({"regions": {region: {key:
{value, ts, origin}}}, "replication": [each direction's status when the audit read the tables]})."""
TABLE_REPLICATION = "table_replication.jsonl"
"""active-active: each change the table replicators delivered (t, key, value, ts, from, to, outcome)."""
SUMMARY = "summary.json"
JOURNAL = "journal.json"
SCENARIO = "scenario.yaml"
REPORT = "report.html"
JUNIT = "junit.xml"
MANIFEST = "manifest.json"
PROVENANCE = "provenance.json"
CHAOS_LOG = "chaostoolkit.log"
HARNESS_ERROR = "harness-error.txt"
WORKLOAD = "workload.json"
AWS_CALLS = "aws_calls.jsonl"
"""Every AWS call a drill made (drillkit.targets.aws.session writes it; the report reads it)."""

# -- event kinds (events.jsonl's `kind`): the one spelling of each ----------------------------
DRILL_START = "drill.start"
DRILL_END = "drill.end"
OPERATOR_WAITING = "operator.waiting"
"""An operator step (drillkit.chaos.gameday) is shown and waits (`title`, `instructions`,
`answered_by`: terminal, done_when, automated or nobody; `done_when`, `automated`: whether given)."""
OPERATOR_STEP = "operator.step"
"""An operator step ended (`title`; `outcome`: done, failed or skipped; `by`: `operator <user>`,
done_when, automated or timeout; `note`; `waited_s`)."""
OPERATOR_NOTE = "operator.note"
"""An observation written into a running drill (`drillkit note`): `text`, `by` (the user)."""
DRILL_REGISTERED = "drill.registered"
"""The drill's `started` entry in the register beside its folder (`register`: the file, `seq`,
`entry_sha256`: the SHA-256 of the entry's line, `signer`: the signing key's fingerprint or null)."""
DRILL_ABORTED = "drill.aborted"
"""The drill was stopped before its end (`reason`): a signal, a safeguard, a harness error."""
STAGE_START = "stage.start"
STAGE_END = "stage.end"
ACTIVITY_START = "activity.start"
FAULT_INJECTED = "fault.injected"
"""A fault took effect (`fault`) at `t`, known to lie in [`t_lo`, `t_hi`] (absent in folders written
before the interval: [t, t]); the first one not marked `precondition` is t_fault."""
FAULT_FAILED = "fault.failed"
"""An activity meant to inject a fault did not succeed by its provider's own contract (`fault`,
`activity`, `error`: the provider's error, `t` with `t_lo`/`t_hi` the activity's span); a drill
whose only faults failed has no t_fault, so no RTO and no RPO (docs/measurements.md)."""
FAULT_INSTANT_KEY = "drillkit_fault_t"
"""What a fault provider reports of its own instant: a JSON object carrying this key (epoch seconds),
and optionally `drillkit_fault_t_lo` / `drillkit_fault_t_hi`, as a process's stdout line, a Python
provider's return value or an HTTP answer's JSON body (drillkit.chaos.control)."""
FAULT_CLEARED = "fault.cleared"
ROUTING_SWITCH = "routing.switch"
ROUTING_SHIFT = "routing.shift"
ROUTING_PUBLISHED = "routing.published"
DB_PROMOTED = "db.promoted"
DB_RESTORED = "db.restored"
DB_SWITCHOVER = "db.switchover"
ROLLBACKS_START = "rollbacks.start"
ROLLBACKS_END = "rollbacks.end"
ROLLBACKS_SKIPPED = "rollbacks.skipped"
ROLLBACKS_ERROR = "rollbacks.error"
EXPERIMENT_END = "experiment.end"
SERVICE_FAILED = "service.failed"
SANDBOX_REAPED = "sandbox.reaped"
AUDIT_DONE = "audit.done"
AUDIT_FAILED = "audit.failed"
BACKUP_READY = "backup.ready"
"""backup-restore: a whole base backup is in the DR region (`region`, `base_backups`, `archive`)."""
HEALTH_INVERTED = "health.inverted"
"""The router's health check of a region was inverted or restored (`region`, `inverted`)."""
LOAD_MASTER = "load.master"
"""Distributed load: the Locust master is up (`host`, `port` its workers connect to, `workers`,
`external_workers`)."""
LOAD_WORKER_JOINED = "load.worker_joined"
"""Distributed load: a worker's first shipped history reached the master (`worker`, `host`)."""
LOAD_WORKER_DONE = "load.worker_done"
"""Distributed load: a worker stopped and shipped all it recorded (`worker`, `ops` written, `sent`)."""
LOAD_WORKER_LOST = "load.worker_lost"
"""Distributed load: a worker went silent while the load ran (`worker`, `last_seen`, `ops` it had
shipped by then); what it recorded after `last_seen` is not in the evidence."""
LOAD_STOPPING = "load.stopping"
"""The load is stopping: no user starts another operation; those in flight (`in_flight`, one
process's count) have the stop timeout (`stop_timeout` s) to end, and are indeterminate after."""
ACTIVITY_END = "activity.end"
"""A runbook or hypothesis activity ended (the chaos control); phases are timed from these."""

METHOD_START = "method.start"
METHOD_END = "method.end"
"""The experiment's method (its faults and runbook) began and ended (the chaos control)."""
TARGET_ATTACHED = "target.attached"
"""An external or AWS target was attached (`target`, `endpoint`, and what the target tells of itself)."""
REPLICATION_STREAMING = "replication.streaming"
"""The sandbox's standby streams (`standbys`): the load may start."""
SAFEGUARD_TRIPPED = "safeguard.tripped"
"""A safeguard's limit was broken (`reason`); the drill aborts."""
APP_SCALED = "app.scaled"
CORRUPTION_DETECTED = "corruption.detected"
FAILBACK_REBUILT = "failback.rebuilt"
FAILBACK_CAUGHT_UP = "failback.caught_up"
OBJECTS_RESTORED = "objects.restored"
LAG_UNAVAILABLE = "lag.unavailable"
"""A lag sample could not be read (`metric`, `error`): the gap in lag.csv is the truth."""
LINK_FAULT = "link.fault"
"""A link proxy applied or cleared a fault (`link`, `fault`, `action`)."""
OBJECTS_TAMPERING_DETECTED = "objects.tampering.detected"
OBJECTS_REPLICATION_CONFIGURED = "objects.replication.configured"
AWS_HEALTH_CHECK_INVERTED = "aws.health_check.inverted"
AWS_HEALTH_CHECK_RESTORED = "aws.health_check.restored"
AWS_RECORDS_RESTORED = "aws.records.restored"
OBJECTS_REPLICATION_PAUSED = "objects.replication.paused"
OBJECTS_REPLICATION_RESUMED = "objects.replication.resumed"
AWS_FIS_STARTED = "aws.fis.started"
AWS_FIS_STOPPED = "aws.fis.stopped"
AWS_DB_RESTORED = "aws.db.restored"
AWS_RESTORE_DELETED = "aws.restore.deleted"
"""The emulated or real AWS account's runbook steps and their rollbacks (drillkit.chaos.aws)."""
LINK_RETARGET = "link.retarget"
"""A link proxy now forwards to other upstreams (`link`, `upstream`, `upstreams`)."""

ALARM_STATE = "alarm.state"
"""Event kind: a scenario alarm's state as first seen and at every change (alarm, region, state,
previous, changed_at: the source's own change time)."""
ALARM_RAISED = "alarm.raised"
"""Event kind: a scenario alarm's condition seen holding by the live evaluator (alarm, metric,
region, value, threshold); `alarm.cleared` when it no longer holds."""
ALARM_CLEARED = "alarm.cleared"
LAG_ALARM_DETECTED = "lag_alarm.detected"
"""Event kind: the runbook's own lag watch (`await_lag_alarm`) saw the lag over its threshold; not
a scenario alarm, so it never counts as one's raise."""
RESTORE_TESTED = "restore.tested"
"""Event kind: a restore test's outcome (drillkit.targets.capabilities.RestoreTest, and `verified`)."""

ALARM_METRICS = {"replication_lag": "replay_lag_s", "object_backlog_age": "object_backlog_age_s",
                 "object_backlog": "object_backlog"}
"""A scenario alarm's metric -> the lag.csv column it is evaluated on."""
DB_BACKUP = "db.backup"
"""Event kind: a base backup taken (`t` its start, `took_s`), by take_base_backup."""
BACKUP_COPIED = "backup.copied"
"""Event kind: a backup file copied to the DR region's archive (`what`: base backup | wal segment)."""
HEALTH_CHANGE = "health.change"
"""Event kind: the router's health check of a region flipped (`region`, `healthy`)."""

EVENT_METRICS = frozenset({"backup_age", "unhealthy"})
"""Alarm metrics read from events, not lag.csv: the age of the newest base backup (`db.backup`
ends, base backups `backup.copied` to the DR region), and how long a region's health check has
said unhealthy (the router's `health.change`). See `metric_spans`."""
TIME_METRICS = frozenset({"replication_lag", "object_backlog_age", "backup_age", "unhealthy"})
"""Metrics that grow one second per second while nothing is applied: the moment such a metric
passed its threshold is recoverable from any later sample (t - value + threshold)."""

WRITE_OPS = ("write", "obj_write")
"""Op classes whose acknowledged keys the audit expects in final_state (objects as `obj/<key>`)."""
READ_OPS = ("read", "obj_read")

OBJECT_KEY_PREFIX = "obj/"
"""Objects share final_state.jsonl and the write history with database records under this prefix."""

LAG_COLUMNS = ("t", "region", "replay_lag_s", "lag_bytes", "object_backlog", "object_backlog_age_s")


def append_event(path: str | os.PathLike[str], kind: str, t: float | None = None, **fields: Any) -> dict[str, Any]:
    """Append one event line; O_APPEND keeps lines whole when several processes write."""
    return append_record(path, {"t": time.time() if t is None else t, "kind": kind, **fields})


def append_record(path: str | os.PathLike[str], record: dict[str, Any]) -> dict[str, Any]:
    """Append one JSON line in a single write, so lines stay whole when several processes append."""
    line = (json.dumps(record, default=str) + "\n").encode()
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return record


def read_aws_calls(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The AWS call trail; a drill on another target has none."""
    path = Path(folder) / AWS_CALLS
    return read_jsonl(path) if path.exists() else []


def write_atomic(path: str | os.PathLike[str], text: str, mode: int = 0o644) -> Path:
    """Replace a file at once, so a reader never sees half of it; readable like any evidence file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


def read_events(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    path = Path(folder) / EVENTS
    if not path.exists():
        return []
    return sorted(read_jsonl(path), key=lambda e: e["t"])


# the event kinds metric_spans reads: a live evaluator need keep no others
METRIC_EVENT_KINDS = frozenset({DB_BACKUP, BACKUP_COPIED, HEALTH_CHANGE})


def metric_spans(events: list[dict[str, Any]], metric: str, region: str | None = None
                 ) -> list[tuple[float, float | None]]:
    """An event metric (EVENT_METRICS) as the spans in which it grows one second per second from 0
    at `start` until `end` (None: still growing at the last event). `backup_age`: from each base
    backup's completion to the next one's (none before the first backup: there is no age to
    speak of); `unhealthy`: from a region's `health.change` to unhealthy until it is healthy again
    (`region` None: any region's)."""
    spans: list[tuple[float, float | None]] = []
    if metric == "backup_age":
        done = sorted(float(e["t"]) + float(e.get("took_s") or 0.0) for e in events
                      if e.get("kind") == DB_BACKUP
                      or (e.get("kind") == BACKUP_COPIED and e.get("what") == "base backup"))
        return [(t, nxt) for t, nxt in zip(done, [*done[1:], None])]
    if metric == "unhealthy":
        down: dict[str, float] = {}
        for e in sorted((e for e in events if e.get("kind") == HEALTH_CHANGE), key=lambda e: e["t"]):
            where = str(e.get("region"))
            if region is not None and where != region:
                continue
            if not e.get("healthy") and where not in down:
                down[where] = float(e["t"])
            elif e.get("healthy") and where in down:
                spans.append((down.pop(where), float(e["t"])))
        spans += [(t, None) for t in down.values()]
        return sorted(spans)
    raise ValueError(f"{metric} is not an event metric")


HARNESS_KILLED = "incomplete (harness killed)"
"""What a drill folder is whose event log has drill.start and no drill.end: the harness was killed
(SIGKILL, a power cut) before it could abort, tear down, measure or seal."""


def harness_killed(events: list[dict[str, Any]]) -> bool:
    kinds = {e.get("kind") for e in events}
    return DRILL_START in kinds and DRILL_END not in kinds
