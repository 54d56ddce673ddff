"""summarize() against hand-built histories whose answers are known exactly."""

from __future__ import annotations

import json

import pytest

from drillkit.errors import EvidenceError
from drillkit.judge import summarize, write_summary
from support.histories import op, W, R, drill

approx = lambda x: pytest.approx(x, abs=1e-9)  # noqa: E731


def m_of(folder):
    return summarize(folder)["measures"]


# ---------------------------------------------------------------- RTO


def test_no_outage(tmp_path):
    s = summarize(drill(tmp_path, [W(9, 9.1), R(9.2, 9.3), W(11, 11.1), R(12, 12.1)]))
    m = s["measures"]
    assert m["rto_s"] == 0 and m["rto_write_s"] == 0 and m["rto_read_s"] == 0
    assert m["rto_by_op"]["write"]["failures"] == 0 and m["rto_by_op"]["write"]["recovered"]
    assert m["rpo_s"] == 0 and m["writes_lost"] == 0 and m["t_fault"] == 10.0
    assert s["verdict"] == "pass" and s["reasons"] == []


def concurrent_outage():
    a = [W(9.0, 9.1), W(10.0, 10.5, ok=False), W(10.5, 11.0, ok=False), W(11.0, 11.5, ok=False),
         W(11.5, 11.6), W(11.6, 11.7), W(14.0, 14.1)]
    b = [W(9.5, 9.6), W(10.2, 11.2, ok=False), W(11.2, 11.55), W(14.0, 14.2)]
    return a + b


def test_clean_outage_concurrent_clients(tmp_path):
    m = m_of(drill(tmp_path, concurrent_outage()))
    w = m["rto_by_op"]["write"]
    assert m["rto_write_s"] == approx(1.55) and m["rto_s"] == approx(1.55)
    assert w["t_recovered"] == approx(11.55)
    assert w["resolution_s"] == approx(0.05) and m["rto_resolution_s"] == approx(0.05)
    assert w["failures"] == 4
    assert w["t_first_failure"] == approx(10.5)
    assert w["t_last_failure"] == approx(11.0)


def test_flapping_recovery_takes_the_later_success(tmp_path):
    ops = [W(9, 9.1), W(10.0, 10.5, ok=False), W(10.5, 10.6), W(11.0, 11.5, ok=False),
           W(11.5, 11.6), W(12.0, 12.1), W(13.6, 13.7)]
    w = m_of(drill(tmp_path, ops))["rto_by_op"]["write"]
    assert w["rto_s"] == approx(1.6)
    assert w["resolution_s"] == approx(0.1)
    assert w["failures"] == 2


def test_failure_just_outside_stable_starts_a_new_outage(tmp_path):
    ops = [W(10.0, 10.5, ok=False), W(10.6, 10.7), W(12.1, 12.2, ok=False), W(12.3, 12.4), W(15, 15.1)]
    w = m_of(drill(tmp_path, ops))["rto_by_op"]["write"]
    assert w["rto_s"] == approx(0.7)
    ops[2] = W(12.0, 12.2, ok=False)
    w = m_of(drill(tmp_path / "b", ops))["rto_by_op"]["write"]
    assert w["rto_s"] == approx(2.4)


def test_never_recovered(tmp_path):
    ops = [W(9, 9.1)] + [W(10 + i / 2, 10.5 + i / 2, ok=False) for i in range(10)] + [R(9, 9.1), R(14, 14.1)]
    s = summarize(drill(tmp_path, ops, targets={"rto": "10s"}))
    m = s["measures"]
    assert m["rto_write_s"] is None and m["rto_s"] is None and m["rto_read_s"] == 0
    assert m["rto_by_op"]["write"]["recovered"] is False and m["not_recovered"] == ["write"]
    assert s["verdict"] == "fail"
    checks = {c["name"]: c for c in s["checks"]}
    assert checks["recovered"]["passed"] is False
    assert checks["rto"]["passed"] is False and checks["rto"]["measured"] is None
    assert checks["rto"]["message"] == "RTO not recovered; target 10 s"
    assert any("not recovered" in r for r in s["reasons"])


