"""The canary drives the drill's own workload: the workload mapping, or on the sandbox the sandbox's
records API. With the user's own Locust file against a system drillkit did not build it has
nothing it can drive: it is off, and `drillkit validate` and `drillkit run` say why in one line
(it used to send the sandbox's `POST /records` to the user's endpoint, failing from warm-up on)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from support.kvsystem import WORKLOAD, kill_primary, route_to_west, scenario

CANARY_OFF = "note: canary off: load.locustfile is the user's own Locust file and system.kind is external"

KV_CLIENT = f'''
from locust import constant, task

from drillkit.load.users import DrillUser
from drillkit.load.workload import Workload


class KvClient(DrillUser):
    """The user's own client of the kv service's API."""
    wait_time = constant(0.05)
    workload = Workload.model_validate({json.dumps({k: v for k, v in WORKLOAD.items() if k in ("write", "read")})})

    @task(2)
    def put(self):
        self.write_record()

    @task(1)
    def get(self):
        self.read_record()
'''


def with_locustfile(path: Path) -> Path:
    doc = yaml.safe_load(path.read_text())
    doc["load"].pop("workload")
    doc["load"]["locustfile"] = "kv_client.py"
    (path.parent / "kv_client.py").write_text(KV_CLIENT)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_validate_says_in_one_line_when_the_canary_has_nothing_to_drive(tmp_path, drillkit_cli):
    class Stub:
        endpoint = primary_url = standby_url = "http://127.0.0.1:9"
        primary_pid = 1
        ground_truth = "/nonexistent/ground-truth.json"

    mapped = scenario(tmp_path, Stub(), [kill_primary(Stub())])
    done = drillkit_cli("validate", str(mapped))
    assert done.returncode == 0 and "canary" not in done.stdout + done.stderr, done.stdout + done.stderr

    custom = with_locustfile(mapped)
    done = drillkit_cli("validate", str(custom))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if "canary" in line] == [f"{custom}: {CANARY_OFF}, so the canary has no workload "
                                                             "mapping (load.workload) to drive; RTO's resolution is "
                                                             "the Locust users' (set load.canary: 0 to say so)"]
    assert lines[-1] == f"{custom}: valid"

    doc = yaml.safe_load(custom.read_text())
    doc["load"]["canary"] = 0   # turned off by the user: nothing to say
    custom.write_text(yaml.safe_dump(doc))
    done = drillkit_cli("validate", str(custom))
    assert done.returncode == 0 and "canary" not in done.stdout, done.stdout


def test_a_sandbox_drill_with_its_own_locustfile_keeps_its_canary(drillkit_cli, no_leftovers):
    done = drillkit_cli("validate", "scenarios/e-commerce/warm-standby-phased-activation.yaml")
    assert done.returncode == 0 and "canary" not in done.stdout, done.stdout


def test_with_the_users_own_locustfile_the_canary_is_off_and_sends_nothing(kv_system, kv_folder, drillkit_cli):
    path = with_locustfile(scenario(kv_folder, kv_system, [kill_primary(kv_system), route_to_west(kv_system)]))
    out = kv_folder / "evidence"
    done = drillkit_cli("run", str(path), "--out", str(out), env={"KV_AUDIT_DSN": kv_system.dsn}, timeout=300)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert sum(CANARY_OFF in line for line in done.stderr.splitlines()) == 1, done.stderr

    assert not (out / "requests" / "canary.jsonl").exists()
    ops = [json.loads(line) for f in (out / "requests").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert not [op for op in ops if op.get("client") == "canary" or op["key"].startswith("canary-")]
    # the load was the user's client on the service's own API: acknowledged PUT /kv writes, served by its regions
    writes = [op for op in ops if op["op"] == "write" and op["ok"]]
    assert len(writes) > 50 and {op["status"] for op in writes} == {200}
    assert {op["region"] for op in writes} <= {"east", "west"}


def test_the_warmup_waits_for_the_loads_first_operation_not_the_canarys(tmp_path):
    """CI: Locust took longer to start than the 2 s warm-up, the canary's history counted as the
    load's first operation, and the fault came before any user had sent a request (every object
    write of the objects drill after the region loss). The canary's file is not the load's."""
    import pytest

    from drillkit.errors import ServiceError
    from drillkit.evidence.recorder import CANARY_CLIENT, client_file
    from drillkit.load import LoadRun, LoadSettings

    run = LoadRun(tmp_path / "locustfile.py", LoadSettings(), users=1, spawn_rate=1, run_time=1, evidence=tmp_path)
    run.requests_dir.mkdir(parents=True)
    client_file(tmp_path, CANARY_CLIENT).write_text('{"op": "write"}\n')
    with pytest.raises(ServiceError, match="Locust made no request"):
        run.wait_first_ops(timeout=0.3)
    client_file(tmp_path, "vm-1234").write_text('{"op": "write"}\n')
    assert run.wait_first_ops(timeout=5) > 0
