"""The emulated AWS account: moto's server, with a thin layer that gives its calls real effects on
the sandbox's data plane, so an AWS scenario can be rehearsed offline, unchanged but for the
endpoint. Run as ``python -m drillkit.targets.aws.emulated --sandbox STATE`` (``drillkit sandbox up
--emulate aws`` does).

What each call does here, beyond what moto stores:

    rds PromoteReadReplica (the replica)     promotes region B's PostgreSQL standby (the call returns
                                             once it accepts writes; AWS returns at once and the
                                             instance is `modifying` for minutes)
    route53 UpdateHealthCheck Inverted       inverts the router's health check of that region
    route53 GetHealthCheckStatus             the region's endpoint as it answers now through its client
                                             link (inverted when the check is), not moto's Success
    route53 ChangeResourceRecordSets         the failover record whose value is PRIMARY becomes the
                                             router's answer (TTL applies, as resolvers cache)
    s3 Delete/PutBucketReplication (source)  disables / re-enables drillkit's object replicator: as
                                             on S3, what is written while no rule is enabled is never
                                             replicated (S3 Batch Replication would copy it)
    fis StartExperiment / StopExperiment     the mapped sandbox fault, for the action's duration:
        aws:network:disrupt-connectivity         every link of the target subnets' region cut
        aws:network:route-table-disrupt-cross-region-connectivity   the region-to-region links cut
        aws:s3:bucket-pause-replication          the object replicator paused (changes queue and are
                                                 copied when the pause ends, as FIS documents)
    cloudwatch                               ReplicaLag (AWS/RDS) and the object replicator's
                                             ReplicationLatency / OperationsPendingReplication
                                             (AWS/S3) fed from the sandbox once a second

What it cannot emulate, and says so (docs/aws.md): Route 53 health evaluation from AWS's checkers
and DNS answers themselves (the router stands in), replication timing of real RDS/S3, alarm
evaluation (alarms change state only by SetAlarmState), Aurora and DynamoDB global tables, AWS
Backup restore jobs, and every FIS action not listed above (its experiment fails, naming it).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from drillkit.targets.aws.session import is_mutating
from drillkit.evidence import DB_PROMOTED

ACCOUNT = "123456789012"
REGIONS = {"us-east-1": "A", "us-west-2": "B"}
"""The emulated account's regions and the sandbox region each one is."""
MARKER = "drillkit-emulator"
"""The user agent of the emulator's own calls (seeding, metrics): not counted as the drill's."""
INFO_PATH = "/_drillkit/emulated"

ZONE = "roadcall.example."
RECORD = "api.roadcall.example."
RECORD_VALUE = {"A": "a.api.roadcall.example", "B": "b.api.roadcall.example"}
DB = {"A": "roadcall-db", "B": "roadcall-db-replica"}
BUCKETS = {"A": "roadcall-docs-use1", "B": "roadcall-docs-usw2"}
ALARMS = {"replica-lag": "roadcall-replica-lag", "s3-replication": "roadcall-s3-replication"}
TEMPLATES = {"region-a-outage": ("aws:network:disrupt-connectivity", "A", "PT10M"),
             "cross-region-cut": ("aws:network:route-table-disrupt-cross-region-connectivity", "A", "PT20S"),
             "s3-pause-replication": ("aws:s3:bucket-pause-replication", "A", "PT10M")}
TAG = {"Key": "drill", "Value": "allowed"}
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/drillkit-drill"

def region_of(aws_region: str) -> str:
    return REGIONS[aws_region]


def aws_region_of(sandbox_region: str) -> str:
    return next(r for r, s in REGIONS.items() if s == sandbox_region)


# -- which call a request is -----------------------------------------------------------------

_SCOPE = re.compile(r"Credential=[^/]+/\d+/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")
_REST = [  # (service, method, path pattern, operation) for the REST services the layer acts on
    ("route53", "POST", r"^/2013-04-01/healthcheck/[^/]+$", "UpdateHealthCheck"),
    ("route53", "GET", r"^/2013-04-01/healthcheck/[^/]+/status$", "GetHealthCheckStatus"),
    ("route53", "POST", r"^/2013-04-01/hostedzone/[^/]+/rrset/?$", "ChangeResourceRecordSets"),
    ("fis", "POST", r"^/experiments/?$", "StartExperiment"),
    ("fis", "DELETE", r"^/experiments/[^/]+$", "StopExperiment"),
]