def test_success_without_later_load_is_not_recovered(tmp_path):
    ops = [W(10.0, 10.5, ok=False), W(10.5, 10.6), W(11.0, 11.1)]
    assert m_of(drill(tmp_path, ops))["rto_write_s"] is None
    ops.append(W(12.0, 12.1))
    assert m_of(drill(tmp_path / "b", ops))["rto_write_s"] == approx(0.6)


def test_stable_comes_from_the_scenario(tmp_path):
    ops = [W(10.0, 10.5, ok=False), W(10.5, 10.6), W(11.0, 11.5, ok=False), W(11.5, 11.6), W(20, 20.1)]
    assert m_of(drill(tmp_path, ops, stable="500ms"))["rto_write_s"] == approx(0.6)
    assert m_of(drill(tmp_path / "b", ops, stable="2s"))["rto_write_s"] == approx(1.6)


def test_failures_before_the_fault_are_ignored(tmp_path):
    ops = [W(5, 5.5, ok=False), W(9.0, 10.0, ok=False), W(9.5, 9.6), W(11, 11.1), W(13, 13.1)]
    m = m_of(drill(tmp_path, ops))
    assert m["rto_write_s"] == 0 and m["rto_by_op"]["write"]["failures"] == 0
    assert m["writes_failed"] == 2


def test_failure_started_before_fault_and_ended_after_counts(tmp_path):
    ops = [W(9.0, 11.0, ok=False), W(11.0, 11.2), W(13.5, 13.6)]
    w = m_of(drill(tmp_path, ops))["rto_by_op"]["write"]
    assert w["rto_s"] == approx(1.2) and w["failures"] == 1


def test_a_class_with_no_ops_and_other_classes(tmp_path):
    ops = [W(9, 9.1), W(10, 10.5, ok=False), W(10.5, 10.7), W(13, 13.1),
           op(9, 9.1, "object_put", "o1"), op(10, 12, "object_put", "o2", ok=False), op(12, 13, "object_put", "o3"),
           op(15, 15.1, "object_put", "o4")]
    m = m_of(drill(tmp_path, ops, final=False, events=[{"t": 30, "kind": "drill.aborted"}]))
    assert m["rto_read_s"] == 0 and m["rto_by_op"]["read"]["failures"] == 0
    assert m["rto_write_s"] == approx(0.7)
    assert m["rto_by_op"]["object_put"]["rto_s"] == approx(3.0)
    assert m["rto_s"] == approx(3.0) and m["rto_resolution_s"] == approx(1.0)


def test_no_fault_event(tmp_path):
    ops = [W(9, 9.5, ok=False), W(10, 10.1), W(13, 13.1)]
    s = summarize(drill(tmp_path, ops, fault=None))
    m = s["measures"]
    # no fault instant, no RTO and no RPO: "not measured", never 0 (issue 30)
    assert m["t_fault"] is None and m["rto_s"] is None and m["rpo_s"] is None
    assert m["not_measured"].startswith("not measured: the experiment injected no fault")
    assert any("no fault.injected" in n for n in s["notes"])


# ---------------------------------------------------------------- data audit and RPO


def test_split_brain_writes_lost_after_fault(tmp_path):
    ops = [W(8.9, 9.0, "k1"), W(10.1, 10.2, "k2"), W(10.2, 10.3, "k3"), W(13, 13.1, "k4")]
    m = m_of(drill(tmp_path, ops, final=["k3", "k4"]))
    assert m["writes_lost"] == 2 and m["lost_keys_first"] == ["k1", "k2"]
    assert m["writes_lost_after_fault"] == 1 and m["lost_after_fault_keys_first"] == ["k2"]
    assert m["rpo_s"] == approx(1.0)
    assert m["lost_window"] == [approx(9.0), approx(10.2)]


def test_only_split_brain_losses_leave_rpo_zero(tmp_path):
    ops = [W(9, 9.1, "k1"), W(10.1, 10.2, "k2"), W(10.2, 10.3, "k3")]
    m = m_of(drill(tmp_path, ops, final=["k1"]))
    assert m["rpo_s"] == 0 and m["writes_lost"] == 2 and m["writes_lost_after_fault"] == 2


