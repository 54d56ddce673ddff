"""Safeguards trip on what they guard, and only then: hand-written histories, then real drills."""

from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from support.drills import variant

from drillkit.run.safeguards import Limits, SafeguardMonitor

T = 1_000_000.0


def write_history(folder: Path, ops: list[tuple[float, bool]], t_fault: float | None = None,
                  lost_reads: list[str] = ()) -> None:
    (folder / "requests").mkdir(parents=True, exist_ok=True)
    with open(folder / "requests" / "w.jsonl", "w") as fh:
        for i, (t1, ok) in enumerate(ops):
            fh.write(json.dumps({"t0": t1 - 0.01, "t1": t1, "op": "write", "key": f"k{i}", "ok": ok}) + "\n")
        for key in lost_reads:
            fh.write(json.dumps({"t0": T, "t1": T, "op": "read", "key": key, "ok": True, "found": False}) + "\n")
    with open(folder / "events.jsonl", "w") as fh:
        if t_fault is not None:
            fh.write(json.dumps({"t": t_fault, "kind": "fault.injected", "fault": "x"}) + "\n")


def failing(start: float, end: float, step: float = 0.05) -> list[tuple[float, bool]]:
    return [(start + i * step, False) for i in range(int((end - start) / step))]


def monitor(folder: Path, **limits) -> SafeguardMonitor:
    m = SafeguardMonitor(folder, Limits(max_duration=limits.pop("max_duration", 1e9), **limits))
    m.started = T
    return m


def test_error_rate_outside_the_expected_outage_trips(tmp_path):
    write_history(tmp_path, failing(T, T + 4), t_fault=None)
    m = monitor(tmp_path, error_rate=0.5, error_rate_sustained=2.0, expected_outage=5.0)
    assert "max_error_rate" in m.check(T + 4.1)


def test_error_rate_inside_the_expected_outage_is_tolerated(tmp_path):
    write_history(tmp_path, failing(T, T + 4), t_fault=T)
    m = monitor(tmp_path, error_rate=0.5, error_rate_sustained=2.0, expected_outage=5.0)
    assert m.check(T + 4.1) is None


def test_error_rate_past_the_expected_outage_trips(tmp_path):
    write_history(tmp_path, failing(T, T + 6), t_fault=T)
    m = monitor(tmp_path, error_rate=0.5, error_rate_sustained=1.0, expected_outage=3.0)
    assert m.check(T + 3.6) is None
    assert "max_error_rate" in m.check(T + 5.1)


def test_error_rate_below_the_limit_never_trips(tmp_path):
    ops = [(T + i * 0.05, i % 3 != 0) for i in range(80)]
    write_history(tmp_path, ops)
    m = monitor(tmp_path, error_rate=0.5, error_rate_sustained=1.0)
    assert m.check(T + 4.1) is None


def test_observed_lost_writes_trip_past_the_limit(tmp_path):
    write_history(tmp_path, [(T, True)], lost_reads=["a", "b", "b"])
    assert monitor(tmp_path, max_lost_writes=2).check(T + 1) is None
    assert "2 acknowledged writes" in monitor(tmp_path, max_lost_writes=1).check(T + 1)


def test_max_duration(tmp_path):
    write_history(tmp_path, [])
    m = monitor(tmp_path, max_duration=5)
    assert m.check(T + 4.9) is None
    assert "max_duration" in m.check(T + 5.1)


def test_a_partial_last_line_waits_for_its_end(tmp_path):
    write_history(tmp_path, [], lost_reads=["a"])
    path = tmp_path / "requests" / "w.jsonl"
    line = json.dumps({"t0": T, "t1": T, "op": "read", "key": "b", "ok": True, "found": False}) + "\n"
    with open(path, "a") as fh:
        fh.write(line[:20])
    m = monitor(tmp_path, max_lost_writes=1)
    assert m.check(T) is None
    with open(path, "a") as fh:
        fh.write(line[20:])
    assert m.check(T) is not None


def aborted_by_safeguard(drillkit_cli, scenario: Path, out: Path, *extra: str,
                         env: dict | None = None) -> tuple[dict, list[str]]:
    proc = drillkit_cli("run", str(scenario), "--out", str(out), *(extra or ("--quiet",)), env=env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    tripped = next(e for e in events if e["kind"] == "safeguard.tripped")
    kinds = [e["kind"] for e in events]
    assert "rollbacks.end" in kinds or "rollbacks.skipped" in kinds
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "aborted"
    assert any(tripped["reason"] in r for r in summary["reasons"]), summary["reasons"]
    return tripped, kinds


def _interrupted(m: SafeguardMonitor) -> list:
    """Run the monitor until it interrupts this (the drill's main) thread; the exceptions its own
    thread raised uncaught. In a drill the monitor runs under the drill's own SIGINT handler
    (run/drill.py _Signals); here Python's default one stands in: a process started with SIGINT
    ignored (a background job of a non-interactive shell) has none, and interrupt_main would then
    do nothing."""
    errors: list = []
    previous_hook, threading.excepthook = threading.excepthook, errors.append
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):  # how the monitor interrupts the drill's main thread
            with m:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    time.sleep(0.01)
    finally:
        signal.signal(signal.SIGINT, previous)
        threading.excepthook = previous_hook
    return errors


