"""Region and replication faults on the real sandbox, and the partition drill's split-brain count."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest
from support.drills import first, ops, run_drill, variant

from support.scenario_copy import ROOT
from drillkit.chaos import actions
from drillkit.chaos import observe as probes
from drillkit.evidence import read_events
from drillkit.targets.sandbox import postgres as pg
from drillkit.targets.sandbox.system import Sandbox
from drillkit.scenario import SandboxSpec


@pytest.fixture
def box(no_leftovers):
    sandbox = Sandbox.up(SandboxSpec())
    try:
        yield sandbox
    finally:
        sandbox.down()


def config(box: Sandbox) -> dict:
    return {"drillkit_sandbox": str(box.state_file)}


def events(box: Sandbox) -> list[dict]:
    return read_events(box.events_file.parent)


class Writer:
    """Commits on the primary every 20 ms, so a standby that stops applying visibly falls behind."""

    def __init__(self, box: Sandbox):
        self.port = box.state.regions["A"].db_port
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(pg.dsn(self.port), autocommit=True) as conn:
            while not self.stop.is_set():
                key = uuid.uuid4().hex
                conn.execute("INSERT INTO records (key, payload, checksum, region) VALUES (%s, %s, %s, %s)",
                             (key, key, key, "A"))
                time.sleep(0.02)

    def __enter__(self) -> "Writer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)


def wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {timeout:g} s"
        time.sleep(0.02)


def wait_replayed(box: Sandbox) -> None:
    """The standby has replayed at least one commit of the writer."""
    def replayed() -> bool:
        with psycopg.connect(pg.dsn(box.state.regions["B"].db_port), autocommit=True) as conn:
            return conn.execute("SELECT count(*) > 0 FROM records").fetchone()[0]
    wait_until(replayed, "replayed commit")


def max_lag(box: Sandbox) -> float:
    return max((s.replay_lag_s for s in box.replication_lag()), default=0.0)


def test_freeze_silences_the_region_until_thawed(box):
    cfg = config(box)
    freezer = threading.Thread(target=actions.freeze_region, args=("B",), kwargs={"duration": 1.0,
                                                                                   "configuration": cfg})
    freezer.start()
    wait_until(lambda: any(e["kind"] == "fault.injected" for e in events(box)), "the freeze")
    frozen = box.region_health("B", timeout=0.4)
    freezer.join(60)
    assert not frozen.healthy, frozen
    assert box.region_health("B", timeout=10.0).healthy
    assert actions.thaw_region("B", cfg) == {"region": "B", "thawed": False}

    injected = first(events(box), "fault.injected", fault="region-freeze")
    cleared = [e for e in events(box) if e["kind"] == "fault.cleared" and e.get("fault") == "region-freeze"]
    assert injected["region"] == "B" and set(injected["frozen"]) == {"postgres-B", "app-B"}
    assert len(cleared) == 1
    # thawed once the duration is over, never before; how late depends on the machine's load
    assert 1.0 <= cleared[0]["t"] - injected["t"] < 3.0


def test_teardown_stops_a_frozen_region(box):
    """down() must not hang on, or leak, processes that cannot run their shutdown handlers."""
    actions.freeze_region("A", configuration=config(box))
    assert not box.region_health("A", timeout=0.3).healthy
    started = time.monotonic()
    box.down()
    assert time.monotonic() - started < 60


def test_app_tier_loss_keeps_the_database(box):
    killed = actions.kill_app_tier("A", configuration=config(box))
    assert killed == ["app-A"]
    assert not box.region_health("A", timeout=0.5).healthy
    with psycopg.connect(pg.dsn(box.state.regions["A"].db_port), autocommit=True) as conn:
        assert conn.execute("SELECT NOT pg_is_in_recovery()").fetchone()[0]
    assert box.region_health("B").healthy
    fault = first(events(box), "fault.injected", fault="app-tier-loss")
    assert fault["region"] == "A" and fault["killed"] == ["app-A"]


def test_paused_replay_makes_lag_grow_then_recover(box):
    cfg = config(box)
    with Writer(box):
        wait_replayed(box)  # lag is measured from the last replayed commit: let one be replayed
        actions.pause_replay("B", configuration=cfg)
        time.sleep(1.5)
        paused_lag = max_lag(box)
        paused_bytes = probes.replication_lag_bytes(cfg)
        assert actions.resume_replay("B", configuration=cfg)["resumed"] is True
        deadline = time.monotonic() + 60
        while max_lag(box) > 0.2 and time.monotonic() < deadline:
            time.sleep(0.05)
        resumed_lag = max_lag(box)
    assert paused_lag >= 1.2, paused_lag
    assert paused_bytes > 0
    assert resumed_lag <= 0.2, resumed_lag
    assert actions.resume_replay("B", configuration=cfg)["resumed"] is False
    kinds = [(e["kind"], e.get("fault")) for e in events(box) if e.get("fault") == "replay-paused"]
    assert kinds == [("fault.injected", "replay-paused"), ("fault.cleared", "replay-paused")]


def test_lag_alarm_detects_a_cut_replication_link(box):
    cfg = config(box)
    threshold = 0.5
    with Writer(box):
        wait_replayed(box)
        wait_until(lambda: max_lag(box) < threshold, "a standby that keeps up")
        actions.inject_link_fault("repl-A-B", "blackhole", configuration=cfg)
        try:
            alarm = actions.await_lag_alarm(threshold, timeout=5, configuration=cfg)
        finally:
            actions.clear_link_faults(configuration=cfg)
    # lag counts from the last commit replayed before the cut, up to one write interval earlier
    # (never before the threshold; the upper bound only catches a detector that is asleep)
    assert threshold - 0.1 <= alarm["detected_after_s"] <= threshold + 2.0, alarm
    raised = first(events(box), "lag_alarm.detected", alarm="replication-lag")
    cut = first(events(box), "fault.injected", fault="link-blackhole")
    assert raised["threshold_s"] == threshold and raised["lag_s"] > threshold
    assert raised["t"] - cut["t"] == pytest.approx(alarm["detected_after_s"], abs=2e-6)  # rounded to the µs


def test_lag_alarm_times_out_without_lag(box):
    with pytest.raises(actions.ActivityFailed, match="never exceeded"):
        actions.await_lag_alarm(0.5, timeout=0.5, configuration=config(box))


def test_partition_experiment_is_valid():
    proc = subprocess.run([sys.executable, "-m", "chaostoolkit", "validate", "experiments/partition.json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_partition_counts_writes_the_isolated_primary_acknowledged(tmp_path, drillkit_cli, no_leftovers):
    """Region A stays up after the cut and acknowledges writes until the TTL moves clients: all lost."""
    scenario = variant(tmp_path, "partition.yaml", "partition-test", load={"duration": "6s"})
    out = tmp_path / "partition"
    code, summary, evs = run_drill(drillkit_cli, scenario, out)
    m = summary["measures"]
    cut = first(evs, "fault.injected", fault="link-blackhole")
    assert m["t_fault"] == pytest.approx(cut["t"])
    assert not any(e["kind"] == "fault.injected" and e.get("fault") == "region-loss" for e in evs)
    assert first(evs, "routing.switch", to="B")["t"] > first(evs, "db.promoted", region="B")["t"] > cut["t"]

    final = {json.loads(line)["key"] for line in (out / "final_state.jsonl").read_text().splitlines() if line}
    late = {op["key"] for op in ops(out) if op["op"] == "write" and op["ok"] and op["region"] == "A"
            and op["t1"] > cut["t"] and op["key"] not in final}
    assert m["writes_lost_after_fault"] > 0
    assert m["writes_lost_after_fault"] == len(late)
    assert "lost after the fault" in (out / "report.html").read_text().lower().replace("-", " ")
    assert code == 0, summary["reasons"]