def test_rpo_from_lost_writes_acknowledged_before_the_fault(tmp_path):
    ops = [W(8.4, 9.25, "k2"), W(8.0, 8.5, "k1"), W(9.4, 9.5, "k3"), W(9.9, 10.0, "k4"), W(11, 11.1, "k5")]
    m = m_of(drill(tmp_path, ops, final=["k3", "k5"]))
    assert m["rpo_s"] == approx(1.5)
    assert m["lost_keys_first"] == ["k1", "k2", "k4"]
    assert m["writes_lost_after_fault"] == 0
    assert m["lost_window"] == [approx(8.5), approx(10.0)]


def test_duplicate_keys_last_acknowledged_write_decides(tmp_path):
    ops = [
        W(1.0, 1.1, "a", ck="a1"), W(2.0, 2.1, "a", ck="a2"),                 # earlier value present: corrupt
        W(1.0, 1.1, "b", ck="b1"), W(2.0, 2.1, "b", ck="b2"),                 # last value present: fine
        W(1.0, 1.1, "c", ck="c1"), W(2.0, 3.0, "c", ok=False, ck="c2"),       # a later unacked write landed
        W(0.1, 0.5, "d", ok=False, ck="d0"), W(1.0, 1.1, "d", ck="d1"),       # unacked, finished before: corrupt
        W(1.0, 1.2, "e", ck="e1"),                                            # foreign checksum: corrupt
        W(3.0, 3.1, "f", ck="f1"), W(4.0, 4.1, "f", ck="f2"),                 # lost, counted once
    ]
    final = {"a": "a1", "b": "b2", "c": "c2", "d": "d0", "e": "zz"}
    m = m_of(drill(tmp_path, ops, final=final))
    assert m["records_corrupt"] == 3
    assert m["corrupt_keys_first"] == ["d", "e", "a"]
    assert m["writes_lost"] == 1 and m["lost_keys_first"] == ["f"]
    assert m["writes_acked"] == 9 and m["writes_failed"] == 2
    assert m["writes_recovered"] == 0 and m["records_unexpected"] == 0


def test_unacknowledged_writes_present_are_recovered(tmp_path):
    ops = [W(9, 9.1, "k1"), W(10, 10.5, "u1", ok=False), W(10.5, 11, "u2", ok=False), W(11, 11.1, "k2"), W(14, 14.1, "k3")]
    m = m_of(drill(tmp_path, ops, final=["k1", "u1", "k2", "k3"]))
    assert m["writes_recovered"] == 1 and m["recovered_keys_first"] == ["u1"]
    assert m["writes_lost"] == 0 and m["records_corrupt"] == 0


def test_unexpected_keys(tmp_path):
    ops = [W(9, 9.1, "k1"), R(9.2, 9.3, "ghost")]
    m = m_of(drill(tmp_path, ops, final=["zz", "k1", "ghost"]))
    assert m["records_unexpected"] == 2 and m["unexpected_keys_first"] == ["zz", "ghost"]


def test_empty_final_state_loses_every_acknowledged_write(tmp_path):
    ops = [W(i, i + 0.1, f"k{i}") for i in range(1, 9)] + [W(9, 9.1, "x", ok=False)]
    m = m_of(drill(tmp_path, ops, final={}))
    assert m["writes_lost"] == 8 and m["writes_acked"] == 8
    assert m["lost_keys_first"] == [f"k{i}" for i in range(1, 9)]
    assert m["rpo_s"] == approx(8.9)
    assert m["writes_recovered"] == 0


def test_key_lists_are_capped_in_summary_and_complete_in_audit(tmp_path):
    ops = [W(1 + i / 100, 1.005 + i / 100, f"k{i:02d}") for i in range(25)]
    folder = drill(tmp_path, ops, final={})
    s = summarize(folder)
    assert len(s["measures"]["lost_keys_first"]) == 10
    write_summary(folder, s)
    audit = json.loads((folder / "audit.json").read_text())
    assert audit["lost_keys"] == [f"k{i:02d}" for i in range(25)]
    on_disk = json.loads((folder / "summary.json").read_text())
    assert on_disk["measures"]["writes_lost"] == 25 and "availability_per_second" not in json.dumps(on_disk)


