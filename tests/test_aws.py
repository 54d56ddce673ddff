"""The aws target, rehearsed on the emulated account (moto's server whose calls act on the sandbox),
the way a user meets it: `drillkit sandbox up --emulate aws`, the exports it prints, then
`drillkit plan`, `drillkit run` and plain `chaos run` on the shipped scenarios, unchanged.

Ground truths: the emulated account's own log of the calls it received (none mutating under
`plan`; the call trail's request ids), its describe output before and after (rollbacks put the
account back), and the sandbox's two PostgreSQL databases read directly (which acknowledged
writes the promoted replica lacks)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
import yaml

from drillkit.evidence import REQUESTS_DIR, read_aws_calls, read_events, read_jsonl
from support.scenario_copy import copy_scenario

ROOT = Path(__file__).resolve().parent.parent
REGION_LOSS = ROOT / "scenarios" / "aws" / "roadcall-region-loss.yaml"
FIS_CUT = ROOT / "scenarios" / "aws" / "fis-replication-cut.yaml"
S3_PAUSE = ROOT / "scenarios" / "aws" / "s3-pause-then-region-loss.yaml"
PLANTED_ENV_SECRET = "planted-env-secret-Zq9xW2mT"
PLANTED_SCENARIO_SECRET = "planted-scenario-secret-Kp3vR8"


class Emulated:
    def __init__(self, folder: Path, cli):
        self.folder, self.cli = folder, cli
        self.pointer = folder / "pointer"
        up = cli("sandbox", "up", "--emulate", "aws", "--pointer", str(self.pointer), timeout=240)
        assert up.returncode == 0, up.stderr
        self.env = {}
        for line in up.stdout.splitlines():
            if line.startswith("export "):
                for pair in line[len("export "):].split():
                    key, _, value = pair.partition("=")
                    self.env[key] = value
        self.sandbox_state = Path(self.env.pop("DRILLKIT_SANDBOX"))
        self.url = self.env["AWS_ENDPOINT_URL"]

    def info(self) -> dict:
        with urllib.request.urlopen(self.url + "/_drillkit/emulated", timeout=5) as resp:
            return json.loads(resp.read())

    def mutating(self) -> list[dict]:
        return [c for c in self.info()["calls"] if c["mutating"]]

    def client(self, service: str, region: str = "us-east-1"):
        import boto3

        return boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test").client(
            service, region_name=region, endpoint_url=self.url)

    def snapshot(self) -> dict:
        """What the drills' rollbacks must put back: health checks, records, the replication rule,
        running experiments, alarm states."""
        r53, s3, fis = self.client("route53"), self.client("s3"), self.client("fis")
        zone = r53.list_hosted_zones_by_name(DNSName="roadcall.example.")["HostedZones"][0]["Id"]
        checks = {c["Id"]: c["HealthCheckConfig"].get("Inverted") for c in r53.list_health_checks()["HealthChecks"]}
        records = sorted((r.get("SetIdentifier") or "", r.get("Failover") or "", json.dumps(r.get("ResourceRecords")))
                         for r in r53.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"])
        rule = s3.get_bucket_replication(Bucket="roadcall-docs-use1")["ReplicationConfiguration"]
        running = [e["id"] for e in fis.list_experiments()["experiments"]
                   if e["state"]["status"] not in ("completed", "stopped", "failed")]
        alarms = {a["AlarmName"]: a["StateValue"]
                  for r in ("us-east-1", "us-west-2") for a in self.client("cloudwatch", r).describe_alarms()["MetricAlarms"]}
        instances = sorted(i["DBInstanceIdentifier"] for r in ("us-east-1", "us-west-2")
                           for i in self.client("rds", r).describe_db_instances()["DBInstances"])
        return {"health_checks": checks, "records": records, "replication": rule, "running_experiments": running,
                "alarms": alarms, "db_instances": instances}

    def dsn(self, region: str) -> str:
        state = json.loads(self.sandbox_state.read_text())
        return f"host=127.0.0.1 port={state['regions'][region]['db_port']} user=drillkit dbname=drillkit connect_timeout=3"

    def keys(self, region: str) -> set[str]:
        with psycopg.connect(self.dsn(region)) as conn:
            return {k for (k,) in conn.execute("SELECT key FROM records")}

    def objects(self, region: str) -> set[str]:
        """The keys of the region's data-plane bucket, read from its S3 server directly."""
        from drillkit.targets.sandbox.s3_service import current_objects, s3_client

        state = json.loads(self.sandbox_state.read_text())
        return set(current_objects(s3_client(state["regions"][region]["s3_port"])))

    def answering_region(self) -> str:
        with urllib.request.urlopen(self.env["DRILLKIT_APP_URL"] + "/health", timeout=5) as resp:
            return resp.headers["X-Region"]

    def chaos_run(self, experiment: Path, folder: Path, scenario: Path, *options: str) -> dict:
        """Plain `chaos run` of a shipped experiment, on an aws target attached for it: the journal."""
        pointer = folder / "aws-pointer"
        attach = self.cli("sandbox", "up", "--scenario", str(scenario), "--pointer", str(pointer), env=self.env)
        assert attach.returncode == 0, attach.stderr
        state = attach.stdout.strip().splitlines()[-1].partition("=")[2]
        try:
            journal = folder / "journal.json"
            chaos = subprocess.run([str(Path(sys.executable).parent / "chaos"), "--no-log-file", "run", *options,
                                    "--journal-path", str(journal), str(experiment)],
                                   cwd=folder, capture_output=True, text=True, timeout=300,
                                   env={**os.environ, **self.env, "DRILLKIT_SANDBOX": state})
            assert chaos.returncode == 0, chaos.stdout[-3000:] + chaos.stderr[-3000:]
            return json.loads(journal.read_text())
        finally:
            detach = self.cli("sandbox", "down", "--pointer", str(pointer))
            assert detach.returncode == 0, detach.stderr

    def down(self) -> None:
        down = self.cli("sandbox", "down", "--pointer", str(self.pointer), timeout=120)
        assert down.returncode == 0, down.stderr


