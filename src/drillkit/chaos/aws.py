"""Chaos Toolkit actions and probes on an AWS account (`system.kind: aws`).

Each action makes exactly the calls its plan lists (drillkit.targets.aws.operations; `drillkit plan`
prints them), through the target's guarded session, so every call is allowlisted and in the call
trail. Rollbacks put back what the method changed: health-check inversion, record sets, the
replication rule, running FIS experiments. Promotion is a runbook outcome: AWS cannot undo it.
"""

from __future__ import annotations

from typing import Any

from drillkit.chaos import Context, action
from drillkit.targets.aws import operations as ops
from drillkit.targets.capabilities import AwsApi
from drillkit.evidence import (AWS_DB_RESTORED, AWS_FIS_STARTED, AWS_FIS_STOPPED, AWS_HEALTH_CHECK_INVERTED,
                               AWS_HEALTH_CHECK_RESTORED, AWS_RECORDS_RESTORED, AWS_RESTORE_DELETED, DB_PROMOTED,
                               OBJECTS_REPLICATION_PAUSED, OBJECTS_REPLICATION_RESUMED, ROUTING_SHIFT, ROUTING_SWITCH)


def _account(ctx: Context):
    return ctx.target.aws_account()


@action(AwsApi)
def invert_health_check(ctx: Context, region: str = "primary", inverted: bool = True) -> dict:
    """Invert the Route 53 health check of a region's failover record: Route 53 then fails over
    after its failure threshold, as if the region's checks failed."""
    done = ops.invert_health_check(_account(ctx), region, inverted)
    ctx.record(AWS_HEALTH_CHECK_INVERTED, **done)
    return done


@action(AwsApi)
def restore_health_checks(ctx: Context) -> list[str]:
    restored = ops.restore_health_checks(_account(ctx))
    ctx.record(AWS_HEALTH_CHECK_RESTORED, health_checks=restored)
    return restored


@action(AwsApi)
def fail_over_records(ctx: Context, to: str = "secondary") -> dict:
    """Force a Route 53 failover: UPSERT the failover pair so `to`'s record is PRIMARY."""
    done = ops.fail_over_records(_account(ctx), to)
    ctx.record(ROUTING_SWITCH, to=to, policy="route53", reason="runbook: failover records swapped")
    return done


@action(AwsApi)
def set_record_weights(ctx: Context, weights: dict[str, int]) -> dict:
    done = ops.set_record_weights(_account(ctx), weights)
    ctx.record(ROUTING_SHIFT, weights=weights, policy="route53")
    return done


@action(AwsApi)
def restore_records(ctx: Context) -> list[str]:
    restored = ops.restore_records(_account(ctx))
    ctx.record(AWS_RECORDS_RESTORED, records=restored)
    return restored


@action(AwsApi)
def promote_database(ctx: Context, timeout: float = 900, allow_data_loss: bool = True) -> dict:
    """Promote the cross-region read replica (or fail the Aurora cluster / global cluster over to
    the scenario's target) and wait until it is the writer."""
    done = ops.promote_database(_account(ctx), timeout, allow_data_loss)
    ctx.record(DB_PROMOTED, region=_account(ctx).spec.regions.secondary, **done)
    return done


@action(AwsApi)
def pause_object_replication(ctx: Context) -> dict:
    """Remove the source bucket's replication rule (saved for resume_object_replication)."""
    done = ops.pause_object_replication(_account(ctx))
    ctx.record(OBJECTS_REPLICATION_PAUSED, **done)
    return done


@action(AwsApi)
def resume_object_replication(ctx: Context) -> list[str]:
    restored = ops.resume_object_replication(_account(ctx))
    ctx.record(OBJECTS_REPLICATION_RESUMED, buckets=restored)
    return restored


@action(AwsApi)
def start_experiment(ctx: Context, template: str, wait: str | None = "running", timeout: float = 900) -> dict:
    """Start a FIS experiment template (named in system.aws.fis_templates, by id or Name tag)."""
    done = ops.start_experiment(_account(ctx), template, wait, timeout)
    ctx.record(AWS_FIS_STARTED, **done)
    return done


@action(AwsApi)
def stop_experiments(ctx: Context, timeout: float = 300) -> list[str]:
    """Stop every FIS experiment this drill started that still runs; wait until each has ended."""
    stopped = ops.stop_experiments(_account(ctx), timeout)
    ctx.record(AWS_FIS_STOPPED, experiments=stopped)
    return stopped


@action(AwsApi)
def restore_database(ctx: Context, source: str = "primary", to: str = "latest", name: str | None = None,
                     timeout: float = 7200) -> dict:
    """Restore the database to a point in time (the latest restorable, or an ISO 8601 time) into
    a new instance named drillkit-restore-…, and time it until the instance is available."""
    done = ops.restore_database(_account(ctx), source, to, name, timeout)
    ctx.record(AWS_DB_RESTORED, **done)
    return done


@action(AwsApi)
def delete_restored(ctx: Context) -> list[str]:
    """Rollback: delete the instances this drill restored (only drillkit-restore-… ones)."""
    deleted = ops.delete_restored(_account(ctx))
    ctx.record(AWS_RESTORE_DELETED, instances=deleted)
    return deleted


@action(AwsApi)
def alarms_in_alarm(ctx: Context) -> list[dict[str, Any]]:
    """Probe: the scenario's stop-condition alarms that are in ALARM now, with when each changed."""
    return _account(ctx).alarms_in_alarm()


@action(AwsApi)
def alarm_states(ctx: Context) -> list[dict[str, Any]]:
    """Probe: every scenario alarm (stop conditions and watched), its state and when it changed."""
    return _account(ctx).alarm_states()


@action(AwsApi)
def health_check_status(ctx: Context, region: str = "primary") -> dict[str, Any]:
    """Probe: the Route 53 health check of a region's failover record, as its checkers report it
    (`healthy` as Route 53 decides it; a tolerance such as `{"type": "jsonpath", "path": "$.healthy",
    "expect": false}` waits on it)."""
    return ops.health_check_status(_account(ctx), region)


@action(AwsApi)
def experiment_state(ctx: Context, template: str | None = None) -> dict[str, str]:
    """Probe: the state of each FIS experiment this drill started."""
    account = _account(ctx)
    return {ident: ops.experiment_state(account, ident) for ident in account.book.doc.get("experiments", {})}