# ---------------------------------------------------------------- counts, availability, lag


def test_counts_and_availability(tmp_path):
    ops = [W(100.2, 100.3), R(100.5, 100.6), W(101.1, 101.2, ok=False), R(101.5, 101.6, ok=False),
           R(101.7, 101.8), W(103.9, 104.0)]
    folder = drill(tmp_path, ops, fault=None)
    s = summarize(folder)
    m = s["measures"]
    assert (m["writes_acked"], m["writes_failed"], m["reads_ok"], m["reads_failed"], m["ops_total"]) == (2, 1, 2, 1, 6)
    assert m["availability"] == approx(4 / 6)
    assert m["t_start"] == 0.0 and m["t_end"] == approx(104.0)
    write_summary(folder, s)
    series = json.loads((folder / "audit.json").read_text())["availability_per_second"]
    assert series == {"origin": 100, "ok": [2, 1, 0, 1], "failed": [0, 2, 0, 0]}


def test_replication_lag(tmp_path):
    lag = "t,region,replay_lag_s,lag_bytes\n1,b,0.25,100\n2,b,1.5,4096\n3,b,,\n"
    m = m_of(drill(tmp_path, [W(1, 1.1)], lag=lag))
    assert m["max_replication_lag_s"] == approx(1.5) and m["max_replication_lag_bytes"] == 4096
    assert m_of(drill(tmp_path / "b", [W(1, 1.1)], lag=""))["max_replication_lag_s"] is None
    assert m_of(drill(tmp_path / "c", [W(1, 1.1)]))["max_replication_lag_s"] is None


# ---------------------------------------------------------------- checks and verdict


def test_targets_become_checks(tmp_path):
    targets = {"rto": "10s", "rto_write": "1s", "rpo": "500ms", "max_lost_writes": 0, "max_corrupt": 0,
               "max_unexpected": 0, "min_availability": 0.5, "max_replication_lag": "1s"}
    ops = concurrent_outage() + [W(9.7, 9.8, "lost")]
    final = {o["key"]: o["checksum"] for o in ops if o["ok"] and o["key"] != "lost"}
    s = summarize(drill(tmp_path, ops, final=final, targets=targets, lag="t,region,replay_lag_s,lag_bytes\n1,b,0.2,1\n"))
    checks = {c["name"]: c for c in s["checks"]}
    assert list(checks) == ["experiment", "rto", "rto_write", "rpo", "max_lost_writes", "max_corrupt", "max_unexpected",
                            "min_availability", "max_replication_lag", "recovered"]
    assert checks["rto"] == {"name": "rto", "kind": "rto", "target": 10.0, "measured": approx(1.55), "passed": True,
                             "message": "RTO 1.550 s within target 10 s"}
    assert [checks[n]["kind"] for n in ("experiment", "rpo", "max_lost_writes", "max_corrupt", "min_availability",
                                         "max_replication_lag", "recovered")] == [
        "experiment", "rpo", "lost_writes", "integrity", "availability", "replication_lag", "recovered"]
    assert checks["rto_write"]["message"] == "write RTO 1.550 s exceeds target 1 s" and not checks["rto_write"]["passed"]
    assert checks["rpo"]["measured"] == approx(0.2) and checks["rpo"]["passed"] is True
    assert checks["rpo"]["message"] == "RPO 0.200 s within target 0.5 s"
    assert checks["max_lost_writes"]["message"] == "lost writes: 1 exceeds limit 0"
    assert checks["max_corrupt"]["passed"] and checks["max_unexpected"]["passed"]
    assert checks["min_availability"]["passed"] and checks["min_availability"]["target"] == 0.5
    assert checks["min_availability"]["message"] == "availability 66.667% meets target 50%"
    assert checks["max_replication_lag"]["message"] == "max replication lag 0.200 s within target 1 s"
    assert checks["recovered"]["passed"]
    assert s["verdict"] == "fail"
    assert s["reasons"] == ["write RTO 1.550 s exceeds target 1 s", "lost writes: 1 exceeds limit 0"]


