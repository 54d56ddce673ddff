"""The account a drill acts on: who is calling (allowlist), what the scenario's resources are
(resolved by describe calls only), and the AWS operations the chaos actions plan and make.

Every operation is planned first: `plan_*` returns the mutating calls it would make, each with its
parameters and the call that undoes it; `drillkit plan` prints those and stops, a drill makes them
(`make`). What a plan resolves it reads with describe calls, so planning changes nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from botocore import xform_name

from drillkit.errors import FaultError, InputError, one_line
from drillkit.scenario.schema import AwsAccount
from drillkit.targets.aws.session import Guard, Session

LOOPBACK = ("http://127.0.0.1", "http://localhost", "http://[::1]")
EMULATED_INFO = "/_drillkit/emulated"


@dataclass(frozen=True)
class PlannedCall:
    """One mutating call, and how it is undone (`rollback`: a call, or why there is none)."""

    service: str
    region: str
    operation: str
    params: dict[str, Any]
    rollback: str

    def as_dict(self) -> dict[str, Any]:
        return {"service": self.service, "region": self.region, "operation": self.operation,
                "params": self.params, "rollback": self.rollback}

    def line(self) -> str:
        return f"{self.service}.{self.operation} [{self.region}] {json.dumps(self.params, default=str)}"


@dataclass(frozen=True)
class Identity:
    account: str
    arn: str
    emulated: bool


@dataclass
class RollbackBook:
    """What a rollback must put back, kept in the target's folder so any handle (a chaos provider
    in another process, the abort path) restores the same state. One writer: this class."""

    path: Path | None
    doc: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.path is not None and self.path.exists():
            self.doc = json.loads(self.path.read_text())

    def remember(self, section: str, key: str, value: Any) -> None:
        """The state before the first change: a second change keeps the first original."""
        self._reload()
        self.doc.setdefault(section, {}).setdefault(key, value)
        self._save()

    def take(self, section: str) -> dict[str, Any]:
        self._reload()
        out = self.doc.pop(section, {})
        self._save()
        return out

    def _reload(self) -> None:
        if self.path is not None and self.path.exists():
            self.doc = json.loads(self.path.read_text())

    def _save(self) -> None:
        if self.path is not None:
            from drillkit.evidence import write_atomic

            write_atomic(self.path, json.dumps(self.doc, indent=2, default=str))


def endpoint_of(spec: AwsAccount) -> str | None:
    import os

    return spec.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None


def emulated_info(endpoint: str | None) -> dict[str, Any] | None:
    """The emulated account answers on loopback with its marker; anything else is a real account."""
    import urllib.request

    if not endpoint or not endpoint.startswith(LOOPBACK):
        return None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(endpoint.rstrip("/") + EMULATED_INFO, timeout=3) as resp:
            doc = json.loads(resp.read())
    except (OSError, ValueError):
        return None
    return doc if doc.get("emulated") is True else None


class Account:
    def __init__(self, spec: AwsAccount, trail: Path | None = None, blocking: bool = False,
                 book: Path | None = None):
        self.spec = spec
        self.endpoint = endpoint_of(spec)
        self.guard = Guard(regions=frozenset({spec.regions.primary, spec.regions.secondary}), trail=trail,
                           blocking=blocking)
        self.session = Session(spec.profile, self.endpoint, self.guard)
        self.book = RollbackBook(book)
        self._identity: Identity | None = None

    def client(self, service: str, region: str | None = None):
        return self.session.client(service, region or self.spec.regions.primary)

    # -- who is calling --------------------------------------------------------------------

    def identity(self) -> Identity:
        """sts:GetCallerIdentity, checked against system.aws.accounts before anything else."""
        if self._identity is None:
            try:
                doc = self.client("sts").get_caller_identity()
            except InputError:
                raise
            except Exception as exc:
                raise InputError(f"cannot tell which AWS account this is: {one_line(exc)}",
                                 field="system.aws") from None
            self.guard.caller = {"account": doc["Account"], "arn": doc["Arn"]}
            self._identity = Identity(doc["Account"], doc["Arn"], emulated_info(self.endpoint) is not None)
        if self._identity.account not in self.spec.accounts:
            raise InputError(f"the credentials are for account {self._identity.account}, which is not in "
                             f"system.aws.accounts ({', '.join(self.spec.accounts)})", field="system.aws.accounts")
        return self._identity

    # -- what the scenario names -----------------------------------------------------------

    def resolve(self) -> dict[str, Any]:
        """Every resource the scenario names, by describe calls only; a missing one is an input
        error naming the field and the id; with `required_tag`, an untagged one too."""
        found: dict[str, Any] = {}
        spec = self.spec
        if spec.database is not None:
            found["database"] = self._database()
        if spec.dns is not None:
            found["dns"] = self._dns()
        if spec.objects is not None:
            for name, field_name in ((spec.objects.source_bucket, "source_bucket"),
                                     (spec.objects.replica_bucket, "replica_bucket")):
                self._exists(lambda b=name: self.client("s3").head_bucket(Bucket=b), f"objects.{field_name}", name)
                self._tagged(f"objects.{field_name}", name, lambda b=name: {
                    t["Key"]: t["Value"] for t in self.client("s3").get_bucket_tagging(Bucket=b)["TagSet"]})
        if spec.dynamodb is not None:
            table = self._exists(lambda: self.client("dynamodb").describe_table(TableName=spec.dynamodb.table)["Table"],
                                 "dynamodb.table", spec.dynamodb.table)
            found["dynamodb"] = {"arn": table["TableArn"], "replicas": [r["RegionName"] for r in table.get("Replicas", [])]}
        found["alarms"] = {name: self._alarm(name)["region"] for name in spec.alarms}
        found["watch_alarms"] = {name: self._alarm(name, "system.aws.watch_alarms")["region"]
                                 for name in spec.watch_alarms}
        found["fis_templates"] = {ref: self.fis_template(ref) for ref in spec.fis_templates}
        return found

    def _exists(self, describe: Callable[[], Any], field_name: str, ident: str) -> Any:
        try:
            return describe()
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"{ident!r} not found: {one_line(exc)}", field=f"system.aws.{field_name}") from None

    def _tagged(self, field_name: str, ident: str, tags: Callable[[], dict[str, str]]) -> None:
        if not self.spec.required_tag:
            return
        (key, value), = self.spec.required_tag.items()
        try:
            have = tags()
        except Exception:
            have = {}
        if have.get(key) != value:
            raise InputError(f"{ident!r} lacks the required tag {key}={value}", field=f"system.aws.{field_name}")

    def _database(self) -> dict[str, Any]:
        db = self.spec.database
        rds_a, rds_b = self.client("rds", self.spec.regions.primary), self.client("rds", self.spec.regions.secondary)
        if db.kind == "rds-replica":
            primary = self._exists(lambda: rds_a.describe_db_instances(DBInstanceIdentifier=db.primary)["DBInstances"][0],
                                   "database.primary", db.primary)
            replica = self._exists(lambda: rds_b.describe_db_instances(DBInstanceIdentifier=db.replica)["DBInstances"][0],
                                   "database.replica", db.replica)
            for field_name, inst in (("database.primary", primary), ("database.replica", replica)):
                self._tagged(field_name, inst["DBInstanceIdentifier"],
                             lambda i=inst: {t["Key"]: t["Value"] for t in i.get("TagList", [])})
            return {"primary": primary["DBInstanceArn"], "replica": replica["DBInstanceArn"],
                    "replica_of": replica.get("ReadReplicaSourceDBInstanceIdentifier")}
        if db.kind == "aurora-cluster":
            cluster = self._exists(lambda: rds_a.describe_db_clusters(DBClusterIdentifier=db.primary)["DBClusters"][0],
                                   "database.primary", db.primary)
            members = [m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", [])]
            if db.replica not in members:
                raise InputError(f"{db.replica!r} is not a member of cluster {db.primary!r} "
                                 f"(members: {', '.join(members) or 'none'})", field="system.aws.database.replica")
            return {"cluster": cluster["DBClusterArn"], "target_instance": db.replica}
        glob = self._exists(lambda: rds_a.describe_global_clusters(GlobalClusterIdentifier=db.primary)["GlobalClusters"][0],
                            "database.primary", db.primary)
        members = [m["DBClusterArn"] for m in glob.get("GlobalClusterMembers", [])]
        if db.replica not in members:
            raise InputError(f"{db.replica!r} is not a member of global cluster {db.primary!r}",
                             field="system.aws.database.replica")
        return {"global_cluster": glob["GlobalClusterArn"], "target_cluster": db.replica}

    def zone_id(self) -> str:
        dns = self.spec.dns
        r53 = self.client("route53")
        if not dns.zone.endswith("."):
            self._exists(lambda: r53.get_hosted_zone(Id=dns.zone), "dns.zone", dns.zone)
            return dns.zone
        zones = r53.list_hosted_zones_by_name(DNSName=dns.zone, MaxItems="1")["HostedZones"]
        if not zones or zones[0]["Name"] != dns.zone:
            raise InputError(f"no hosted zone named {dns.zone!r}", field="system.aws.dns.zone")
        return zones[0]["Id"].rpartition("/")[2]

    def records(self) -> list[dict[str, Any]]:
        """The record pair clients resolve (failover or weighted), as Route 53 lists it."""
        dns = self.spec.dns
        name = dns.record if dns.record.endswith(".") else dns.record + "."
        found = self.client("route53").list_resource_record_sets(HostedZoneId=self.zone_id(), StartRecordName=name)
        sets = [r for r in found["ResourceRecordSets"] if r["Name"] == name and "SetIdentifier" in r]
        if not sets:
            raise InputError(f"no failover or weighted records named {name!r}", field="system.aws.dns.record")
        return sets

    def _dns(self) -> dict[str, Any]:
        sets = self.records()
        for r in sets:
            if "HealthCheckId" in r:
                check = r["HealthCheckId"]
                self._tagged("dns.record", f"health check {check}", lambda c=check: {
                    t["Key"]: t["Value"] for t in self.client("route53").list_tags_for_resource(
                        ResourceType="healthcheck", ResourceId=c)["ResourceTagSet"]["Tags"]})
        return {"zone": self.zone_id(), "records": [{k: r.get(k) for k in ("SetIdentifier", "Failover", "Weight",
                                                                               "HealthCheckId")} for r in sets]}

    def _alarm(self, name: str, field: str = "system.aws.alarms") -> dict[str, Any]:
        for region in (self.spec.regions.primary, self.spec.regions.secondary):
            found = self.client("cloudwatch", region).describe_alarms(AlarmNames=[name])["MetricAlarms"]
            if found:
                return {"region": region, **found[0]}
        raise InputError(f"no CloudWatch alarm {name!r} in {self.spec.regions.primary} or "
                         f"{self.spec.regions.secondary}", field=field)

    def fis_template(self, ref: str) -> str:
        """A template id, from its id or the value of its Name tag."""
        fis = self.client("fis")
        pages = fis.get_paginator("list_experiment_templates").paginate()
        templates = [t for page in pages for t in page["experimentTemplates"]]
        for t in templates:
            if t["id"] == ref or (t.get("tags") or {}).get("Name") == ref:
                self._tagged("fis_templates", ref, lambda t=t: t.get("tags") or {})
                return t["id"]
        raise InputError(f"no FIS experiment template {ref!r} (by id or Name tag)", field="system.aws.fis_templates")

    # -- alarms ------------------------------------------------------------------------------

    def alarm_states(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        """Each named alarm (default: the stop conditions and the watched ones), its state, and the
        time AWS says it changed to it."""
        out = []
        by_region: dict[str, list[str]] = {}
        for name in (self.spec.alarms + self.spec.watch_alarms) if names is None else names:
            by_region.setdefault(self._alarm_region(name), []).append(name)
        for region, chunk in by_region.items():
            for alarm in self.client("cloudwatch", region).describe_alarms(AlarmNames=chunk)["MetricAlarms"]:
                out.append({"alarm": alarm["AlarmName"], "region": region, "state": alarm["StateValue"],
                            "since": alarm["StateUpdatedTimestamp"].timestamp(), "reason": alarm.get("StateReason")})
        return out

    def alarms_in_alarm(self) -> list[dict[str, Any]]:
        """The scenario's stop-condition alarms whose state is ALARM, with the time each changed."""
        return [a for a in self.alarm_states(self.spec.alarms) if a["state"] == "ALARM"]

    def _alarm_region(self, name: str) -> str:
        regions = self.book.doc.setdefault("_alarm_regions", {})
        if name not in regions:
            regions[name] = self._alarm(name)["region"]
        return regions[name]

    # -- operations: plan, then make ---------------------------------------------------------

    def make(self, calls: list[PlannedCall]) -> list[dict[str, Any]]:
        out = []
        for call in calls:
            client = self.client(call.service, call.region)
            method = getattr(client, xform_name(call.operation))
            out.append(method(**call.params))
        return out

    def wait(self, what: str, done: Callable[[], bool], timeout: float, every: float = 1.0) -> float:
        start = time.time()
        while not done():
            if time.time() - start > timeout:
                raise FaultError(f"{what}: not done after {timeout:g} s")
            time.sleep(every)
        return time.time() - start
