"""The `aws` target plug-in: the external target's data plane (endpoint, workload mapping, audit
adapter) plus an allowlisted AWS account. drillkit starts nothing in the account: it checks who is
calling and that every named resource exists before anything starts, acts only through the chaos
actions of drillkit.chaos.aws, watches the scenario's CloudWatch alarms as stop conditions, and
writes every AWS call to the evidence (aws_calls.jsonl)."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from drillkit import evidence as ev
from drillkit.errors import EnvironmentProblem, InputError, one_line
from drillkit.evidence import write_atomic
from drillkit.scenario.schema import AwsSpec
from drillkit.targets import processes
from drillkit.targets.aws.account import Account
from drillkit.targets.capabilities import LagSample, ReplicaStatus
from drillkit.targets.external.target import ExternalTarget

if TYPE_CHECKING:
    from drillkit.targets.aws.plan import Plan

PREFIX = "drillkit-aws-"
ROLLBACKS = "rollbacks.json"


class AwsTarget(ExternalTarget):
    kind = "aws"

    def __init__(self, root: Path, spec: AwsSpec, events_file: Path, scenario_dir: Path, caller: dict | None = None):
        super().__init__(root, spec, events_file, scenario_dir)
        self.account = Account(spec.aws, trail=Path(events_file).parent / ev.AWS_CALLS, book=root / ROLLBACKS)
        if caller:
            self.account.guard.caller = caller
        self._seen_points: dict[str, datetime] = {}
        self._alarm_seen: dict[str, str] = {}

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def plan(cls, loaded, experiment: dict) -> Plan:
        """Every mutating AWS call the drill would make, with what undoes it; makes none (`drillkit plan`)."""
        from drillkit.targets.aws.plan import plan_drill

        return plan_drill(loaded, experiment)

    @classmethod
    def preflight(cls, spec: AwsSpec, scenario_dir: Path | None = None, confirmed: bool = False) -> None:
        """Who is calling (the allowlist) first, then every resource, then the data plane; a real
        account only with --yes. Every call here is a read: the guard refuses any other."""
        account = Account(spec.aws, blocking=True)
        identity = account.identity()
        account.resolve()
        firing = account.alarms_in_alarm()
        if firing:  # as FIS refuses to start an experiment whose stop condition is in ALARM
            raise EnvironmentProblem(f"{_firing(firing[0], already=True)}: the drill would stop at once",
                                     field="system.aws.alarms")
        if not identity.emulated and not confirmed:
            raise InputError(f"account {identity.account} is a real AWS account: pass --yes to drill it "
                             f"(drillkit plan shows every call the drill would make)", field="system.aws.accounts")
        ExternalTarget.preflight(spec, scenario_dir)

    @classmethod
    def up(cls, spec: AwsSpec, events_file, scenario_dir: Path | None = None, base_dir=None,
           owned: bool = True) -> "AwsTarget":
        base = Path(base_dir or tempfile.gettempdir()).absolute()
        root = Path(tempfile.mkdtemp(prefix=PREFIX, dir=base))
        processes.claim(root, owned)
        processes.write_registry(root, [])
        events = Path(events_file).absolute()
        target = cls(root, spec, events, Path(scenario_dir or Path.cwd()).absolute())
        identity = target.account.identity()
        target.identity = identity
        write_atomic(target.state_file, json.dumps({
            "kind": cls.kind, "root": str(root), "events_file": str(events), "scenario_dir": str(target.scenario_dir),
            "spec": spec.model_dump(mode="json"), "caller": target.account.guard.caller,
            "emulated": identity.emulated}, indent=2))
        return target

    @classmethod
    def attach(cls, state_file) -> "AwsTarget":
        try:
            doc = json.loads(Path(state_file).read_text())
        except (OSError, ValueError):
            raise InputError("no readable aws target state", file=str(state_file)) from None
        target = cls(Path(doc["root"]), AwsSpec.model_validate(doc["spec"]), Path(doc["events_file"]),
                     Path(doc["scenario_dir"]), caller=doc.get("caller"))
        target.emulated = bool(doc.get("emulated"))
        return target

    @classmethod
    def reap_stale(cls, base_dir=None) -> list[str]:
        from drillkit.targets.external.target import release

        return processes.reap_abandoned(Path(base_dir or tempfile.gettempdir()), PREFIX, release)

    @property
    def alarm_poll(self) -> float:
        return self.spec.aws.alarm_poll

    @property
    def lag_interval(self) -> float:
        """CloudWatch publishes ReplicaLag once a minute (the emulated account once a second):
        polling faster only spends API calls."""
        return 1.0 if self.is_emulated else 10.0

    @property
    def is_emulated(self) -> bool:
        ident = getattr(self, "identity", None)
        return ident.emulated if ident is not None else getattr(self, "emulated", False)

    def ready(self) -> list[tuple[str, dict]]:
        caller = self.account.guard.caller
        provenance = "emulated (moto + drillkit's emulated-account layer)" if self.is_emulated else "real AWS account"
        return [(ev.TARGET_ATTACHED, {"target": self.kind, "endpoint": self.endpoint, "account": caller.get("account"),
                                     "caller": caller.get("arn"), "aws": provenance,
                                     "regions": [self.spec.aws.regions.primary, self.spec.aws.regions.secondary],
                                     "audit": self.audit_source()})]

    def facts(self) -> dict[str, str]:
        from importlib.metadata import version

        facts = {"boto3": version("boto3"), "chaostoolkit-aws": version("chaostoolkit-aws"),
                 "aws_account": str(self.account.guard.caller.get("account")),
                 "aws": "emulated" if self.is_emulated else "real"}
        if self.is_emulated:
            facts["moto"] = version("moto")
        return facts

    def lacks(self) -> list[str]:
        missing = super().lacks()
        if self._rds_replica is None and self.spec.aws.objects is None:
            missing.append("ReplicationObservation")
        return missing

    def aws_account(self) -> Account:
        return self.account

    # -- stop conditions --------------------------------------------------------------------

    def stop_condition(self) -> str | None:
        """A stop-condition alarm in ALARM stops the drill (the safeguard), naming it and since when.
        Every scenario alarm's state (stop conditions and watched ones) goes to the events as first
        seen and at each change, with the time CloudWatch says it changed."""
        aws = self.spec.aws
        if not aws.alarms and not aws.watch_alarms:
            return None
        states = self.account.alarm_states()
        for alarm in states:
            previous = self._alarm_seen.get(alarm["alarm"])
            if previous != alarm["state"]:
                self._alarm_seen[alarm["alarm"]] = alarm["state"]
                ev.append_event(self.events_file, ev.ALARM_STATE, alarm=alarm["alarm"], region=alarm["region"],
                                state=alarm["state"], previous=previous, changed_at=alarm["since"],
                                reason=alarm["reason"], stops_drill=alarm["alarm"] in aws.alarms)
        firing = [a for a in states if a["alarm"] in aws.alarms and a["state"] == "ALARM"]
        return _firing(firing[0]) if firing else None

    # -- ReplicationObservation (RDS read replica: ReplicaLag from CloudWatch) -------------------

    def replication_status(self) -> list[ReplicaStatus]:
        """The replica as RDS describes it (state: its replication status; lag: the latest ReplicaLag)."""
        db = self._rds_replica
        if db is None:
            return []
        inst = self.account.client("rds", self.spec.aws.regions.secondary).describe_db_instances(
            DBInstanceIdentifier=db.replica)["DBInstances"][0]
        infos = {i.get("StatusType"): i.get("Status") for i in inst.get("StatusInfos", [])}
        lag = [s for s in self.replication_lag() if s.replay_lag_s is not None]
        return [ReplicaStatus(application_name=db.replica, state=infos.get("read replication") or inst["DBInstanceStatus"],
                              sync_state="async", lag_bytes=None, replay_lag_s=lag[0].replay_lag_s if lag else None)]

    def replication_lag(self) -> list[LagSample]:
        """The newest CloudWatch datapoints since the last call: the replica's ReplicaLag (RDS), and
        the replication rule's OperationsPendingReplication / ReplicationLatency (S3, with RTC's
        metrics on) as the objects' backlog and the age of its oldest object. A datapoint seen
        before is not sampled again."""
        aws, samples = self.spec.aws, []
        secondary = aws.regions.secondary
        if self._rds_replica is not None:
            lag = self._newest("AWS/RDS", "ReplicaLag", secondary, {"DBInstanceIdentifier": self._rds_replica.replica})
            if lag is not None:
                samples.append(LagSample(t=lag[0], region=secondary, replay_lag_s=lag[1], lag_bytes=None))
        dims = self._s3_metric_dimensions
        if dims is not None:
            pending = self._newest("AWS/S3", "OperationsPendingReplication", aws.regions.primary, dims)
            latency = self._newest("AWS/S3", "ReplicationLatency", aws.regions.primary, dims)
            if pending is not None or latency is not None:
                t = max(p[0] for p in (pending, latency) if p is not None)
                samples.append(LagSample(t=t, region=secondary, replay_lag_s=None, lag_bytes=None,
                                         object_backlog=None if pending is None else int(pending[1]),
                                         object_backlog_age_s=None if latency is None else latency[1]))
        return samples

    def _newest(self, namespace: str, metric: str, region: str, dims: dict[str, str]) -> tuple[float, float] | None:
        """(time, Maximum) of the metric's newest datapoint, once; None when there is none new."""
        now = datetime.now(timezone.utc)
        try:
            points = self.account.client("cloudwatch", region).get_metric_statistics(
                Namespace=namespace, MetricName=metric, StartTime=now - timedelta(minutes=5), EndTime=now,
                Period=1 if self.is_emulated else 60, Statistics=["Maximum"],
                Dimensions=[{"Name": k, "Value": v} for k, v in dims.items()])["Datapoints"]
        except Exception as exc:  # a gap in lag.csv is the truth; say why in the events
            ev.append_event(self.events_file, ev.LAG_UNAVAILABLE, metric=metric, error=one_line(exc))
            return None
        if not points:
            return None
        latest = max(points, key=lambda p: p["Timestamp"])
        if self._seen_points.get(metric) == latest["Timestamp"]:
            return None
        self._seen_points[metric] = latest["Timestamp"]
        return latest["Timestamp"].timestamp(), float(latest["Maximum"])

    @cached_property
    def _s3_metric_dimensions(self) -> dict[str, str] | None:
        """The replication rule's metric dimensions, read once (the sampler's first call comes
        before any fault removes the rule)."""
        objects = self.spec.aws.objects
        if objects is None:
            return None
        try:
            rules = self.account.client("s3", self.spec.aws.regions.primary).get_bucket_replication(
                Bucket=objects.source_bucket)["ReplicationConfiguration"]["Rules"]
        except Exception as exc:
            ev.append_event(self.events_file, ev.LAG_UNAVAILABLE, metric="s3 replication rule", error=one_line(exc))
            return None
        rule = next((r for r in rules if r.get("Destination", {}).get("Bucket", "").rsplit(":", 1)[-1]
                     == objects.replica_bucket), None)
        return None if rule is None else {"SourceBucket": objects.source_bucket,
                                          "DestinationBucket": objects.replica_bucket, "RuleId": rule.get("ID", "")}

    @property
    def _rds_replica(self):
        """The database, when it is an RDS cross-region read replica (the one kind observed here)."""
        db = self.spec.aws.database
        return db if db is not None and db.kind == "rds-replica" else None


def _firing(alarm: dict, already: bool = False) -> str:
    since = datetime.fromtimestamp(alarm["since"], timezone.utc).isoformat(timespec="milliseconds")
    return f"CloudWatch alarm {alarm['alarm']} ({alarm['region']}) is in ALARM {'already ' * already}since {since}"