def test_lag_target_without_samples_fails(tmp_path):
    s = summarize(drill(tmp_path, [W(1, 1.1)], targets={"max_replication_lag": "1s"}))
    lag = next(c for c in s["checks"] if c["kind"] == "replication_lag")
    assert lag["passed"] is False and lag["message"] == "max replication lag not measured; target 1 s"


def test_bad_target_names_the_field(tmp_path):
    with pytest.raises(EvidenceError, match=r"scenario.yaml: targets.rto: "):
        summarize(drill(tmp_path, [W(1, 1.1)], targets={"rto": "soon"}))


def test_verdict_aborted(tmp_path):
    ops = [W(9, 9.1)]
    s = summarize(drill(tmp_path, ops, events=[{"t": 12, "kind": "drill.aborted", "reason": "SIGINT"}]))
    assert s["verdict"] == "aborted" and s["reasons"] == ["drill aborted: SIGINT"]


def test_aborted_before_the_audit_has_no_final_state(tmp_path):
    s = summarize(drill(tmp_path, [W(9, 9.1)], final=False, events=[{"t": 12, "kind": "drill.aborted"}]))
    assert s["verdict"] == "aborted" and s["measures"]["writes_lost"] is None


def test_journal_decides_completion(tmp_path):
    folder = drill(tmp_path, [W(9, 9.1)])
    (folder / "journal.json").write_text(json.dumps({"status": "completed", "deviated": True}))
    s = summarize(folder)
    assert s["verdict"] == "fail" and "deviated" in s["reasons"][0]
    (folder / "journal.json").unlink()
    s = summarize(folder)
    assert s["verdict"] == "pass" and any("journal.json" in n for n in s["notes"])


# ---------------------------------------------------------------- the folder itself