@dataclass
class Call:
    service: str
    region: str
    operation: str
    mutating: bool
    ours: bool
    params: dict[str, list[str]] = field(default_factory=dict)


def identify(environ: dict, body: bytes) -> Call:
    """Service and region from the SigV4 scope; the operation from the protocol's own marker."""
    scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    region, service = scope.groups() if scope else ("us-east-1", "unknown")
    method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    ours = MARKER in environ.get("HTTP_USER_AGENT", "")
    target = environ.get("HTTP_X_AMZ_TARGET")
    params: dict[str, list[str]] = {}
    if target:
        operation = target.rpartition(".")[2]
    elif "/operation/" in path:
        operation = path.rpartition("/")[2]
    elif environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded") or "Action" in query:
        params = {**query, **parse_qs(body.decode(errors="replace"))}
        operation = params.get("Action", ["Unknown"])[0]
    else:
        operation = next((op for svc, m, pattern, op in _REST
                          if svc == service and m == method and re.match(pattern, path)), None)
        if operation is None:
            kind = "replication" if "replication" in query else ""
            operation = f"{method} {path}{'?' + kind if kind else ''}"
            return Call(service, region, operation, method not in ("GET", "HEAD"), ours, dict(query))
    return Call(service, region, operation, is_mutating(operation), ours, params)


# -- the effects ------------------------------------------------------------------------------