@pytest.fixture
def emulated(tmp_path, drillkit_cli, no_leftovers):
    account = Emulated(tmp_path, drillkit_cli)
    try:
        yield account
    finally:
        account.down()


def with_planted_secret(scenario: Path, folder: Path) -> Path:
    """The shipped scenario, its experiment given a `secrets` block holding a planted value."""
    experiment = json.loads((scenario.parent / yaml.safe_load(scenario.read_text())["experiment"]).resolve().read_text())
    experiment["secrets"] = {"aws": {"aws_secret_access_key": PLANTED_SCENARIO_SECRET}}
    (folder / "experiment.json").write_text(json.dumps(experiment))
    doc = yaml.safe_load(scenario.read_text())
    doc["experiment"] = str(folder / "experiment.json")
    doc["load"]["workload"] = str((scenario.parent / doc["load"]["workload"]).resolve())
    out = folder / scenario.name
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def read_requests(folder: Path) -> list[dict]:
    return [op for path in sorted((folder / REQUESTS_DIR).glob("*.jsonl")) for op in read_jsonl(path)]


def everything_in(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def test_plan_lists_every_mutating_call_and_makes_none(emulated, drillkit_cli):
    for scenario, expected in ((REGION_LOSS, {"fis.StartExperiment", "rds.PromoteReadReplica",
                                              "route53.ChangeResourceRecordSets"}),
                               (FIS_CUT, {"fis.StartExperiment"}),
                               (S3_PAUSE, {"s3.DeleteBucketReplication", "fis.StartExperiment",
                                           "rds.PromoteReadReplica", "route53.ChangeResourceRecordSets"})):
        before = len(emulated.mutating())
        plan = drillkit_cli("plan", str(scenario), env=emulated.env)
        assert plan.returncode == 0, plan.stderr
        planned = {line.split()[2] for line in plan.stdout.splitlines() if line.strip().startswith("would call")}
        assert planned == expected, plan.stdout
        assert "undone by:" in plan.stdout and "none was made" in plan.stdout
        assert len(emulated.mutating()) == before == 0, emulated.mutating()


def test_region_loss_drill_measures_the_failover_and_trails_every_call(emulated, drillkit_cli, tmp_path):
    before = emulated.snapshot()
    scenario = with_planted_secret(REGION_LOSS, tmp_path)
    out = tmp_path / "evidence"
    env = {**emulated.env, "AWS_SECRET_ACCESS_KEY": PLANTED_ENV_SECRET}
    run = drillkit_cli("run", str(scenario), "--out", str(out), timeout=400, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads((out / "summary.json").read_text())
    m = summary["measures"]

    # t_fault is the end of the FIS activity (the experiment running), RTO measured after it
    events = read_events(out)
    fault = next(e for e in events if e["kind"] == "fault.injected")
    fis_end = next(e for e in events if e["kind"] == "activity.end" and e["name"] == "lose-primary-region")
    assert fault["fault"] == "region-loss" and abs(m["t_fault"] - fault["t"]) < 1e-6
    assert fault["t"] <= fis_end["t"]
    assert m["rto_s"] is not None and m["rto_s"] > 0

    # lost writes: the acknowledged writes the promoted replica lacks, read from PostgreSQL directly
    acked = {op["key"] for op in read_requests(out) if op["op"] == "write" and op["ok"]}
    in_b, in_a = emulated.keys("B"), emulated.keys("A")
    truly_lost = acked - in_b
    assert m["writes_lost"] == len(truly_lost)
    assert truly_lost <= in_a  # each was acknowledged by the primary, then lost with the region
    assert m["records_unexpected"] == 0

    # the call trail: every mutating call the account received, with its request id
    trail = [c for c in read_aws_calls(out) if c["mutating"]]
    received = emulated.mutating()
    assert [(c["service"], c["operation"]) for c in trail] == [(c["service"], c["operation"]) for c in received]
    assert [c["operation"] for c in trail] == ["StartExperiment", "PromoteReadReplica", "ChangeResourceRecordSets",
                                               "StopExperiment"]
    assert all(c["request_id"] and c["ok"] and c["account"] == "123456789012" for c in trail)
    report = (out / "report.html").read_text()
    assert "who did what" in report and all(c["request_id"] in report for c in trail)

    # the provenance says emulated; no credential appears anywhere in the evidence
    assert json.loads((out / "provenance.json").read_text())["versions"]["aws"] == "emulated"
    text = everything_in(out)
    assert PLANTED_ENV_SECRET not in text and PLANTED_SCENARIO_SECRET not in text

    # rollbacks: the FIS experiment stopped, health checks and the rule as they were; the failover
    # itself (promotion, PRIMARY record) is the drill's outcome and stays
    after = emulated.snapshot()
    assert after["running_experiments"] == [] and after["health_checks"] == before["health_checks"]
    assert after["replication"] == before["replication"] and after["alarms"] == before["alarms"]
    replica = emulated.client("rds", "us-west-2").describe_db_instances(
        DBInstanceIdentifier="roadcall-db-replica")["DBInstances"][0]
    assert "ReadReplicaSourceDBInstanceIdentifier" not in replica


def test_fis_cut_under_drillkit_run_and_plain_chaos_run_leaves_the_account_as_it_was(emulated, drillkit_cli, tmp_path):
    before = emulated.snapshot()
    out = tmp_path / "evidence"
    run = drillkit_cli("run", str(FIS_CUT), "--out", str(out), timeout=300, env=emulated.env)
    assert run.returncode == 0, run.stdout + run.stderr
    m = json.loads((out / "summary.json").read_text())["measures"]
    assert m["writes_lost"] == 0 and m["rto_s"] == 0
    lag = [line.split(",") for line in (out / "lag.csv").read_text().splitlines()[1:]]
    assert lag and max(float(row[2]) for row in lag) > 1.0  # the replica fell behind during the cut
    assert emulated.snapshot() == before

    # the same experiment under plain `chaos run`, on an attached aws target
    journal = emulated.chaos_run(ROOT / "experiments" / "aws" / "fis-replication-cut.json", tmp_path, FIS_CUT)
    assert journal["status"] == "completed"
    assert emulated.snapshot() == before


def test_s3_pause_then_region_loss_loses_the_objects_written_since_the_pause(emulated, drillkit_cli, tmp_path):
    """The replication rule removed, 5 s of load, the region lost: S3 replicates only what is
    written while a rule is enabled, so the objects acknowledged since the pause are lost. Ground
    truth: region B's bucket and database, read directly, against the clients' record."""
    before = emulated.snapshot()
    out = tmp_path / "evidence"
    run = drillkit_cli("run", str(S3_PAUSE), "--out", str(out), timeout=400, env=emulated.env)
    assert run.returncode == 0, run.stdout + run.stderr
    m = json.loads((out / "summary.json").read_text())["measures"]
    events = read_events(out)
    t_pause = next(e["t"] for e in events if e["kind"] == "fault.injected" and e["fault"] == "object-replication-paused")
    t_fault = m["t_fault"]
    assert t_fault == next(e["t"] for e in events if e["kind"] == "fault.injected" and e["fault"] == "region-loss")
    assert t_fault - t_pause >= 5.0  # the pause the experiment held before the region was lost

    ops = read_requests(out)
    acked_objects = [op for op in ops if op["op"] == "obj_write" and op["ok"]]
    in_b = {f"obj/{key}" for key in emulated.objects("B")}
    truly_lost = [op for op in acked_objects if op["key"] not in in_b]
    store = m["rpo_by_store"]["objects"]
    assert store["writes_lost"] == len({op["key"] for op in truly_lost}) > 0
    assert store["writes_acked"] == len(acked_objects)
    # every object acknowledged between the pause and the region loss is lost; none after the failover
    window = [op for op in acked_objects if op["t0"] > t_pause and op["t1"] < t_fault]
    assert window and all(op["key"] not in in_b for op in window)
    assert all(op["key"] in in_b for op in acked_objects if op["t0"] > t_fault and op["region"] == "B")
    # the objects' RPO is the pause (the earliest lost object), the records' the database's lag
    earliest = min(op["t1"] for op in truly_lost if op["t1"] <= t_fault)
    assert store["rpo_s"] == pytest.approx(t_fault - earliest, abs=1e-5)
    assert store["rpo_s"] >= t_fault - t_pause - 0.5
    records = m["rpo_by_store"]["records"]
    acked_records = {op["key"] for op in ops if op["op"] == "write" and op["ok"]}
    assert records["writes_lost"] == len(acked_records - emulated.keys("B"))
    assert records["rpo_s"] < store["rpo_s"] and m["rpo_s"] == store["rpo_s"]
    # lag.csv carries the replication rule's S3 metrics (OperationsPendingReplication / ReplicationLatency)
    lag = [line.split(",") for line in (out / "lag.csv").read_text().splitlines()[1:]]
    assert any(row[4] != "" for row in lag)
    # the rollbacks put the rule back and stopped the experiment; the failover itself stays
    after = emulated.snapshot()
    assert after["replication"] == before["replication"] and after["running_experiments"] == []
    assert after["health_checks"] == before["health_checks"] and after["alarms"] == before["alarms"]


@pytest.mark.parametrize("experiment, scenario", [("roadcall-region-loss.json", REGION_LOSS),
                                                  ("s3-pause-then-region-loss.json", S3_PAUSE)])
def test_region_loss_experiments_under_plain_chaos_run(emulated, tmp_path, experiment, scenario):
    """The shipped region-loss experiments as a Chaos Toolkit user runs them: the replica promoted,
    the Route 53 answer moved to region B, the fault stopped, and the account left as it was but for
    the failover (the PRIMARY record and the promoted replica)."""
    before = emulated.snapshot()
    journal = emulated.chaos_run(ROOT / "experiments" / "aws" / experiment, tmp_path, scenario)
    assert journal["status"] == "completed" and all(r["status"] == "succeeded" for r in journal["rollbacks"])
    assert emulated.answering_region() == "B"
    replica = emulated.client("rds", "us-west-2").describe_db_instances(
        DBInstanceIdentifier="roadcall-db-replica")["DBInstances"][0]
    assert "ReadReplicaSourceDBInstanceIdentifier" not in replica
    effects = [e["effect"] for e in emulated.info()["effects"]]
    assert "db.promoted" in effects and "routing.switched" in effects
    after = emulated.snapshot()
    assert after["records"] != before["records"]  # the failover pair swapped: the drill's outcome
    assert {k: v for k, v in after.items() if k != "records"} == {k: v for k, v in before.items() if k != "records"}


def test_alarm_in_alarm_trips_the_safeguard_and_the_rollbacks_restore_the_account(emulated, tmp_path):
    """A watched alarm going to ALARM is recorded with CloudWatch's change time and the drill goes
    on; a stop-condition alarm going to ALARM then stops it (exit 3) and the rollbacks run."""
    before = emulated.snapshot()
    doc = yaml.safe_load(FIS_CUT.read_text())
    doc["experiment"] = str((FIS_CUT.parent / doc["experiment"]).resolve())
    doc["load"]["workload"] = str((FIS_CUT.parent / doc["load"]["workload"]).resolve())
    doc["system"]["aws"]["watch_alarms"] = ["roadcall-s3-replication"]
    scenario = tmp_path / "watched.yaml"
    scenario.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = tmp_path / "evidence"

    def events() -> list[dict]:
        return read_events(out) if (out / "events.jsonl").exists() else []

    def wait_for(condition) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not condition():
            time.sleep(0.1)
        assert condition()

    drill = subprocess.Popen([sys.executable, "-m", "drillkit.cli", "run", str(scenario), "--out", str(out)],
                             cwd=ROOT, env={**os.environ, **emulated.env}, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: any(e["kind"] == "fault.injected" for e in events()))
        east, west = emulated.client("cloudwatch", "us-east-1"), emulated.client("cloudwatch", "us-west-2")
        t_before = time.time()
        east.set_alarm_state(AlarmName="roadcall-s3-replication", StateValue="ALARM", StateReason="test: detection")
        t_after = time.time()
        wait_for(lambda: any(e["kind"] == "alarm.state" and e["alarm"] == "roadcall-s3-replication"
                             and e["state"] == "ALARM" for e in events()))
        assert drill.poll() is None  # a watched alarm does not stop the drill
        west.set_alarm_state(AlarmName="roadcall-replica-lag", StateValue="ALARM", StateReason="test: replica lag over 5 s")
        output, _ = drill.communicate(timeout=180)
    finally:
        if drill.poll() is None:
            drill.kill()
            drill.wait()
    assert drill.returncode == 3, output
    tripped = [e for e in read_events(out) if e["kind"] == "safeguard.tripped"]
    assert tripped and "roadcall-replica-lag" in tripped[0]["reason"], output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "aborted"
    raised = summary["measures"]["alarms_raised"]
    assert [(a["alarm"], a["stops_drill"]) for a in raised] == [("roadcall-s3-replication", False),
                                                               ("roadcall-replica-lag", True)]
    assert t_before - 1.0 < raised[0]["raised_at"] < t_after + 1.0  # CloudWatch's change time (ms resolution)
    assert raised[0]["after_fault_s"] == pytest.approx(raised[0]["raised_at"] - summary["measures"]["t_fault"])
    assert "Alarms raised" in (out / "report.html").read_text()
    for client, name in ((east, "roadcall-s3-replication"), (west, "roadcall-replica-lag")):
        client.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="test: reset")
    assert emulated.snapshot() == before  # the experiment stopped by the rollbacks, nothing else changed


def test_preflight_refuses_before_any_mutating_call(emulated, drillkit_cli, tmp_path):
    def variant(name: str, change) -> Path:
        return copy_scenario(FIS_CUT, tmp_path, name, lambda doc: change(doc["system"]["aws"]))

    cases = {
        "other-account": (lambda aws: aws.update(accounts=["999999999999"]), "system.aws.accounts",
                          "123456789012, which is not in system.aws.accounts"),
        "missing-replica": (lambda aws: aws["database"].update(replica="no-such-replica"),
                            "system.aws.database.replica", "'no-such-replica' not found"),
        "missing-template": (lambda aws: aws.update(fis_templates=["no-such-template"]), "system.aws.fis_templates",
                             "'no-such-template'"),
        "untagged": (lambda aws: aws.update(required_tag={"drill": "other-value"}), "system.aws.database.primary",
                     "lacks the required tag drill=other-value"),
    }
    for name, (change, field, words) in cases.items():
        run = drillkit_cli("run", str(variant(name, change)), "--out", str(tmp_path / f"out-{name}"), env=emulated.env)
        assert run.returncode == 2, (name, run.stdout, run.stderr)
        line = run.stderr.strip()
        assert len(line.splitlines()) == 1 and field in line and words in line, (name, line)
        assert not (tmp_path / f"out-{name}").exists()
    assert emulated.mutating() == []

    # a stop condition already in ALARM: the drill would stop at once, so it does not start
    west = emulated.client("cloudwatch", "us-west-2")
    west.set_alarm_state(AlarmName="roadcall-replica-lag", StateValue="ALARM", StateReason="test: firing before")
    run = drillkit_cli("run", str(FIS_CUT), "--out", str(tmp_path / "out-firing"), env=emulated.env)
    west.set_alarm_state(AlarmName="roadcall-replica-lag", StateValue="OK", StateReason="test: reset")
    assert run.returncode == 2, run.stdout + run.stderr
    line, = run.stderr.strip().splitlines()
    assert "system.aws.alarms" in line and "roadcall-replica-lag (us-west-2) is in ALARM already" in line, line
    assert not (tmp_path / "out-firing").exists()
    assert [c["operation"] for c in emulated.mutating()] == ["SetAlarmState", "SetAlarmState"]  # the test's own


def test_a_real_account_needs_yes(tmp_path, drillkit_cli, no_leftovers):
    """An account that is not drillkit's emulated one counts as real: a plain moto server (no
    emulation marker), holding the same resources, is refused without --yes."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        url = f"http://127.0.0.1:{server._server.server_address[1]}"
        env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
               "AWS_REGION": "us-east-1", "DRILLKIT_APP_URL": "http://127.0.0.1:9"}
        import boto3

        session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y")
        rds = session.client("rds", region_name="us-east-1", endpoint_url=url)
        primary = rds.create_db_instance(DBInstanceIdentifier="roadcall-db", Engine="postgres",
                                         DBInstanceClass="db.t3.micro", AllocatedStorage=20,
                                         Tags=[{"Key": "drill", "Value": "allowed"}])["DBInstance"]
        session.client("rds", region_name="us-west-2", endpoint_url=url).create_db_instance_read_replica(
            DBInstanceIdentifier="roadcall-db-replica", SourceDBInstanceIdentifier=primary["DBInstanceArn"],
            Tags=[{"Key": "drill", "Value": "allowed"}])
        doc = yaml.safe_load(FIS_CUT.read_text())
        doc["experiment"] = str((FIS_CUT.parent / doc["experiment"]).resolve())
        doc["load"]["workload"] = str((FIS_CUT.parent / doc["load"]["workload"]).resolve())
        doc["system"]["aws"].update(alarms=[], fis_templates=[])
        path = tmp_path / "real.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        run = drillkit_cli("run", str(path), "--out", str(tmp_path / "out"), env=env)
        assert run.returncode == 2, run.stderr
        assert "is a real AWS account: pass --yes" in run.stderr and not (tmp_path / "out").exists()
        # with --yes the account is accepted; the (absent) endpoint is what refuses now
        confirmed = drillkit_cli("run", str(path), "--yes", "--out", str(tmp_path / "out"), env=env)
        assert confirmed.returncode == 2 and "system.endpoint" in confirmed.stderr, confirmed.stderr
    finally:
        server.stop()
    shutil.rmtree(tmp_path / "out", ignore_errors=True)


def test_the_guard_refuses_a_region_off_the_allowlist_and_a_mutation_in_plan_mode(tmp_path):
    """Unit level: the botocore hooks, without any server (the call is refused before it is sent)."""
    from drillkit.scenario.schema import AwsAccount
    from drillkit.targets.aws.account import Account
    from drillkit.targets.aws.session import MutationBlocked, RegionNotAllowed

    spec = AwsAccount.model_validate({"accounts": ["123456789012"], "endpoint_url": "http://127.0.0.1:9",
                                      "regions": {"primary": "us-east-1", "secondary": "us-west-2"}})
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "x")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "y")
    account = Account(spec, trail=tmp_path / "trail.jsonl", blocking=True)
    with pytest.raises(RegionNotAllowed, match="ap-south-1"):
        account.client("rds", "ap-south-1").describe_db_instances()
    with pytest.raises(MutationBlocked, match="PromoteReadReplica"):
        account.client("rds", "us-west-2").promote_read_replica(DBInstanceIdentifier="x")
    with pytest.raises(MutationBlocked):
        account.client("rds", "us-east-1").modify_db_instance(DBInstanceIdentifier="x", MasterUserPassword="s3cr3t-pw!")
    trail = [json.loads(line) for line in (tmp_path / "trail.jsonl").read_text().splitlines()]
    assert [(c["operation"], c["ok"]) for c in trail] == [
        ("DescribeDBInstances", False), ("PromoteReadReplica", False), ("ModifyDBInstance", False)]
    assert trail[2]["params"]["MasterUserPassword"] == "***" and "s3cr3t-pw!" not in json.dumps(trail)


def test_shipped_aws_experiments_pass_chaos_validate_and_scenarios_validate(drillkit_cli, tmp_path):
    env = {"DRILLKIT_APP_URL": "http://127.0.0.1:9"}
    for experiment in sorted((ROOT / "experiments" / "aws").glob("*.json")):
        check = subprocess.run([str(Path(sys.executable).parent / "chaos"), "--no-log-file", "validate", str(experiment)],
                               cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, **env})
        assert check.returncode == 0, (experiment.name, check.stdout[-2000:], check.stderr[-2000:])
    scenarios = sorted((ROOT / "scenarios" / "aws").glob("*.yaml"))
    assert len(scenarios) >= 2
    for scenario in scenarios:
        valid = drillkit_cli("validate", str(scenario), env=env)
        assert valid.returncode == 0, valid.stderr
    without = {k: v for k, v in os.environ.items() if k != "DRILLKIT_APP_URL"}
    unset = subprocess.run([sys.executable, "-m", "drillkit.cli", "validate", str(scenarios[0])], cwd=ROOT,
                           capture_output=True, text=True, timeout=120, env=without)
    assert unset.returncode == 2 and "system.endpoint: ${DRILLKIT_APP_URL} is not set" in unset.stderr, unset.stderr


def test_the_health_check_rehearsal_measures_its_cost_and_rolls_everything_back(emulated, drillkit_cli, tmp_path):
    """scenarios/aws/health-check-rehearsal.yaml under `drillkit run`: inverting the primary's health
    check moves the router's answer after its threshold (as Route 53 does) and its status reads
    Failure; writes fail while the answer is the read replica, and nothing is lost; removing the
    replication rule disables the replicator; a point-in-time restore makes a new instance; the
    probes read the alarms and FIS; the rollbacks put the account back, the restored instance deleted."""
    before = emulated.snapshot()
    out = tmp_path / "evidence"
    run = drillkit_cli("run", str(ROOT / "scenarios" / "aws" / "health-check-rehearsal.yaml"), "--out", str(out),
                       timeout=400, env=emulated.env)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = json.loads((out / "summary.json").read_text())
    m = summary["measures"]
    journal = json.loads((out / "journal.json").read_text())
    assert journal["status"] == "completed" and all(r["status"] == "succeeded" for r in journal["rollbacks"])
    output = {r["activity"]["name"]: r["output"] for r in journal["run"] + journal["rollbacks"]}
    assert output["fis-experiments"] == {} and output["alarms-in-alarm-after"] == []
    assert {a["alarm"] for a in output["alarm-states-before"]} >= {"roadcall-replica-lag"}
    restored = output["restore-primary-database"]
    assert restored["restored"] == "drillkit-restore-roadcall-db" and restored["took_s"] >= 0
    assert output["delete-restored-instance"] == ["drillkit-restore-roadcall-db"]
    status = output["primary-health-check-status"]
    assert status["healthy"] is False and status["statuses"][0].startswith("Failure: inverted")
    r53 = emulated.client("route53")
    observed = r53.get_health_check_status(HealthCheckId=status["health_check"])["HealthCheckObservations"]
    assert observed[0]["StatusReport"]["Status"].startswith("Success")  # restored: region A answers again
    effects = [(e["effect"], e.get("inverted", e.get("rule_enabled"))) for e in emulated.info()["effects"]]
    assert effects == [("health_check.inverted", True), ("objects.replication", False),
                       ("health_check.inverted", False), ("objects.replication", True)], effects
    # the cost of the rehearsal, from the clients' record: writes failed while Route 53 answered
    # with the read replica, reads did not, nothing was lost, and the answer came back to A
    fault = next(e for e in read_events(out) if e["kind"] == "fault.injected")
    assert fault["fault"] == "health-check-inverted"
    assert m["rto_write_s"] > 0 and m["writes_lost"] == 0 and m["records_unexpected"] == 0
    assert not any(op["op"] == "write" and op["ok"] and op["region"] == "B" for op in read_requests(out))
    assert summary["verdict"] == "pass", summary["reasons"]
    assert emulated.answering_region() == "A"
    assert emulated.snapshot() == before


def test_aurora_cluster_failover_names_its_target_and_waits_for_the_new_writer(tmp_path):
    """The aurora-cluster path against moto's RDS (no sandbox: the effect is moto's own state):
    resolve, plan and FailoverDBCluster with TargetDBInstanceIdentifier, done once the named
    instance is the cluster's writer; the trail names the call."""
    import boto3
    from moto.server import ThreadedMotoServer

    from drillkit.scenario.schema import AwsAccount
    from drillkit.targets.aws import operations as ops
    from drillkit.targets.aws.account import Account

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        url = f"http://127.0.0.1:{server._server.server_address[1]}"
        rds = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y").client(
            "rds", region_name="us-east-1", endpoint_url=url)
        tag = [{"Key": "drill", "Value": "allowed"}]
        rds.create_db_cluster(DBClusterIdentifier="roadcall-aurora", Engine="aurora-postgresql",
                              MasterUsername="admin", MasterUserPassword="not-a-secret-1", Tags=tag)
        for name in ("roadcall-aurora-1", "roadcall-aurora-2"):
            rds.create_db_instance(DBInstanceIdentifier=name, DBClusterIdentifier="roadcall-aurora",
                                   Engine="aurora-postgresql", DBInstanceClass="db.r6g.large", Tags=tag)
        spec = AwsAccount.model_validate({
            "accounts": ["123456789012"], "endpoint_url": url, "required_tag": {"drill": "allowed"},
            "regions": {"primary": "us-east-1", "secondary": "us-west-2"},
            "database": {"kind": "aurora-cluster", "primary": "roadcall-aurora", "replica": "roadcall-aurora-2"}})
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "x")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "y")
        planning = Account(spec, blocking=True)
        planning.resolve()
        call, = ops.plan_promote_database(planning)
        assert (call.operation, call.params) == ("FailoverDBCluster", {
            "DBClusterIdentifier": "roadcall-aurora", "TargetDBInstanceIdentifier": "roadcall-aurora-2"})
        account = Account(spec, trail=tmp_path / "trail.jsonl", book=tmp_path / "book.json")
        done = ops.promote_database(account, timeout=30)
        assert done["operation"] == "FailoverDBCluster" and done["resource"] == "roadcall-aurora-2"
        members = rds.describe_db_clusters(DBClusterIdentifier="roadcall-aurora")["DBClusters"][0]["DBClusterMembers"]
        assert {m["DBInstanceIdentifier"]: m["IsClusterWriter"] for m in members} == {
            "roadcall-aurora-1": False, "roadcall-aurora-2": True}
        trail = [json.loads(line) for line in (tmp_path / "trail.jsonl").read_text().splitlines()]
        assert [c["operation"] for c in trail if c["mutating"]] == ["FailoverDBCluster"]
    finally:
        server.stop()
