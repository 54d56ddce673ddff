"""The `aws` target plug-in: the external target's data plane (endpoint, workload mapping, audit
adapter) plus an allowlisted AWS account. drillkit starts nothing in the account: it checks who is
calling and that every named resource exists before anything starts, acts only through the chaos
actions of drillkit.chaos.aws, watches the scenario's CloudWatch alarms as stop conditions, and
writes every AWS call to the evidence (aws_calls.jsonl)."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from drillkit import evidence as ev
from drillkit.errors import InputError, one_line
from drillkit.evidence import write_atomic
from drillkit.scenario.schema import AwsSpec
from drillkit.targets import processes
from drillkit.targets.aws.account import Account
from drillkit.targets.capabilities import LagSample, ReplicaStatus
from drillkit.targets.external.target import ExternalTarget

PREFIX = "drillkit-aws-"
ROLLBACKS = "rollbacks.json"


class AwsTarget(ExternalTarget):
    kind = "aws"

    def __init__(self, root: Path, spec: AwsSpec, events_file: Path, scenario_dir: Path, caller: dict | None = None):
        super().__init__(root, spec, events_file, scenario_dir)
        self.account = Account(spec.aws, trail=Path(events_file).parent / ev.AWS_CALLS, book=root / ROLLBACKS)
        if caller:
            self.account.guard.caller = caller

    # -- lifecycle ------------------------------------------------------------------------

    @classmethod
    def preflight(cls, spec: AwsSpec, scenario_dir: Path | None = None, confirmed: bool = False) -> None:
        """Who is calling (the allowlist) first, then every resource, then the data plane; a real
        account only with --yes. Every call here is a read: the guard refuses any other."""
        account = Account(spec.aws, blocking=True)
        identity = account.identity()
        account.resolve()
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
        return [("target.attached", {"target": self.kind, "endpoint": self.endpoint, "account": caller.get("account"),
                                     "caller": caller.get("arn"), "aws": provenance,
                                     "regions": [self.spec.aws.regions.primary, self.spec.aws.regions.secondary],
                                     "audit": self.spec.audit.kind})]

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
        if self.spec.aws.database is None or self.spec.aws.database.kind != "rds-replica":
            missing.append("ReplicationObservation")
        return missing

    def aws_account(self) -> Account:
        return self.account

    # -- stop conditions --------------------------------------------------------------------

    def stop_condition(self) -> str | None:
        """A scenario alarm in ALARM stops the drill (the safeguard), naming it and since when."""
        if not self.spec.aws.alarms:
            return None
        firing = self.account.alarms_in_alarm()
        if not firing:
            return None
        first = firing[0]
        since = datetime.fromtimestamp(first["since"], timezone.utc).isoformat(timespec="milliseconds")
        return f"CloudWatch alarm {first['alarm']} ({first['region']}) is in ALARM since {since}"

    # -- ReplicationObservation (RDS read replica: ReplicaLag from CloudWatch) -------------------

    def replication_status(self) -> list[ReplicaStatus]:
        """The replica as RDS describes it (state: its replication status; lag: the latest ReplicaLag)."""
        db = self.spec.aws.database
        inst = self.account.client("rds", self.spec.aws.regions.secondary).describe_db_instances(
            DBInstanceIdentifier=db.replica)["DBInstances"][0]
        infos = {i.get("StatusType"): i.get("Status") for i in inst.get("StatusInfos", [])}
        lag = self.replication_lag()
        return [ReplicaStatus(application_name=db.replica, state=infos.get("read replication") or inst["DBInstanceStatus"],
                              sync_state="async", lag_bytes=None, replay_lag_s=lag[0].replay_lag_s if lag else None)]

    def replication_lag(self) -> list[LagSample]:
        db = self.spec.aws.database
        if db is None or db.kind != "rds-replica":
            return []
        now = datetime.now(timezone.utc)
        try:
            points = self.account.client("cloudwatch", self.spec.aws.regions.secondary).get_metric_statistics(
                Namespace="AWS/RDS", MetricName="ReplicaLag", StartTime=now - timedelta(minutes=5), EndTime=now,
                Period=1 if self.is_emulated else 60, Statistics=["Maximum"], Dimensions=[{"Name": "DBInstanceIdentifier", "Value": db.replica}],
            )["Datapoints"]
        except Exception as exc:  # a gap in lag.csv is the truth; say why in the events
            ev.append_event(self.events_file, "lag.unavailable", error=one_line(exc))
            return []
        if not points:
            return []
        latest = max(points, key=lambda p: p["Timestamp"])
        if latest["Timestamp"] == getattr(self, "_last_point", None):
            return []  # the same datapoint again: nothing new to sample
        self._last_point = latest["Timestamp"]
        return [LagSample(t=latest["Timestamp"].timestamp(), region=self.spec.aws.regions.secondary,
                          replay_lag_s=float(latest["Maximum"]), lag_bytes=None)]