class Effects:
    """What the account's calls do to the sandbox. Reconciles from moto's public API (its own
    calls, marked), so the sandbox follows the account's state, not the request's wording."""

    def __init__(self, sandbox, client: Callable[[str, str], Any]):
        self.sandbox = sandbox
        self.client = client
        self.lock = threading.Lock()
        self.inverted = {r: False for r in REGIONS.values()}
        self.answer = "A"
        self.rule_paused = False
        self.experiments: dict[str, dict[str, Any]] = {}
        self.log: list[dict[str, Any]] = []

    def _note(self, what: str, **fields: Any) -> None:
        self.log.append({"t": time.time(), "effect": what, **fields})

    def after(self, call: Call, status: int, response: bytes) -> None:
        if call.ours or not call.mutating or not 200 <= status < 300:
            return
        with self.lock:
            if call.service == "rds" and call.operation == "PromoteReadReplica":
                self._promote(call.params.get("DBInstanceIdentifier", [""])[0])
            elif call.service == "route53":
                self._route53()
            elif call.service == "s3" and call.operation.endswith("?replication"):
                self._s3_rule()
            elif call.service == "fis" and call.operation == "StartExperiment":
                self._start(call.region, json.loads(response)["experiment"]["id"])
            elif call.service == "fis" and call.operation == "StopExperiment":
                self._stop(call.region, json.loads(response)["experiment"]["id"], "stopped")

    def respond(self, call: Call, path: str, status: int, response: bytes) -> bytes:
        """A response moto cannot give: a health check's status as the region's endpoint answers
        now (through its client link), inverted when the check is; moto always says Success."""
        if call.operation != "GetHealthCheckStatus" or status != 200:
            return response
        check = path.split("/")[3]
        region = next((_region_of_value(r) for r in self._records() if r.get("HealthCheckId") == check), None)
        if region is None:
            return response
        seen = self.sandbox.region_health(region)
        healthy = seen.healthy != bool(self.inverted[region])
        text = (f"Success: HTTP Status Code {seen.status}, OK" if healthy else
                f"Failure: {'inverted: ' if self.inverted[region] else ''}"
                f"{f'HTTP Status Code {seen.status}' if seen.status else seen.error or 'no answer'}")
        checked = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<GetHealthCheckStatusResponse '
                'xmlns="https://route53.amazonaws.com/doc/2013-04-01/"><HealthCheckObservations>'
                f'<HealthCheckObservation><Region>{aws_region_of(region)}</Region><IPAddress>127.0.0.1</IPAddress>'
                f'<StatusReport><Status>{escape(text)}</Status><CheckedTime>{checked}</CheckedTime></StatusReport>'
                '</HealthCheckObservation></HealthCheckObservations></GetHealthCheckStatusResponse>').encode()

    def _promote(self, instance: str) -> None:
        region = next((r for r, name in DB.items() if name == instance), None)
        if region is None or self.sandbox.state.regions[region].role != "standby":
            return
        self.sandbox.promote_standby(region)
        _detach_replica(aws_region_of(region), instance)
        self._note(DB_PROMOTED, region=region, instance=instance)

    def _records(self) -> list[dict[str, Any]]:
        """The roadcall zone's record sets, as moto holds them now."""
        r53 = self.client("route53", "us-east-1")
        zone = r53.list_hosted_zones_by_name(DNSName=ZONE)["HostedZones"][0]["Id"]
        return r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]

    def _route53(self) -> None:
        r53 = self.client("route53", "us-east-1")
        records = self._records()
        for rrset in records:
            if rrset["Name"] != RECORD or "HealthCheckId" not in rrset:
                continue
            check = r53.get_health_check(HealthCheckId=rrset["HealthCheckId"])["HealthCheck"]
            region = _region_of_value(rrset)
            inverted = bool(check["HealthCheckConfig"].get("Inverted"))
            if region and self.inverted[region] != inverted:
                self.sandbox.invert_health_check(region, inverted)
                self.inverted[region] = inverted
                self._note("health_check.inverted", region=region, inverted=inverted)
        primary = next((_region_of_value(r) for r in records
                        if r["Name"] == RECORD and r.get("Failover") == "PRIMARY"), None)
        if primary and primary != self.answer:
            self.sandbox.switch_routing(primary, reason=f"route53: {RECORD} PRIMARY is {RECORD_VALUE[primary]}")
            self.answer = primary
            self._note("routing.switched", to=primary)

    def _s3_rule(self) -> None:
        s3 = self.client("s3", "us-east-1")
        try:
            rules = s3.get_bucket_replication(Bucket=BUCKETS["A"])["ReplicationConfiguration"]["Rules"]
            paused = not any(r.get("Status") == "Enabled" for r in rules)
        except s3.exceptions.ClientError:
            paused = True
        if paused != self.rule_paused:
            self.rule_paused = paused
            self._replicator(disabled=paused)

    def _replication_paused(self) -> None:
        """FIS's bucket-pause-replication: changes queue and are copied once the pause ends."""
        self._replicator(paused=any(e["pauses_objects"] for e in self.experiments.values() if e["running"]))

    def _replicator(self, **mode: bool) -> None:
        """Pause (`paused`: changes queue) or disable (`disabled`: changes are never copied) the
        sandbox's object replicator, and note it (`rule_enabled` for the rule, `paused` for FIS)."""
        if self.sandbox.state.object_replicator_port:
            self.sandbox.objects.configure_replication(**mode)
            noted = {"rule_enabled": not mode["disabled"]} if "disabled" in mode else mode
            self._note("objects.replication", **noted)

    # FIS

    def _start(self, aws_region: str, experiment_id: str) -> None:
        from moto.fis.models import fis_backends

        experiment = fis_backends[ACCOUNT][aws_region].experiments[experiment_id]
        links, pauses, unknown, ends = set(), False, [], []
        for action in experiment.actions.values():
            action_id = action.get("actionId", "")
            regions = {region_of(arn.split(":")[3]) for name in (action.get("targets") or {}).values()
                       for arn in (experiment.targets.get(name, {}).get("resourceArns") or [])
                       if arn.split(":")[3] in REGIONS}
            ends.append(time.time() + _iso_seconds((action.get("parameters") or {}).get("duration", "PT1M")))
            if action_id == "aws:network:disrupt-connectivity":
                links |= {link for r in regions for link in self._links_of(r)}
            elif action_id == "aws:network:route-table-disrupt-cross-region-connectivity":
                links |= self._cross_region_links()
            elif action_id == "aws:s3:bucket-pause-replication":
                pauses = True
            else:
                unknown.append(action_id)
        if unknown:
            experiment.status = "failed"
            experiment.end_time = time.time()
            self._note("fis.not_emulated", experiment=experiment_id, actions=unknown)
            return
        for link in sorted(links):
            self.sandbox.inject_link_fault(link, "blackhole")
        self.experiments[experiment_id] = {"region": aws_region, "links": sorted(links), "pauses_objects": pauses,
                                           "running": True, "ends": max(ends, default=time.time())}
        experiment.status = "running"
        if pauses:
            self._replication_paused()
        self._note("fis.started", experiment=experiment_id, links=sorted(links), pauses_objects=pauses)

    def _stop(self, aws_region: str, experiment_id: str, final: str) -> None:
        from moto.fis.models import fis_backends

        held = self.experiments.get(experiment_id)
        if held is None or not held["running"]:
            return
        held["running"] = False
        still = {link for e in self.experiments.values() if e["running"] for link in e["links"]}
        for link in held["links"]:
            if link not in still:
                self.sandbox.clear_link_fault(link, "blackhole")
        if held["pauses_objects"]:
            self._replication_paused()
        experiment = fis_backends[ACCOUNT][aws_region].experiments[experiment_id]
        experiment.status = final
        experiment.end_time = time.time()
        self._note(f"fis.{final}", experiment=experiment_id)

    def tick(self) -> None:
        """Experiments whose actions' durations ran out complete, as FIS's do."""
        with self.lock:
            for experiment_id, held in list(self.experiments.items()):
                if held["running"] and time.time() >= held["ends"]:
                    self._stop(held["region"], experiment_id, "completed")

    def _links_of(self, region: str) -> set[str]:
        from drillkit.targets.sandbox.system import client_link

        return {client_link(region)} | self._cross_region_links()

    def _cross_region_links(self) -> set[str]:
        return {name for name in self.sandbox.link_names() if name.startswith(("repl-", "objrepl-"))}

    def stop_all(self) -> None:
        for experiment_id, held in list(self.experiments.items()):
            self._stop(held["region"], experiment_id, "stopped")


