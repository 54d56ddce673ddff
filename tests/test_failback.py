"""Failback on the real sandbox: the lost region rebuilt as a standby, reads moved back in steps,
then a lossless switchover of the primary; and the failback drill end to end."""

from __future__ import annotations

import http.client
import subprocess
import sys
from collections import Counter
from urllib.parse import urlsplit

import psycopg
import pytest
from support.drills import first, ops, run_drill, variant

from support.drills import write_record
from support.scenario_copy import ROOT
from drillkit.chaos import CONFIG_KEY, actions, failback
from drillkit.evidence import read_events
from drillkit.targets.sandbox import postgres as pg
from drillkit.targets.sandbox.system import Sandbox


@pytest.fixture
def box(manual_sandbox):
    return manual_sandbox


write = write_record


def keys_in(box: Sandbox, region: str) -> set[str]:
    with psycopg.connect(pg.dsn(box.state.regions[region].db_port), autocommit=True) as conn:
        return {k for (k,) in conn.execute("SELECT key FROM records")}


def read_regions(box: Sandbox, key: str, count: int) -> Counter:
    """Which region answered each of `count` reads through the global endpoint."""
    url = urlsplit(box.endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    seen: Counter = Counter()
    try:
        for _ in range(count):
            conn.request("GET", f"/records/{key}")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            seen[resp.getheader("X-Region")] += 1
    finally:
        conn.close()
    return seen


def test_failback_rebuilds_shifts_reads_and_switches_over(box):
    cfg = {CONFIG_KEY: str(box.state_file)}
    before = {f"before-{i}" for i in range(20)}
    for key in sorted(before):
        assert write(box, key) == "A"

    actions.kill_region("A", configuration=cfg)
    actions.promote_standby("B", configuration=cfg)
    actions.switch_routing("B", configuration=cfg)
    during = {f"during-{i}" for i in range(20)}
    for key in sorted(during):
        assert write(box, key) == "B"

    rebuilt = failback.rebuild_as_standby("A", configuration=cfg)
    assert rebuilt["source"] == "B" and rebuilt["link"] == "repl-B-A"
    assert set(rebuilt["retired"]) == {"postgres-A", "app-A"}
    failback.wait_caught_up("A", configuration=cfg)
    box._reload()
    assert box.state.regions["A"].role == "standby" and "repl-B-A" in box.state.links
    assert before | during <= keys_in(box, "A")
    assert box.region_health("A").role == "standby"
    assert box.serving_region() == "B", "the rebuilt standby must not take the writes"

    failback.shift_reads("A", 50, configuration=cfg)
    seen = read_regions(box, "during-0", 60)
    assert seen["A"] >= 10 and seen["B"] >= 10, seen
    assert write(box, "while-shifted") == "B"

    moved = failback.switchover("A", configuration=cfg)
    box._reload()
    assert moved["old"] == "B" and moved["promoted_at"] < moved["routed_at"]
    assert box.state.primary_region == "A"
    assert {r: s.role for r, s in box.state.regions.items()} == {"A": "primary", "B": "standby"}
    assert box.routing().read_shares == {}
    assert write(box, "after") == "A"
    assert read_regions(box, "after", 10) == Counter(A=10)
    streaming = box.replication_status()
    assert [r.state for r in streaming] == ["streaming"], streaming
    assert before | during | {"while-shifted", "after"} <= keys_in(box, "A")
    assert box.region_health("B").role == "standby"

    kinds = [e["kind"] for e in read_events(box.events_file.parent)]
    for kind in ("failback.rebuilt", "failback.caught_up", "routing.shift", "db.switchover"):
        assert kind in kinds, kind
    names = {p.name for p in box.state.processes}
    assert {"postgres-A", "app-A", "postgres-B", "app-B", "repl-B-A"} <= names


def test_failback_drill_end_to_end(tmp_path, drillkit_cli, no_leftovers):
    scenario = variant(tmp_path, "failback.yaml", "failback-test")
    out = tmp_path / "failback"
    code, summary, events = run_drill(drillkit_cli, scenario, out)
    assert code == 0, summary["reasons"]
    assert summary["verdict"] == "pass"
    m = summary["measures"]
    assert m["records_corrupt"] == 0 and m["writes_lost_after_fault"] == 0

    fault = first(events, "fault.injected", fault="region-loss")
    rebuilt = first(events, "failback.rebuilt", region="A")
    caught_up = first(events, "failback.caught_up", region="A")
    shifts = [(e["region"], e["percent"]) for e in events if e["kind"] == "routing.shift"]
    switched = first(events, "db.switchover", to="A")
    assert fault["t"] < rebuilt["t"] < caught_up["t"] < switched["t"]
    assert shifts[:3] == [("A", 10), ("A", 50), ("A", 0)]
    assert first(events, "routing.switch", to="A")["t"] > switched["stopping_at"]

    done = ops(out)
    served = {op["region"] for op in done if op["op"] == "read" and op["ok"] and op["t1"] > rebuilt["t"]}
    assert served == {"A", "B"}
    # rebuilding and moving reads back cost nothing; only the switchover stops writes, briefly
    failed = [op for op in done if not op["ok"] and op["t0"] > rebuilt["started"]]
    assert not [op for op in failed if op["t1"] < switched["stopping_at"]]
    assert failed and max(op["t1"] for op in failed) - switched["stopping_at"] < 5
    late = [op for op in done if op["op"] == "write" and op["ok"] and op["t0"] > switched["t"]]
    assert late and {op["region"] for op in late} == {"A"}


def test_failback_experiment_is_valid():
    chaos = [sys.executable, "-m", "chaostoolkit", "validate", str(ROOT / "experiments" / "failback.json")]
    proc = subprocess.run(chaos, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_failback_rebuilds_the_lost_regions_object_store_and_reverses_replication(no_leftovers):
    """The lost region's store died with it: the rebuild starts an empty one that replicates the
    primary's whole history, and the switchover turns replication back towards the DR region."""
    from drillkit.targets.sandbox import s3_service as obj
    from drillkit.net import http_json
    from drillkit.scenario import SandboxSpec

    def put(key: str) -> str:
        status, body = http_json(f"{box.endpoint}/objects/{key}", "PUT", {"payload": key})
        assert status == 201, body
        return body["region"]

    def current(region: str) -> dict[str, bytes]:
        client = box.objects.client(region)
        return {k: obj.read_object(client, k)[0] for k in obj.current_objects(client)}

    box = Sandbox.up(SandboxSpec.model_validate({"routing": {"policy": "manual"}, "objects": {}}))
    try:
        assert {put(f"before/{i}") for i in range(8)} == {"A"}
        box.objects.wait_replicated(timeout=60)
        box.kill_region("A")
        box.promote_standby("B")
        box.switch_routing("B")
        assert {put(f"during/{i}") for i in range(5)} == {"B"}
        assert http_json(f"{box.endpoint}/objects/before/0", "DELETE")[0] == 200

        box.rebuild_as_standby("A")
        caught_up = box.wait_caught_up("A")
        assert caught_up.objects_seen >= 8 + 5 + 1
        assert current("A") == current("B") and "before/0" not in current("A") and "during/4" in current("A")

        box.switchover("A")
        assert (box.state.object_source, box.state.object_destination) == ("A", "B")
        assert put("after/0") == "A"
        box.objects.wait_replicated(timeout=60)
        assert current("B")["after/0"] == b"after/0"
        assert len([k for k, _ in box.final_state() if k.startswith("obj/")]) == 8 - 1 + 5 + 1
    finally:
        box.down()
