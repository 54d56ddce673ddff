"""Data corruption and point-in-time recovery on the real sandbox, checked against truths we set."""

from __future__ import annotations

import json
import time

import pytest
from support.drills import first, ops, run_drill, variant

from support.drills import write_record
from support.scenario_copy import ROOT
from drillkit.chaos import CONFIG_KEY, actions
from drillkit.chaos import observe as probes
from drillkit.targets.sandbox.system import Sandbox

EDGE_S = 0.1


@pytest.fixture
def sandbox(manual_sandbox):
    return manual_sandbox


write = write_record


def events_of(box: Sandbox) -> list[dict]:
    if not box.events_file.exists():
        return []
    return [json.loads(line) for line in box.events_file.read_text().splitlines() if line]


def test_corruption_replicates_and_the_checksum_scan_finds_it(sandbox):
    config = {CONFIG_KEY: str(sandbox.state_file)}
    for i in range(40):
        write(sandbox, f"k{i:03}")
    assert probes.scan_checksums(configuration=config) == 0

    result = actions.corrupt_records(7, configuration=config)
    assert len(set(result["keys"])) == 7
    assert actions.detect_corruption(5, configuration=config) == {"count": 7}
    assert probes.scan_checksums("A", configuration=config) == 7
    deadline = time.monotonic() + 5
    while probes.scan_checksums("B", configuration=config) != 7:
        assert time.monotonic() < deadline, "the corruption did not replicate to the standby"
        time.sleep(0.05)

    events = events_of(sandbox)
    fault = first(events, "fault.injected", fault="data-corruption")
    assert fault["t"] == result["t"] and fault["count"] == 7 and sorted(fault["keys"]) == result["keys"]
    assert first(events, "corruption.detected")["count"] == 7


def test_detection_fails_when_nothing_is_corrupt(sandbox):
    from chaoslib.exceptions import ActivityFailed

    write(sandbox, "clean")
    with pytest.raises(ActivityFailed, match="no corrupt record"):
        actions.detect_corruption(0.3, configuration={CONFIG_KEY: str(sandbox.state_file)})


def test_restore_needs_a_base_backup(sandbox):
    from chaoslib.exceptions import ActivityFailed

    config = {CONFIG_KEY: str(sandbox.state_file)}
    write(sandbox, "k")
    actions.corrupt_records(1, configuration=config)
    with pytest.raises(ActivityFailed, match="no base backup"):
        actions.restore_before_corruption(0.5, configuration=config)


def test_data_corruption_pitr_drill(tmp_path, drillkit_cli, no_leftovers):
    """After the restore nothing is corrupt; RPO = corruption time − restore point; the lost writes
    are exactly those acknowledged after the restore point by the old data, until the cutover."""
    scenario = variant(tmp_path, "data-corruption-pitr.yaml", "pitr")
    out = tmp_path / "pitr"
    code, summary, events = run_drill(drillkit_cli, scenario, out, "--var", "restore_margin_seconds=0.8")
    assert code == 0, summary["reasons"]
    m = summary["measures"]
    fault = first(events, "fault.injected", fault="data-corruption")
    detected = first(events, "corruption.detected")
    restored = first(events, "db.restored")
    assert fault["count"] == 20 and detected["count"] == 20
    assert fault["t"] < detected["t"] < restored["t"]
    assert m["t_fault"] == pytest.approx(fault["t"])
    assert restored["restore_point"] == pytest.approx(fault["t"] - 0.8, abs=1e-6)
    assert m["records_corrupt"] == 0

    point, cutover = restored["restore_point"], restored["cutover_at"]
    assert m["rpo_s"] == pytest.approx(fault["t"] - point, abs=EDGE_S)

    acks = [op for op in ops(out) if op["op"] == "write" and op["ok"]]
    audit = json.loads((out / "audit.json").read_text())
    lost = set(audit["lost_keys"])
    lost_after = set(audit["lost_after_fault_keys"])
    expected = {op["key"] for op in acks if point < op["t1"] <= cutover}
    # an ack the old app sent just before the cutover reaches its client just after it
    edge = {op["key"] for op in acks if min(abs(op["t1"] - point), abs(op["t1"] - cutover)) <= EDGE_S}
    assert expected - edge, "no write acknowledged between the restore point and the cutover"
    assert lost ^ expected <= edge, sorted(lost ^ expected)
    assert lost_after ^ {op["key"] for op in acks if fault["t"] < op["t1"] <= cutover} <= edge
    assert m["writes_lost_after_fault"] == len(lost_after) > 0
    assert not any(op["t1"] > cutover + EDGE_S for op in acks if op["key"] in lost)
    assert probes_after_restore(out) == 0


def probes_after_restore(out) -> int:
    journal = json.loads((out / "journal.json").read_text())
    run = next(r for r in journal["run"] if r["activity"]["name"] == "checksums-after-restore")
    return run["output"]


def test_experiment_is_valid_for_chaos_toolkit():
    import subprocess
    import sys
    from pathlib import Path

    chaos = Path(sys.executable).parent / "chaos"
    proc = subprocess.run([str(chaos), "validate", str(ROOT / "experiments" / "data-corruption-pitr.json")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_corruption_of_an_empty_database_is_refused(sandbox):
    from chaoslib.exceptions import ActivityFailed

    with pytest.raises(ActivityFailed, match="no records"):
        actions.corrupt_records(3, configuration={CONFIG_KEY: str(sandbox.state_file)})
    assert not any(e["kind"] == "fault.injected" for e in events_of(sandbox))


def test_an_accidental_table_drop_is_restored_to_the_margin_before_it(tmp_path, drillkit_cli, no_leftovers):
    """The drop replicates, so only a PITR helps: every write acknowledged between the restore point
    and the drop is lost, none after it was acknowledged (the table was gone), RPO = the margin."""
    code, summary, events = run_drill(drillkit_cli, ROOT / "scenarios/document-processor/table-drop-pitr.yaml",
                                      tmp_path / "out")
    assert code == 0, summary["reasons"]
    m = summary["measures"]
    drop = first(events, "fault.injected", fault="table-drop")
    restored = first(events, "db.restored")
    assert drop["table"] == "records" and drop["rows"] > 0
    point = restored["restore_point"]
    assert point == pytest.approx(drop["t"] - 1.0, abs=1e-6)   # restore_margin_seconds
    assert m["rpo_s"] == pytest.approx(drop["t"] - point, abs=EDGE_S)
    acks = [op for op in ops(tmp_path / "out") if op["op"] == "write" and op["ok"]]
    lost = set(json.loads((tmp_path / "out" / "audit.json").read_text())["lost_keys"])
    expected = {op["key"] for op in acks if point < op["t1"] <= drop["t"]}
    edge = {op["key"] for op in acks if min(abs(op["t1"] - point), abs(op["t1"] - drop["t"])) <= EDGE_S}
    assert expected - edge and lost ^ expected <= edge, sorted(lost ^ expected)
    assert not [op for op in acks if drop["t"] + EDGE_S < op["t0"] < restored["cutover_at"] - EDGE_S]
    # a write acknowledged after the drop's event can only be one that committed before the drop
    # (a write in flight when it ran): lost, and counted as acknowledged after the fault
    concurrent = [op for op in acks if op["key"] in lost and op["t1"] > drop["t"]]
    assert m["writes_lost_after_fault"] == len({op["key"] for op in concurrent})
    assert all(op["t0"] < drop["t"] for op in concurrent), concurrent
    assert m["records_corrupt"] == 0
    assert summary["measures"]["phases"]["restore"]["status"] == "succeeded"