def test_a_watchdog_that_cannot_look_aborts_rather_than_stops_looking(tmp_path):
    """A check that raises (a torn read, say) once killed the monitor's thread in silence, and
    with it every safeguard; now it stops the drill, saying why."""
    write_history(tmp_path, [])

    def broken() -> str | None:
        raise ValueError("torn read")

    m = SafeguardMonitor(tmp_path, Limits(max_duration=1e9))
    m.watch(broken)
    assert _interrupted(m) == []
    assert m.tripped == "harness failure: the watchdog could not check the drill: ValueError: torn read"
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert kinds == ["service.failed"]


def test_a_trip_whose_event_cannot_be_written_still_stops_the_drill(tmp_path):
    """The evidence folder deleted mid-drill: recording the trip fails, and the drill's main thread
    is interrupted all the same, with no traceback from the monitor's thread (test_root_safety's
    deleted-folder drill printed one)."""
    folder = tmp_path / "evidence"
    folder.mkdir()
    write_history(folder, [])
    m = SafeguardMonitor(folder, Limits(max_duration=1e9))
    m.watch(lambda: "region A's postmaster is gone")
    shutil.rmtree(folder)
    assert _interrupted(m) == []
    assert m.tripped == "harness failure: region A's postmaster is gone (not recorded: No such file or directory)"
    assert not folder.exists()


def test_error_rate_safeguard_stops_an_outage_longer_than_expected(tmp_path, drillkit_cli, no_leftovers):
    scenario = variant(tmp_path, "ground-truth-outage.yaml", "too-long-outage",
                       safeguards={"expected_outage": "1s", "max_error_rate": {"above": 0.5, "sustained": "1s"}})
    tripped, kinds = aborted_by_safeguard(drillkit_cli, scenario, tmp_path / "out", "--var", "outage_seconds=15")
    assert "max_error_rate" in tripped["reason"]
    events = [json.loads(line) for line in (tmp_path / "out" / "events.jsonl").read_text().splitlines()]
    fault = next(e for e in events if e["kind"] == "fault.injected")
    assert 2.0 <= tripped["t"] - fault["t"] < 5.0
    healed = [e for e in events if e["kind"] == "fault.cleared" and e["t"] > tripped["t"]]
    assert healed, "the rollback must heal the link"


def test_lost_writes_safeguard_stops_a_drill_losing_data(tmp_path, drillkit_cli, no_leftovers):
    scenario = variant(tmp_path, "replica-lag-then-region-loss.yaml", "losing-data",
                       safeguards={"max_lost_writes": 0})
    tripped, _ = aborted_by_safeguard(drillkit_cli, scenario, tmp_path / "out")
    assert "max_lost_writes" in tripped["reason"]


def test_a_safeguard_trip_lands_in_no_import(tmp_path, drillkit_cli, no_leftovers):
    """A trip (or an operator's Ctrl-C) raises in the main thread wherever it stands. It once landed
    inside the drill's first import of pandas, and the judge's own import of pandas then failed
    (SystemError from numpy, or a SIGSEGV): exit 3, no summary. Nothing is imported first between
    the signal handlers going in and the teardown: Python's import log (-X importtime, the lines
    starting `import time:`) shows no module between the first stage and the teardown."""
    scenario = variant(tmp_path, "replica-lag-then-region-loss.yaml", "losing-data",
                       safeguards={"max_lost_writes": 0})
    proc = drillkit_cli("run", str(scenario), "--out", str(tmp_path / "out"), env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert proc.returncode == 3, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "max_lost_writes" in summary["reasons"][0]
    lines = proc.stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("▶ "))
    teardown = lines.index("▶ teardown")
    assert any(line.startswith("import time:") for line in lines[:first])  # the log is there
    inside = [line for line in lines[first:teardown] if line.startswith("import time:")]
    assert inside == [], "\n".join(inside)


def test_max_duration_safeguard(tmp_path, drillkit_cli, no_leftovers):
    scenario = variant(tmp_path, "region-loss.yaml", "too-slow", safeguards={"max_duration": "4s"})
    tripped, _ = aborted_by_safeguard(drillkit_cli, scenario, tmp_path / "out")
    assert "max_duration" in tripped["reason"]


@pytest.mark.parametrize("bad", [{"max_error_rate": {"above": 1.5}}, {"max_lost_writes": -1},
                                 {"expected_outage": "soon"}, {"max_errors": 3}])
def test_bad_safeguards_are_refused(tmp_path, drillkit_cli, bad):
    scenario = variant(tmp_path, "region-loss.yaml", "bad-guard", safeguards=bad)
    proc = drillkit_cli("validate", str(scenario))
    assert proc.returncode == 2
    assert "safeguards" in proc.stderr and "Traceback" not in proc.stderr
