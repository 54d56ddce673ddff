"""Drilling a system drillkit did not build: `system.kind: external`, through the CLI, on a real service.

The service (tests/external_kv) has its own API (`PUT /kv/{id}` with a JSON body), its own schema
and a deliberate data-loss bug: writes are acknowledged from a write-behind buffer. The test starts
it; the experiment kills its primary with a Chaos Toolkit *process* action (marked as the fault),
waits, and moves the service's own load balancer to the standby with an *http* action. The ground
truth comes from the service itself: the crash helper quiesces the primary and records exactly
which acknowledged writes were still buffered, and the lb logs when it switched.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import yaml
from support.kvsystem import OUTAGE_S, kill_primary, pid_gone, route_to_west, scenario, table_rows

from drillkit.evidence import read_events


def alive(pid: int) -> bool:
    return not pid_gone(pid)


def test_an_external_system_is_drilled_to_its_exact_lost_writes_and_rto(kv_system, kv_folder, drillkit_cli):
    path = scenario(kv_folder, kv_system, [kill_primary(kv_system), route_to_west(kv_system)])
    out = kv_folder / "evidence"
    done = drillkit_cli("run", str(path), "--out", str(out), env={"KV_AUDIT_DSN": kv_system.dsn}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    truth = json.loads(kv_system.ground_truth.read_text())
    switches = [json.loads(line) for line in kv_system.switch_log.read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    measures = summary["measures"]
    audit = json.loads((out / "audit.json").read_text())

    # lost writes: exactly the acknowledged writes the primary still held in its buffer
    assert truth["pending"], "the crash lost nothing: the drill would prove nothing"
    assert sorted(audit["lost_keys"]) == truth["pending"]
    assert measures["writes_lost"] == len(truth["pending"])
    # a write the primary acknowledged before the crash may reach its client after t_fault (in flight
    # through the lb): counted apart, and still one of the buffered ones
    assert set(audit["lost_after_fault_keys"]) <= set(truth["pending"])
    assert measures["writes_lost_after_fault"] == len(audit["lost_after_fault_keys"])
    # and the audit read the service's own table: every other acknowledged write is in it
    rows = table_rows(kv_system.dsn)
    assert not set(truth["pending"]) & set(rows)

    # RTO: the outage the test created, from the crash to the lb's switch, within 100 ms
    assert len(switches) == 1 and switches[0]["to"] == "west"
    outage = switches[0]["t"] - truth["t_gate"]
    assert abs(measures["rto_s"] - outage) < 0.1, (measures["rto_s"], outage)
    assert measures["rto_s"] > OUTAGE_S - 0.1

    events = read_events(out)
    fault = [e for e in events if e["kind"] == "fault.injected"]
    assert len(fault) == 1 and fault[0]["fault"] == "primary-loss" and fault[0]["marked"] is True
    assert truth["t_kill"] <= fault[0]["t"] < switches[0]["t"]
    assert [e["fault"] for e in events if e["kind"] == "fault.cleared"] == ["primary-loss"]
    assert {"east", "west"} <= {r["region"] for r in _requests(out)}
    assert json.loads((out / "provenance.json").read_text())["target"] == "external"
    report = (out / "report.html").read_text()
    assert "external: a running system drillkit did not start" in report and kv_system.endpoint in report
    # drillkit never stopped what it did not start: the standby and the lb still run
    assert alive(kv_system.standby_pid) and alive(kv_system.lb_pid)


def _requests(out: Path) -> list[dict]:
    return [json.loads(line) for f in (out / "requests").glob("*.jsonl") for line in f.read_text().splitlines()]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_endpoint_that_does_not_answer_is_refused_before_anything(kv_system, kv_folder, drillkit_cli):
    path = scenario(kv_folder, kv_system, [kill_primary(kv_system)], endpoint=f"http://127.0.0.1:{_closed_port()}")
    out = kv_folder / "evidence"
    done = drillkit_cli("run", str(path), "--out", str(out), env={"KV_AUDIT_DSN": kv_system.dsn})
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{path}: system.endpoint: " in lines[0] and "does not answer" in lines[0], lines
    assert not out.exists() and not kv_system.ground_truth.exists(), "something was started or injected"
    assert alive(kv_system.primary_pid)


def test_a_wrong_audit_dsn_is_refused_before_anything(kv_system, kv_folder, drillkit_cli):
    path = scenario(kv_folder, kv_system, [kill_primary(kv_system)])
    wrong = kv_system.dsn.replace("dbname=kvstore", "dbname=no_such_db")
    assert wrong != kv_system.dsn
    out = kv_folder / "evidence"
    done = drillkit_cli("run", str(path), "--out", str(out), env={"KV_AUDIT_DSN": wrong})
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{path}: system.audit.dsn_env: " in lines[0] and "no_such_db" in lines[0], lines
    unset = drillkit_cli("run", str(path), "--out", str(out), env={"KV_AUDIT_DSN": ""})
    assert unset.returncode == 2 and "KV_AUDIT_DSN is not set" in unset.stderr, unset.stderr
    query = path.read_text().replace("SELECT id, value FROM kv_items", "SELECT id, value FROM no_such_table")
    path.write_text(query)
    bad = drillkit_cli("run", str(path), "--out", str(out), env={"KV_AUDIT_DSN": kv_system.dsn})
    assert bad.returncode == 2, bad.stderr
    line, = bad.stderr.strip().splitlines()
    assert "system.audit.query" in line and "no_such_table" in line, line
    assert not out.exists() and not kv_system.ground_truth.exists()
    assert alive(kv_system.primary_pid)


def test_objects_need_an_object_audit_and_a_wrong_one_is_refused_before_anything(kv_system, kv_folder, drillkit_cli):
    """A mapping that writes objects with nothing to audit them would count every object as lost."""
    path = scenario(kv_folder, kv_system, [kill_primary(kv_system)])
    workload = kv_folder / "workload.yaml"
    doc = yaml.safe_load(workload.read_text())
    doc["obj_write"] = {"method": "PUT", "path": "/blob/{key}", "body": {"value": "{payload}"}}
    doc["weights"]["obj_write"] = 1
    workload.write_text(yaml.safe_dump(doc))
    out = kv_folder / "evidence"
    env = {"KV_AUDIT_DSN": kv_system.dsn}
    done = drillkit_cli("run", str(path), "--out", str(out), env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    line, = done.stderr.strip().splitlines()
    assert f"{path}: system.object_audit: " in line and "every object would count as lost" in line, line
    spec = yaml.safe_load(path.read_text())
    spec["system"]["object_audit"] = {"kind": "postgres", "dsn_env": "KV_AUDIT_DSN",
                                      "query": "SELECT id, value FROM no_such_blobs"}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    bad = drillkit_cli("run", str(path), "--out", str(out), env=env)
    assert bad.returncode == 2, bad.stdout + bad.stderr
    line, = bad.stderr.strip().splitlines()
    assert "system.object_audit.query" in line and "no_such_blobs" in line, line
    assert not out.exists() and not kv_system.ground_truth.exists()
    assert alive(kv_system.primary_pid)


def test_an_action_the_target_cannot_do_fails_naming_the_capability(kv_system, kv_folder, drillkit_cli):
    pause = {"type": "action", "name": "pause-replay",
             "provider": {"type": "python", "module": "drillkit.chaos.actions", "func": "pause_replay",
                          "arguments": {"region": "west"}}}
    path = scenario(kv_folder, kv_system, [pause])
    out = kv_folder / "evidence"
    done = drillkit_cli("run", str(path), "--out", str(out), env={"KV_AUDIT_DSN": kv_system.dsn}, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "fail"
    reason = "the external target lacks the ReplayControl capability this action needs"
    assert any(reason in r for r in summary["reasons"]), summary["reasons"]
    assert reason in done.stdout
    assert alive(kv_system.primary_pid), "nothing was injected"