def test_not_a_drill_folder(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(EvidenceError, match=r"x: not a drill evidence folder \(no requests/ or events.jsonl\)"):
        summarize(tmp_path / "x")


def test_missing_final_state_is_an_error(tmp_path):
    with pytest.raises(EvidenceError, match="final_state.jsonl: missing"):
        summarize(drill(tmp_path, [W(1, 1.1)], final=False, events=[{"t": 2, "kind": "drill.end"}]))


def test_malformed_request_names_file_and_line(tmp_path):
    folder = drill(tmp_path, [W(1, 1.1), W(2, 2.1)])
    with open(folder / "requests" / "w0.jsonl", "a") as fh:
        fh.write('{"t0": 3, "t1": 3.1, "op": "write", "key": 7, "ok": true}\n')
    with pytest.raises(EvidenceError, match=r"w0.jsonl: line 3: key: must be a string"):
        summarize(folder)
    (folder / "requests" / "w0.jsonl").write_text('{"t0": 1, "t1": 1.1, "op": "write", "key": "k", "ok": tru\n')
    with pytest.raises(EvidenceError, match=r"w0.jsonl: line 1: not JSON"):
        summarize(folder)


def test_several_files_blank_lines_and_extra_fields(tmp_path):
    ops = [op(9, 9.1, "write", "k1", user=3), W(10, 10.5, ok=False), W(10.5, 10.6), W(12.6, 12.7)]
    folder = drill(tmp_path, ops, files=3)
    with open(folder / "requests" / "w0.jsonl", "a") as fh:
        fh.write("\n\n")
    m = m_of(folder)
    assert m["ops_total"] == 4 and m["rto_write_s"] == approx(0.6)


def test_summary_is_plain_json(tmp_path):
    folder = drill(tmp_path, concurrent_outage(), targets={"rto": "10s"})
    path = write_summary(folder, summarize(folder))
    data = json.loads(path.read_text())
    assert data["evidence_format"] == 1 and data["scenario"] == "t" and data["verdict"] == "pass"
    for key in ("rto_s", "rto_write_s", "rto_read_s", "rpo_s", "writes_acked", "writes_lost", "writes_lost_after_fault",
                "writes_recovered", "records_unexpected", "records_corrupt", "max_replication_lag_s", "t_fault"):
        assert key in data["measures"]
    assert write_summary(folder, dict(data)) == path and (folder / "audit.json").exists()


@pytest.mark.parametrize("line, says", [
    ('{"t0": null, "t1": 1.1, "op": "write", "key": "k", "ok": true}', "t0: must be a number"),
    ('{"t0": "1", "t1": 1.1, "op": "write", "key": "k", "ok": true}', "t0: must be a number"),
    ('{"t0": 1, "t1": 1.1, "op": "write", "key": "k", "ok": 1}', "ok: must be true or false"),
    ('{"t0": 1, "t1": 1.1, "op": "write", "key": "k", "ok": true, "checksum": 5}', "checksum: must be a string or null"),
    ('[1, 2]', "not a JSON object"),
])
def test_request_fields_are_typed(tmp_path, line, says):
    folder = drill(tmp_path, [W(1, 1.1)])
    (folder / "requests" / "w0.jsonl").write_text(line + "\n")
    with pytest.raises(EvidenceError, match=f"w0.jsonl: line 1: {says}"):
        summarize(folder)


def test_no_load_at_all(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "events.jsonl").write_text(json.dumps({"t": 1, "kind": "drill.aborted", "reason": "port in use"}) + "\n")
    s = summarize(folder)
    m = s["measures"]
    assert s["verdict"] == "aborted" and m["ops_total"] == 0 and m["availability"] is None and m["rto_s"] is None
    assert s["scenario"] is None and m["t_start"] is None


def test_reading_in_pieces_gives_the_same_answers(tmp_path, monkeypatch):
    import drillkit.evidence.columns as columns

    ops = concurrent_outage() + [R(9 + i / 10, 9.05 + i / 10, f"k{i}") for i in range(50)] + [op(12, 12.5, "object_put", "o")]
    folder = drill(tmp_path, ops, final=["nope"])
    whole = summarize(folder)
    monkeypatch.setattr(columns, "PIECE_BYTES", 1000)  # a few lines a piece, cut mid-line
    pieces = summarize(folder)
    assert len(list(columns.pieces(folder / "requests" / "w0.jsonl"))) > 5
    for s in (whole, pieces):
        s.pop("measured_at")
    assert pieces == whole and pieces.audit == whole.audit
    with open(folder / "requests" / "w0.jsonl", "a") as fh:
        fh.write('{"t0": 3, "t1": 3.1, "op": "write", "key": "k", "ok": "yes"}\n')
    with pytest.raises(EvidenceError, match=r"w0.jsonl: line 63: ok: must be true or false"):
        summarize(folder)


def test_a_record_split_across_lines_is_rejected(tmp_path):
    folder = drill(tmp_path, [W(1, 1.1)])
    (folder / "requests" / "w0.jsonl").write_text('{"t0": 1, "t1": 1.1, "op": "write", "key": "a\nb", "ok": true}\n')
    with pytest.raises(EvidenceError, match=r"w0.jsonl: line 1: not JSON"):
        summarize(folder)


def test_a_precondition_fault_does_not_start_the_clock(tmp_path):
    ops = [W(9, 9.1, "k1"), W(10, 10.5, ok=False), W(10.5, 10.6), W(13, 13.1)]
    pre = [{"t": 5.0, "kind": "fault.injected", "fault": "link-cut", "precondition": True}]
    m = m_of(drill(tmp_path, ops, events=pre, final=[]))
    assert m["t_fault"] == 10.0 and m["rto_write_s"] == approx(0.6) and m["rpo_s"] == approx(0.9)


# ---------------------------------------------------------------- objects


def test_object_writes_are_audited_beside_records_with_their_own_rto(tmp_path):
    """obj_write ops are writes to the audit (keys `obj/<k>`), and a class of their own for RTO."""
    ops = [W(8.0, 8.1, "r1"), op(8.2, 8.3, "obj_write", "obj/o1", ck="c-o1"),
           op(9.5, 9.6, "obj_write", "obj/o2", ck="c-o2"),            # acked before the fault, not replicated
           op(10.0, 10.4, "obj_write", "obj/o3", ok=False, ck="c-o3"),
           op(10.5, 10.9, "obj_write", "obj/o4", ok=False, ck="c-o4"),  # failed, yet present: recovered
           op(11.0, 11.1, "obj_write", "obj/o5", ck="c-o5"),
           op(11.2, 11.3, "obj_read", "obj/o1"), W(12.0, 12.1, "r2"),
           op(14.0, 14.1, "obj_write", "obj/o6", ck="c-o6")]
    final = {"r1": "c-r1", "r2": "c-r2", "obj/o1": "c-o1", "obj/o4": "c-o4", "obj/o5": "bad", "obj/o6": "c-o6",
             "obj/x": "c-x"}
    m = m_of(drill(tmp_path, ops, final))
    assert m["writes_acked"] == 6 and m["writes_failed"] == 2
    assert m["writes_lost"] == 1 and m["rpo_s"] == approx(10.0 - 9.6)
    assert m["writes_recovered"] == 1 and m["records_corrupt"] == 1 and m["records_unexpected"] == 1
    assert m["rto_by_op"]["obj_write"]["rto_s"] == approx(11.1 - 10.0)
    assert m["rto_write_s"] == 0 and m["rto_s"] == approx(1.1)
    assert m["reads_ok"] == 1


def test_rpo_by_store_each_store_its_own_and_rpo_the_worst(tmp_path):
    """Records lost 0.3 s before the fault, objects 2.5 s before: each store its RPO, rpo_s the worst."""
    ops = [W(8.0, 8.1, "r1"), W(9.6, 9.7, "r2"), W(9.7, 9.8, "r3"),
           op(7.4, 7.5, "obj_write", "obj/o1", ck="c-o1"), op(8.9, 9.0, "obj_write", "obj/o2", ck="c-o2"),
           op(9.0, 9.1, "obj_write", "obj/o3", ck="c-o3"), op(11.0, 11.1, "obj_write", "obj/o4", ck="c-o4")]
    final = {"r1": "c-r1", "r3": "c-r3", "obj/o4": "c-o4"}
    m = m_of(drill(tmp_path, ops, final))
    assert m["rpo_by_store"] == {"records": {"rpo_s": approx(10.0 - 9.7), "writes_acked": 3, "writes_lost": 1},
                                 "objects": {"rpo_s": approx(10.0 - 7.5), "writes_acked": 4, "writes_lost": 3}}
    assert m["rpo_s"] == approx(2.5) and m["writes_lost"] == 4


def test_rpo_by_store_names_only_stores_written_and_is_unknown_without_audit(tmp_path):
    m = m_of(drill(tmp_path / "a", [W(8.0, 8.1, "r1")], {}))
    assert m["rpo_by_store"] == {"records": {"rpo_s": approx(1.9), "writes_acked": 1, "writes_lost": 1}}
    unaudited = m_of(drill(tmp_path / "b", [W(8.0, 8.1, "r1")], False, events=[{"t": 12, "kind": "drill.aborted"}]))
    assert unaudited["rpo_by_store"] is None


def test_alarms_raised_at_their_change_time_after_the_fault(tmp_path):
    def state(t, alarm, st, previous, changed_at, stops=False):
        return {"t": t, "kind": "alarm.state", "alarm": alarm, "region": "us-west-2", "state": st,
                "previous": previous, "changed_at": changed_at, "stops_drill": stops}

    events = [state(1.0, "lag", "OK", None, 0.5), state(1.0, "s3", "ALARM", None, 0.2),  # ALARM before: raised
              state(12.1, "lag", "ALARM", "OK", 11.75),                              # raised 1.75 s after the fault
              state(14.0, "lag", "OK", "ALARM", 13.9), state(15.0, "lag", "ALARM", "OK", 14.8, True)]
    m = m_of(drill(tmp_path, [W(8.0, 8.1, "r1")], events=events))
    assert m["alarms_raised"] == [
        {"alarm": "s3", "region": "us-west-2", "raised_at": 0.2, "after_fault_s": approx(-9.8), "stops_drill": False},
        {"alarm": "lag", "region": "us-west-2", "raised_at": 11.75, "after_fault_s": approx(1.75), "stops_drill": False},
        {"alarm": "lag", "region": "us-west-2", "raised_at": 14.8, "after_fault_s": approx(4.8), "stops_drill": True}]


def test_object_backlog_from_lag_csv(tmp_path):
    lag = ("t,region,replay_lag_s,lag_bytes,object_backlog,object_backlog_age_s\n"
           "9.0,B,0.1,100,,\n9.0,B,,,3,0.25\n10.0,B,0.4,900,,\n10.0,B,,,12,1.5\n")
    m = m_of(drill(tmp_path, [W(9, 9.1)], lag=lag))
    assert (m["max_replication_lag_s"], m["max_replication_lag_bytes"]) == (0.4, 900)
    assert (m["max_object_backlog"], m["max_object_backlog_age_s"]) == (12, 1.5)


def test_every_outage_after_the_fault_is_listed_not_only_the_one_rto_times(tmp_path):
    """A failback's switchover is a second write outage: RTO times the first, `outages` lists both."""
    ops = [W(9.0, 9.1), W(10.0, 10.3, ok=False), W(10.4, 10.6, ok=False), W(11.0, 11.2),
           W(12.0, 12.1), W(13.5, 13.6), W(16.0, 16.05, ok=False), W(16.1, 16.4, ok=False),
           W(16.5, 16.8), W(17.0, 17.1), W(19.0, 19.1), R(9.0, 9.1), R(16.2, 16.3, ok=False), R(19.0, 19.2)]
    m = m_of(drill(tmp_path, ops))
    assert m["rto_write_s"] == approx(1.2)
    assert m["outages"] == [
        {"op": "write", "start": 10.3, "end": 11.2, "duration_s": approx(0.9), "failures": 2},
        {"op": "write", "start": 16.05, "end": 16.8, "duration_s": approx(0.75), "failures": 2},
        {"op": "read", "start": 16.3, "end": 19.2, "duration_s": approx(2.9), "failures": 1},
    ]


def test_an_outage_that_never_ends_has_no_end(tmp_path):
    m = m_of(drill(tmp_path, [W(9, 9.1), W(10.5, 11, ok=False), W(11.5, 12, ok=False)]))
    assert m["outages"] == [{"op": "write", "start": 11.0, "end": None, "duration_s": None, "failures": 2}]
    assert m["rto_write_s"] is None


def test_a_failed_runbook_step_or_a_missed_check_fails_the_drill(tmp_path):
    folder = drill(tmp_path, [W(9, 9.1), W(11, 11.1)])

    def step(name, status="succeeded", output=None, tolerance=None, exception=None):
        activity = {"name": name, "type": "probe" if tolerance is not None else "action"}
        if tolerance is not None:
            activity["tolerance"] = tolerance
        return {"activity": activity, "status": status, "output": output, "exception": exception}

    journal = {"status": "completed", "deviated": False,
               "run": [step("promote"), step("checksums", output=0, tolerance=0),
                       step("rebuild", "failed", exception=["Traceback\n", "ActivityFailed: standby exited\n"]),
                       step("dr-checksums", output=3, tolerance=0), step("tamper-scan", output=[1], tolerance=0)],
               "rollbacks": [step("heal", "failed", exception="link control refused")]}
    (folder / "journal.json").write_text(json.dumps(journal))
    s = summarize(folder)
    assert s["verdict"] == "fail"
    assert s["reasons"] == ["runbook step 'rebuild' failed: ActivityFailed: standby exited",
                            "check 'dr-checksums' gave 3, its tolerance is 0",
                            "check 'tamper-scan' gave [1], its tolerance is 0",
                            "rollback 'heal' failed: link control refused"]
