"""The AWS operations of a drill, each as a plan (the mutating calls, with what undoes each) and a
`make` that performs the plan and waits for its effect. Planning reads with describe calls only.

    invert_health_check / restore_health_checks     Route 53 health-check inversion (forces failover)
    fail_over_records / set_record_weights / restore_records   Route 53 record changes (UPSERT)
    promote_database                                 RDS PromoteReadReplica, Aurora FailoverDBCluster
                                                     (always with its target instance) or
                                                     FailoverGlobalCluster
    pause_object_replication / resume_object_replication       S3 replication rule removed / restored
    start_experiment / stop_experiments              FIS, through chaostoolkit-aws
    restore_database / delete_restored               an RDS point-in-time restore into a new instance, timed
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Any

from drillkit.errors import FaultError, InputError
from drillkit.targets.aws.account import Account, PlannedCall

IRREVERSIBLE = "none: irreversible on AWS (a failback undoes it with new calls)"
FIS_DONE = ("completed", "stopped", "failed")


def _role_region(account: Account, role: str) -> str:
    if role not in ("primary", "secondary"):
        raise InputError(f"region must be primary or secondary, not {role!r}", field="arguments.region")
    return getattr(account.spec.regions, role)


def _require(account: Account, part: str) -> Any:
    value = getattr(account.spec, part)
    if value is None:
        raise InputError(f"this action needs system.aws.{part} in the scenario", field=f"system.aws.{part}")
    return value


def _failover_record(account: Account, role: str) -> dict[str, Any]:
    _require(account, "dns")
    want = "PRIMARY" if role == "primary" else "SECONDARY"
    for rrset in account.records():
        if rrset.get("Failover") == want:
            return rrset
    raise InputError(f"{account.spec.dns.record} has no {want} failover record", field="system.aws.dns.record")


# -- Route 53 --------------------------------------------------------------------------------


def plan_invert_health_check(account: Account, region: str = "primary", inverted: bool = True) -> list[PlannedCall]:
    rrset = _failover_record(account, region)
    check = rrset.get("HealthCheckId")
    if not check:
        raise InputError(f"the {region} failover record has no health check", field="system.aws.dns.record")
    before = account.client("route53").get_health_check(HealthCheckId=check)["HealthCheck"]["HealthCheckConfig"]
    return [PlannedCall("route53", account.spec.regions.primary, "UpdateHealthCheck",
                        {"HealthCheckId": check, "Inverted": inverted},
                        f"route53.UpdateHealthCheck HealthCheckId={check} Inverted={bool(before.get('Inverted'))}")]


def invert_health_check(account: Account, region: str = "primary", inverted: bool = True) -> dict[str, Any]:
    calls = plan_invert_health_check(account, region, inverted)
    for call in calls:
        before = account.client("route53").get_health_check(HealthCheckId=call.params["HealthCheckId"])
        account.book.remember("health_checks", call.params["HealthCheckId"],
                              bool(before["HealthCheck"]["HealthCheckConfig"].get("Inverted")))
    account.make(calls)
    return {"health_check": calls[0].params["HealthCheckId"], "inverted": inverted}


def health_check_status(account: Account, region: str = "primary") -> dict[str, Any]:
    """The Route 53 health check of a region's failover record as its checkers report it now:
    healthy when more than 18 % of them report success (Route 53's own rule)."""
    check = _failover_record(account, region).get("HealthCheckId")
    if not check:
        raise InputError(f"the {region} failover record has no health check", field="system.aws.dns.record")
    observations = account.client("route53").get_health_check_status(HealthCheckId=check)["HealthCheckObservations"]
    statuses = [o.get("StatusReport", {}).get("Status", "") for o in observations]
    ok = sum(text.startswith("Success") for text in statuses)
    return {"region": region, "health_check": check, "healthy": bool(statuses) and ok / len(statuses) > 0.18,
            "checkers": len(statuses), "reporting_success": ok, "statuses": sorted(set(statuses))}


def plan_restore_health_checks(account: Account) -> list[PlannedCall]:
    return [PlannedCall("route53", account.spec.regions.primary, "UpdateHealthCheck",
                        {"HealthCheckId": check, "Inverted": inverted}, "none: this is the rollback")
            for check, inverted in account.book.doc.get("health_checks", {}).items()]


def _put_back(account: Account, calls: list[PlannedCall], section: str, param: str) -> list[str]:
    """A rollback: make its calls, then forget what they restored."""
    account.make(calls)
    account.book.take(section)
    return [c.params[param] for c in calls]


def restore_health_checks(account: Account) -> list[str]:
    return _put_back(account, plan_restore_health_checks(account), "health_checks", "HealthCheckId")


def _upsert(account: Account, rrsets: list[dict[str, Any]], rollback: str) -> PlannedCall:
    return PlannedCall("route53", account.spec.regions.primary, "ChangeResourceRecordSets",
                       {"HostedZoneId": account.zone_id(),
                        "ChangeBatch": {"Comment": "drillkit drill",
                                        "Changes": [{"Action": "UPSERT", "ResourceRecordSet": r} for r in rrsets]}},
                       rollback)


def plan_fail_over_records(account: Account, to: str = "secondary") -> list[PlannedCall]:
    """Swap the failover pair so `to`'s record is PRIMARY (a forced Route 53 failover)."""
    primary, secondary = _failover_record(account, "primary"), _failover_record(account, "secondary")
    if to == "primary":
        return []
    _role_region(account, to)
    swapped = [{**secondary, "Failover": "PRIMARY"}, {**primary, "Failover": "SECONDARY"}]
    return [_upsert(account, swapped, "route53.ChangeResourceRecordSets UPSERT of the records as they were "
                                      "(restore_records)")]


def _remember_records(account: Account) -> None:
    for rrset in account.records():
        account.book.remember("records", rrset["SetIdentifier"], rrset)


def fail_over_records(account: Account, to: str = "secondary") -> dict[str, Any]:
    calls = plan_fail_over_records(account, to)
    _remember_records(account)
    account.make(calls)
    return {"record": account.spec.dns.record, "primary_now": to, "changed": bool(calls)}


def plan_set_record_weights(account: Account, weights: dict[str, int]) -> list[PlannedCall]:
    _require(account, "dns")
    sets = {r["SetIdentifier"]: r for r in account.records()}
    unknown = sorted(set(weights) - set(sets))
    if unknown:
        raise InputError(f"no weighted record with SetIdentifier {', '.join(unknown)} (have {', '.join(sets)})",
                         field="arguments.weights")
    changed = [{**sets[k], "Weight": int(w)} for k, w in weights.items() if "Weight" in sets[k]]
    if len(changed) != len(weights):
        raise InputError("set_record_weights needs weighted records", field="system.aws.dns.record")
    return [_upsert(account, changed, "route53.ChangeResourceRecordSets UPSERT of the weights as they were "
                                      "(restore_records)")]


def set_record_weights(account: Account, weights: dict[str, int]) -> dict[str, Any]:
    calls = plan_set_record_weights(account, weights)
    _remember_records(account)
    account.make(calls)
    return {"weights": weights}


def plan_restore_records(account: Account) -> list[PlannedCall]:
    saved = list(account.book.doc.get("records", {}).values())
    return [_upsert(account, saved, "none: this is the rollback")] if saved else []


def restore_records(account: Account) -> list[str]:
    calls = plan_restore_records(account)
    account.make(calls)
    return list(account.book.take("records"))


# -- the database ------------------------------------------------------------------------------


def plan_promote_database(account: Account, allow_data_loss: bool = True) -> list[PlannedCall]:
    db = _require(account, "database")
    primary, secondary = account.spec.regions.primary, account.spec.regions.secondary
    if db.kind == "rds-replica":
        return [PlannedCall("rds", secondary, "PromoteReadReplica", {"DBInstanceIdentifier": db.replica},
                            IRREVERSIBLE)]
    if db.kind == "aurora-cluster":  # the target instance always named: without it boto3 validation fails
        return [PlannedCall("rds", primary, "FailoverDBCluster",
                            {"DBClusterIdentifier": db.primary, "TargetDBInstanceIdentifier": db.replica},
                            "rds.FailoverDBCluster back to the former writer (a failback)")]
    return [PlannedCall("rds", secondary, "FailoverGlobalCluster",
                        {"GlobalClusterIdentifier": db.primary, "TargetDbClusterIdentifier": db.replica,
                         "AllowDataLoss": allow_data_loss}, IRREVERSIBLE)]


def promote_database(account: Account, timeout: float = 900, allow_data_loss: bool = True) -> dict[str, Any]:
    calls = plan_promote_database(account, allow_data_loss)
    db = account.spec.database
    t0 = time.time()
    account.make(calls)
    rds = account.client("rds", calls[0].region)

    def done() -> bool:
        if db.kind == "rds-replica":
            inst = rds.describe_db_instances(DBInstanceIdentifier=db.replica)["DBInstances"][0]
            return not inst.get("ReadReplicaSourceDBInstanceIdentifier") and inst["DBInstanceStatus"] == "available"
        if db.kind == "aurora-cluster":
            cluster = rds.describe_db_clusters(DBClusterIdentifier=db.primary)["DBClusters"][0]
            return any(m["DBInstanceIdentifier"] == db.replica and m["IsClusterWriter"]
                       for m in cluster.get("DBClusterMembers", []))
        glob = rds.describe_global_clusters(GlobalClusterIdentifier=db.primary)["GlobalClusters"][0]
        return any(m["DBClusterArn"] == db.replica and m["IsWriter"] for m in glob.get("GlobalClusterMembers", []))

    account.wait(f"{calls[0].operation} of {db.replica}", done, timeout, every=0.5)
    return {"operation": calls[0].operation, "resource": db.replica, "took_s": round(time.time() - t0, 3)}


# -- restore ------------------------------------------------------------------------------------

RESTORED_PREFIX = "drillkit-restore-"
"""Every instance a drill restores is named so: its rollback deletes only those."""


def plan_restore_database(account: Account, source: str = "primary", to: str = "latest",
                          name: str | None = None) -> list[PlannedCall]:
    """A point-in-time restore of the database (`source`: the primary or the replica) into a new
    instance, to the latest restorable time or an ISO 8601 time."""
    db = _require(account, "database")
    if db.kind != "rds-replica":
        raise InputError("restore_database restores an RDS instance: system.aws.database.kind must be rds-replica",
                         field="system.aws.database.kind")
    if source not in ("primary", "replica"):
        raise InputError(f"source must be primary or replica, not {source!r}", field="arguments.source")
    source_id = db.primary if source == "primary" else db.replica
    target = name or f"{RESTORED_PREFIX}{source_id}"[:63]
    if not target.startswith(RESTORED_PREFIX):
        raise InputError(f"the restored instance's name must start with {RESTORED_PREFIX} (its rollback deletes it)",
                         field="arguments.name")
    when: dict[str, Any] = {"UseLatestRestorableTime": True}
    if to != "latest":
        try:
            when = {"RestoreTime": datetime.fromisoformat(to.replace("Z", "+00:00")).isoformat()}
        except ValueError:
            raise InputError(f"to must be latest or an ISO 8601 time, not {to!r}", field="arguments.to") from None
    tags = [{"Key": k, "Value": v} for k, v in {**account.spec.required_tag, "drillkit": "restore"}.items()]
    region = account.spec.regions.primary if source == "primary" else account.spec.regions.secondary
    return [PlannedCall("rds", region, "RestoreDBInstanceToPointInTime",
                        {"SourceDBInstanceIdentifier": source_id, "TargetDBInstanceIdentifier": target, **when,
                         "Tags": tags},
                        f"rds.DeleteDBInstance DBInstanceIdentifier={target} SkipFinalSnapshot (delete_restored)")]


def restore_database(account: Account, source: str = "primary", to: str = "latest", name: str | None = None,
                     timeout: float = 7200) -> dict[str, Any]:
    """Start the restore, then wait until the new instance is `available`: the restore, timed."""
    call, = plan_restore_database(account, source, to, name)
    target = call.params["TargetDBInstanceIdentifier"]
    account.book.remember("restores", target, call.region)
    t0 = time.time()
    account.make([call])
    rds = account.client("rds", call.region)

    def available() -> bool:
        return rds.describe_db_instances(DBInstanceIdentifier=target)["DBInstances"][0]["DBInstanceStatus"] == "available"

    account.wait(f"the restore of {target}", available, timeout, every=2.0)
    return {"operation": call.operation, "source": call.params["SourceDBInstanceIdentifier"], "restored": target,
            "region": call.region, "to": to, "took_s": round(time.time() - t0, 3)}


def plan_delete_restored(account: Account) -> list[PlannedCall]:
    return [PlannedCall("rds", region, "DeleteDBInstance",
                        {"DBInstanceIdentifier": target, "SkipFinalSnapshot": True, "DeleteAutomatedBackups": True},
                        "none: this is the rollback")
            for target, region in account.book.doc.get("restores", {}).items() if target.startswith(RESTORED_PREFIX)]


def delete_restored(account: Account) -> list[str]:
    return _put_back(account, plan_delete_restored(account), "restores", "DBInstanceIdentifier")


# -- S3 replication ------------------------------------------------------------------------------


def _replication(account: Account) -> dict[str, Any] | None:
    objects = _require(account, "objects")
    s3 = account.client("s3")
    try:
        return s3.get_bucket_replication(Bucket=objects.source_bucket)["ReplicationConfiguration"]
    except s3.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ReplicationConfigurationNotFoundError":
            return None
        raise


def plan_pause_object_replication(account: Account) -> list[PlannedCall]:
    bucket = _require(account, "objects").source_bucket
    if _replication(account) is None:
        return []
    return [PlannedCall("s3", account.spec.regions.primary, "DeleteBucketReplication", {"Bucket": bucket},
                        f"s3.PutBucketReplication Bucket={bucket} with the configuration read before")]


def pause_object_replication(account: Account) -> dict[str, Any]:
    calls = plan_pause_object_replication(account)
    config = _replication(account)
    if config is not None:
        account.book.remember("replication", account.spec.objects.source_bucket, config)
    account.make(calls)
    return {"bucket": account.spec.objects.source_bucket, "paused": True, "rules": len((config or {}).get("Rules", []))}


def plan_resume_object_replication(account: Account) -> list[PlannedCall]:
    return [PlannedCall("s3", account.spec.regions.primary, "PutBucketReplication",
                        {"Bucket": bucket, "ReplicationConfiguration": config}, "none: this is the rollback")
            for bucket, config in account.book.doc.get("replication", {}).items()]


def resume_object_replication(account: Account) -> list[str]:
    return _put_back(account, plan_resume_object_replication(account), "replication", "Bucket")


# -- FIS ------------------------------------------------------------------------------------------


def _template(account: Account, template: str) -> str:
    if template not in account.spec.fis_templates:
        raise InputError(f"FIS template {template!r} is not in system.aws.fis_templates", field="arguments.template")
    return account.fis_template(template)


def plan_start_experiment(account: Account, template: str, wait: str | None = None,
                          timeout: float = 900) -> list[PlannedCall]:
    return [PlannedCall("fis", account.spec.regions.primary, "StartExperiment",
                        {"experimentTemplateId": _template(account, template), "tags": {"drillkit": "drill"}},
                        "fis.StopExperiment while it runs (stop_experiments)")]


def _chaosaws_configuration(account: Account) -> dict[str, Any]:
    """chaostoolkit-aws takes its region and profile from the configuration and its endpoint from the
    environment: the same account, the same guard."""
    from drillkit.targets.aws.session import guard_default_session

    if account.endpoint:
        os.environ["AWS_ENDPOINT_URL"] = account.endpoint
    guard_default_session(account.guard, account.spec.profile)
    config = {"aws_region": account.spec.regions.primary}
    if account.spec.profile:
        config["aws_profile_name"] = account.spec.profile
    return config


def experiment_state(account: Account, experiment_id: str) -> str:
    return account.client("fis").get_experiment(id=experiment_id)["experiment"]["state"]["status"]


def start_experiment(account: Account, template: str, wait: str | None = None, timeout: float = 900) -> dict[str, Any]:
    """Start a FIS experiment (chaostoolkit-aws's start_experiment); with `wait: running` return once
    its actions run, with `wait: done` once it has ended."""
    from chaosaws.fis.actions import start_experiment as chaosaws_start

    template_id = plan_start_experiment(account, template)[0].params["experimentTemplateId"]
    started = chaosaws_start(experiment_template_id=template_id, tags={"drillkit": "drill"},
                             configuration=_chaosaws_configuration(account))
    experiment_id = started["experiment"]["id"]
    account.book.remember("experiments", experiment_id, account.spec.regions.primary)
    if wait in ("running", "done"):
        targets = ("running", *FIS_DONE) if wait == "running" else FIS_DONE
        account.wait(f"FIS experiment {experiment_id}", lambda: experiment_state(account, experiment_id) in targets,
                     timeout, every=0.25)
    state = experiment_state(account, experiment_id)
    if state == "failed":
        reason = account.client("fis").get_experiment(id=experiment_id)["experiment"]["state"].get("reason")
        raise FaultError(f"FIS experiment {experiment_id} failed: {reason}")
    return {"experiment": experiment_id, "template": template_id, "state": state}


def plan_stop_experiments(account: Account) -> list[PlannedCall]:
    return [PlannedCall("fis", region, "StopExperiment", {"id": ident}, "none: this is the rollback")
            for ident, region in account.book.doc.get("experiments", {}).items()]


def stop_experiments(account: Account, timeout: float = 300) -> list[str]:
    """Stop every experiment this drill started that still runs, and wait until each has ended."""
    from chaosaws.fis.actions import stop_experiment as chaosaws_stop

    config = _chaosaws_configuration(account)
    stopped = []
    for ident in account.book.doc.get("experiments", {}):
        if experiment_state(account, ident) not in FIS_DONE:
            chaosaws_stop(experiment_id=ident, configuration=config)
            stopped.append(ident)
        account.wait(f"FIS experiment {ident} to stop", lambda i=ident: experiment_state(account, i) in FIS_DONE,
                     timeout, every=0.25)
    account.book.take("experiments")
    return stopped


PLANNERS = {
    "invert_health_check": plan_invert_health_check, "restore_health_checks": plan_restore_health_checks,
    "fail_over_records": plan_fail_over_records, "set_record_weights": plan_set_record_weights,
    "restore_records": plan_restore_records, "promote_database": plan_promote_database,
    "pause_object_replication": plan_pause_object_replication,
    "resume_object_replication": plan_resume_object_replication,
    "start_experiment": plan_start_experiment, "stop_experiments": plan_stop_experiments,
    "restore_database": plan_restore_database, "delete_restored": plan_delete_restored,
}
"""The plan of each chaos action of drillkit.chaos.aws, by its name."""