def _detach_replica(aws_region: str, instance: str) -> None:
    """moto's PromoteReadReplica leaves the replica naming its source; RDS does not (a promoted
    instance is standalone, and its source no longer lists it)."""
    from moto.rds.models import rds_backends

    replica = rds_backends[ACCOUNT][aws_region].databases[instance]
    replica.source_db_instance_identifier = None
    for backend_region in REGIONS:
        for db in rds_backends[ACCOUNT][backend_region].databases.values():
            db.replicas = [r for r in db.replicas if r not in (instance, replica.db_instance_arn)]


def _region_of_value(rrset: dict[str, Any]) -> str | None:
    values = {v["Value"].rstrip(".") for v in rrset.get("ResourceRecords", [])}
    return next((r for r, value in RECORD_VALUE.items() if value in values), None)


def _iso_seconds(text: str) -> float:
    """FIS durations: ISO 8601 `PT1H2M3S`."""
    match = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?", text or "")
    if not match:
        return 60.0
    h, m, s = match.groups()
    return int(h or 0) * 3600 + int(m or 0) * 60 + float(s or 0)


# -- the account ------------------------------------------------------------------------------


class Counter:
    """Every call the account received from a client (not the emulator's own), for `drillkit plan`'s
    test and the provenance."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []

    def add(self, call: Call, status: int) -> None:
        if call.ours:
            return
        with self.lock:
            self.calls.append({"t": time.time(), "service": call.service, "region": call.region,
                               "operation": call.operation, "mutating": call.mutating, "status": status})


def layer(moto_app: Callable, effects: Effects, counter: Counter) -> Callable:
    """WSGI around moto: identify the call, let moto answer, then apply its effect before the
    client sees the answer; serve what the account received at INFO_PATH."""

    def app(environ, start_response):
        if environ.get("PATH_INFO") == INFO_PATH:
            with counter.lock:
                calls = list(counter.calls)
            doc = {"emulated": True, "account": ACCOUNT, "regions": REGIONS, "calls": calls,
                   "mutating_calls": sum(c["mutating"] for c in calls), "effects": effects.log}
            data = json.dumps(doc).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        call = identify(environ, body)
        seen: dict[str, Any] = {}

        def capture(status, headers, exc_info=None):
            seen.update(line=status, status=int(status.split()[0]), headers=headers, exc_info=exc_info)
            return lambda data: None

        response = b"".join(moto_app(environ, capture))
        code = seen.get("status", 500)
        counter.add(call, code)
        effects.after(call, code, response)
        answered = effects.respond(call, environ.get("PATH_INFO", ""), code, response)
        headers = seen.get("headers", [])
        if answered is not response:
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(answered))))
        start_response(seen.get("line", "500 Internal Server Error"), headers, seen.get("exc_info"))
        return [answered]

    return app


def client_factory(port: int) -> Callable[[str, str], Any]:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(aws_access_key_id="emulator", aws_secret_access_key="emulator")
    config = Config(user_agent_extra=MARKER, retries={"max_attempts": 2}, connect_timeout=2, read_timeout=10)

    def client(service: str, region: str):
        return session.client(service, region_name=region, endpoint_url=f"http://127.0.0.1:{port}", config=config)

    return client


def seed(client: Callable[[str, str], Any], sandbox) -> None:
    """The roadcall-style stack the AWS scenarios name: a database and its cross-region replica,
    a failover record pair with health checks, replicated buckets, alarms and FIS templates."""
    east, west = "us-east-1", "us-west-2"
    rds_east = client("rds", east)
    primary = rds_east.create_db_instance(
        DBInstanceIdentifier=DB["A"], Engine="postgres", DBInstanceClass="db.r6g.large", AllocatedStorage=100,
        MasterUsername="drill", MasterUserPassword="emulated-password", Tags=[TAG])["DBInstance"]
    client("rds", west).create_db_instance_read_replica(
        DBInstanceIdentifier=DB["B"], SourceDBInstanceIdentifier=primary["DBInstanceArn"], SourceRegion=east,
        DBInstanceClass="db.r6g.large", Tags=[TAG])

    r53 = client("route53", east)
    zone = r53.create_hosted_zone(Name=ZONE, CallerReference="drillkit-emulated")["HostedZone"]["Id"]
    changes = []
    for region, role in (("A", "PRIMARY"), ("B", "SECONDARY")):
        port = sandbox.state.links[sandbox.state.regions[region].link].port
        check = r53.create_health_check(CallerReference=f"drillkit-{region}", HealthCheckConfig={
            "IPAddress": "127.0.0.1", "Port": port, "Type": "HTTP", "ResourcePath": "/health",
            "RequestInterval": 10, "FailureThreshold": 3})["HealthCheck"]["Id"]
        r53.change_tags_for_resource(ResourceType="healthcheck", ResourceId=check, AddTags=[TAG])
        changes.append({"Action": "CREATE", "ResourceRecordSet": {
            "Name": RECORD, "Type": "CNAME", "SetIdentifier": f"region-{region.lower()}", "Failover": role,
            "TTL": 1, "HealthCheckId": check, "ResourceRecords": [{"Value": RECORD_VALUE[region]}]}})
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": changes})

    for region, bucket in BUCKETS.items():
        s3 = client("s3", aws_region_of(region))
        location = {} if aws_region_of(region) == east else {
            "CreateBucketConfiguration": {"LocationConstraint": aws_region_of(region)}}
        s3.create_bucket(Bucket=bucket, **location)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [TAG]})
    client("s3", east).put_bucket_replication(Bucket=BUCKETS["A"], ReplicationConfiguration={
        "Role": ROLE_ARN, "Rules": [{
            "ID": "to-dr-region", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
            "DeleteMarkerReplication": {"Status": "Enabled"},
            "Destination": {"Bucket": f"arn:aws:s3:::{BUCKETS['B']}",
                            "ReplicationTime": {"Status": "Enabled", "Time": {"Minutes": 15}},
                            "Metrics": {"Status": "Enabled", "EventThreshold": {"Minutes": 15}}}}]})

    cw = client("cloudwatch", west)
    cw.put_metric_alarm(AlarmName=ALARMS["replica-lag"], Namespace="AWS/RDS", MetricName="ReplicaLag",
                        Dimensions=[{"Name": "DBInstanceIdentifier", "Value": DB["B"]}], Statistic="Maximum",
                        Period=60, EvaluationPeriods=1, Threshold=5.0, ComparisonOperator="GreaterThanThreshold",
                        Tags=[TAG])
    client("cloudwatch", east).put_metric_alarm(
        AlarmName=ALARMS["s3-replication"], Namespace="AWS/S3", MetricName="ReplicationLatency",
        Dimensions=[{"Name": "SourceBucket", "Value": BUCKETS["A"]}, {"Name": "DestinationBucket", "Value": BUCKETS["B"]},
                    {"Name": "RuleId", "Value": "to-dr-region"}],
        Statistic="Maximum", Period=60, EvaluationPeriods=1, Threshold=900.0,
        ComparisonOperator="GreaterThanThreshold", Tags=[TAG])

    ec2 = client("ec2", east)
    vpc = ec2.create_vpc(CidrBlock="10.10.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.10.1.0/24")["Subnet"]
    fis = client("fis", east)
    for name, (action_id, region, duration) in TEMPLATES.items():
        if action_id.startswith("aws:network"):
            target = {"resourceType": "aws:ec2:subnet", "selectionMode": "ALL",
                      "resourceArns": [subnet["SubnetArn"]]}
            parameters = {"duration": duration, **({"scope": "all"} if action_id.endswith("connectivity") and
                                                   "cross-region" not in action_id else {"region": "us-west-2"})}
            targets = {"Subnets": target}
        else:
            targets = {"Buckets": {"resourceType": "aws:s3:bucket", "selectionMode": "ALL",
                                   "resourceArns": [f"arn:aws:s3:::{BUCKETS[region]}"]}}
            parameters = {"duration": duration, "region": "us-west-2"}
        fis.create_experiment_template(
            clientToken=f"drillkit-{name}", description=f"drillkit emulated: {name}", roleArn=ROLE_ARN,
            stopConditions=[{"source": "none"}], targets=targets,
            actions={name: {"actionId": action_id, "parameters": parameters,
                            "targets": {next(iter(targets)): next(iter(targets))}}},
            tags={"Name": name, TAG["Key"]: TAG["Value"]})


def feed_metrics(client: Callable[[str, str], Any], sandbox, stop: threading.Event, interval: float = 1.0) -> None:
    """CloudWatch metrics from the sandbox: what AWS would publish, sampled here once a second."""
    cw = {r: client("cloudwatch", r) for r in REGIONS}
    while not stop.wait(interval):
        try:
            rows = [s for s in sandbox.replication_lag() if s.replay_lag_s is not None or s.object_backlog is not None]
        except Exception:  # the primary may be gone: a gap in the metric is the truth
            continue
        for sample in rows:
            if sample.replay_lag_s is not None:
                cw["us-west-2"].put_metric_data(Namespace="AWS/RDS", MetricData=[{
                    "MetricName": "ReplicaLag", "Value": float(sample.replay_lag_s), "Unit": "Seconds",
                    "StorageResolution": 1,
                    "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": DB["B"]}]}])
            if sample.object_backlog is not None:
                dims = [{"Name": "SourceBucket", "Value": BUCKETS["A"]},
                        {"Name": "DestinationBucket", "Value": BUCKETS["B"]}, {"Name": "RuleId", "Value": "to-dr-region"}]
                cw["us-east-1"].put_metric_data(Namespace="AWS/S3", MetricData=[
                    {"MetricName": "OperationsPendingReplication", "Value": float(sample.object_backlog),
                     "Unit": "Count", "Dimensions": dims},
                    {"MetricName": "ReplicationLatency", "Value": float(sample.object_backlog_age_s or 0.0),
                     "Unit": "Seconds", "Dimensions": dims}])


def serve(args: argparse.Namespace) -> int:
    from moto.moto_api import state_manager
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from drillkit.net import write_ready_file
    from drillkit.targets.sandbox.system import Sandbox

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # the layer moves experiments through their states (running until the action's duration ends)
    state_manager.set_transition(model_name="fis::experiment", transition={"progression": "manual", "times": 10**9})
    sandbox = Sandbox.attach(args.sandbox)
    server = make_server("127.0.0.1", args.port, None, threaded=True, request_handler=MotoRequestHandler)
    client = client_factory(server.server_address[1])
    effects, counter = Effects(sandbox, client), Counter()
    server.app = layer(DomainDispatcherApplication(create_backend_app), effects, counter)
    stop = threading.Event()
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="aws api", daemon=True).start()
    seed(client, sandbox)
    threading.Thread(target=feed_metrics, args=(client, sandbox, stop), name="cloudwatch feed", daemon=True).start()
    if args.ready_file:
        write_ready_file(args.ready_file, server.server_address[1], account=ACCOUNT)
    while not stop.wait(0.2):
        effects.tick()
    server.shutdown()
    server.server_close()
    return 0


def start(sandbox) -> dict[str, Any]:
    """Start the emulated account over a running sandbox, as one of the sandbox's processes (its
    teardown and reaper stop it): its URL, account and regions."""
    from pathlib import Path

    from drillkit.targets import processes

    proc, ready = processes.spawn_service("drillkit.targets.aws.emulated", ["--sandbox", str(sandbox.state_file)],
                                          Path(sandbox.state.root), "aws-emulated")
    sandbox.adopt("aws-emulated", proc.pid)
    info = processes.wait_ready(proc, ready, "aws-emulated")
    return {"url": f"http://127.0.0.1:{info['port']}", "account": ACCOUNT, "regions": list(REGIONS)}


def main(argv: list[str] | None = None) -> int:
    from drillkit.net import add_service_arguments, start_service

    parser = argparse.ArgumentParser(prog="python -m drillkit.targets.aws.emulated", description=__doc__.split("\n")[0])
    parser.add_argument("--sandbox", required=True, help="the sandbox's state file (the data plane)")
    parser.add_argument("--port", type=int, default=0)
    add_service_arguments(parser)
    args = parser.parse_args(argv)
    start_service("emulated aws account", args, parser)
    return serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
