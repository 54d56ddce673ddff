"""The one reader of requests/*.jsonl: strict and lenient reading, clock correction, the tail."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from drillkit.errors import EvidenceError
from drillkit.evidence.clocks import CLOCKS, ClockSample
from drillkit.evidence.history import HistoryTail, JsonlTail, read_history, read_timeline
from drillkit.judge import summarize

from support.histories import R, W, drill

SHIFT = 0.300


def outage_ops(shift: float = 0.0) -> tuple[list[dict], list[dict]]:
    """Two workers' ops around a write outage from 10.0 to 11.5 (the second worker's clock `shift`
    ahead): RTO write 1.6 s (the first success after the last failure ends at 11.6)."""
    a = [W(9.0, 9.1), W(10.0, 10.4, ok=False), W(10.5, 10.9, ok=False), W(14.0, 14.1), R(14.2, 14.3, "w-9.0")]
    b = [W(9.5, 9.6), W(11.0, 11.5, ok=False), W(11.55, 11.6), W(15.0, 15.1)]
    for o in b:
        o["t0"] += shift
        o["t1"] += shift
    return a, b


def two_workers(tmp_path, shift: float, clocks: bool):
    a, b = outage_ops(shift)
    folder = drill(tmp_path, a)
    (folder / "requests" / "w1.jsonl").write_text("".join(json.dumps(o) + "\n" for o in b))
    final = {o["key"]: o["checksum"] for o in a + b if o["op"] == "write" and o["ok"]}
    (folder / "final_state.jsonl").write_text("".join(json.dumps({"key": k, "checksum": c}) + "\n"
                                                       for k, c in final.items()))
    if clocks:
        samples = [ClockSample("w1", "start", 8.0, 8.0 + shift, shift, 0.0004, 0.0008, 5),
                   ClockSample("w1", "end", 16.0, 16.0 + shift, shift, 0.0002, 0.0004, 5)]
        (folder / CLOCKS).write_text("".join(json.dumps(asdict(s)) + "\n" for s in samples))
    return folder


def test_a_worker_clock_ahead_is_corrected_before_measuring(tmp_path):
    truth = summarize(two_workers(tmp_path / "true", 0.0, clocks=False))["measures"]
    fixed = summarize(two_workers(tmp_path / "fixed", SHIFT, clocks=True))["measures"]
    raw = summarize(two_workers(tmp_path / "raw", SHIFT, clocks=False))["measures"]
    assert truth["rto_write_s"] == pytest.approx(1.6, abs=1e-9)
    assert fixed["rto_write_s"] == pytest.approx(truth["rto_write_s"], abs=0.001)
    assert raw["rto_write_s"] == pytest.approx(truth["rto_write_s"] + SHIFT, abs=0.001)
    assert fixed["clock_offsets"] == [{"worker": "w1", "offset_s": SHIFT, "drift_s": 0.0, "uncertainty_s": 0.0004}]
    assert fixed["clock_uncertainty_s"] == 0.0004
    assert truth["clock_offsets"] == [] and truth["clock_uncertainty_s"] is None
    # the report's chart reads the same corrected times
    h = read_timeline(tmp_path / "fixed")
    assert sorted(h.t1) == pytest.approx(sorted(read_timeline(tmp_path / "true").t1), abs=1e-9)


def test_a_drifting_clock_is_corrected_by_interpolation(tmp_path):
    folder = two_workers(tmp_path, 0.0, clocks=False)
    samples = [ClockSample("w1", "start", 0.0, 0.1, 0.1, 0.001, 0.002, 3),
               ClockSample("w1", "end", 20.0, 20.3, 0.3, 0.002, 0.004, 3)]
    (folder / CLOCKS).write_text("".join(json.dumps(asdict(s)) + "\n" for s in samples))
    h = read_history(folder)
    stamped = [9.5, 11.0, 11.55, 15.0]  # w1's ops (read after w0's), on the worker's clock
    at = [x - (0.1 + (x - 0.1) / 20.2 * 0.2) for x in stamped]  # the offset it had at that moment
    assert list(h.t0[-4:]) == pytest.approx(at, abs=1e-9)
    assert h.clocks[0].drift_s == pytest.approx(0.2) and h.clock_uncertainty_s == 0.002


def test_bad_records_name_file_and_line_across_pieces(tmp_path, monkeypatch):
    import drillkit.evidence.columns as columns

    folder = drill(tmp_path, [W(i, i + 0.1) for i in range(200)])
    path = folder / "requests" / "w0.jsonl"
    lines = path.read_text().splitlines()
    lines.insert(150, "")
    lines[170] = lines[170].replace('"key": "write-', '"key": 5, "x": "')
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(columns, "PIECE_BYTES", 4096)
    with pytest.raises(EvidenceError, match=r"w0.jsonl: line 171: key: must be a string$"):
        read_history(folder)
    lines[170] = '{"t0": 1, "t1": 2, "op": "item_write", "key": "k", "ok": true}'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(EvidenceError, match=r"w0.jsonl: line 171: an item_write record: value: must be a string"):
        read_history(folder)
    lines[170] = '{"t0": 1, "t1": 2, "op": "write", "key": "k", "ok": true, "region": 7, "ts": "x"}'
    path.write_text("\n".join(lines) + "\n")
    assert len(read_history(folder)) == 200  # fields measure does not check may have any kind


def test_writes_keep_key_and_checksum_others_only_their_class(tmp_path):
    ops = [W(1, 1.1, "a"), R(1.2, 1.3, "a"), W(2, 2.1, "b", ok=False), {**R(3, 3.1, "c"), "client": "u1"}]
    h = read_history(drill(tmp_path, ops))
    assert h.write_key.to_pylist() == ["a", "b"] and h.write_checksum.to_pylist() == ["c-a", "c-b"]
    assert [h.classes[c] for c in h.op] == ["write", "read", "write", "read"]
    assert h.clients == ["u1"] and list(h.client) == [-1, -1, -1, 0]


def test_the_tail_returns_only_whole_lines_across_appends(tmp_path):
    (tmp_path / "requests").mkdir()
    path = tmp_path / "requests" / "w0.jsonl"
    rec = [json.dumps({"t0": i, "t1": i + 0.5, "op": "read", "key": f"k{i}", "ok": True}) + "\n" for i in range(4)]
    tail = HistoryTail(tmp_path)
    assert tail.new_records() == []
    path.write_text(rec[0] + rec[1][:10])
    assert [r["key"] for r in tail.new_records()] == ["k0"]
    assert tail.new_records() == []
    with open(path, "a") as fh:
        fh.write(rec[1][10:] + rec[2] + "not json\n" + rec[3][:-1])
    assert [r["key"] for r in tail.new_records()] == ["k1", "k2"]
    with open(path, "a") as fh:
        fh.write("\n")
    (tmp_path / "requests" / "w1.jsonl").write_text(rec[0])  # a worker that starts late
    assert [r["key"] for r in tail.new_records()] == ["k3", "k0"]


def test_the_tail_reads_a_bounded_amount_per_look(tmp_path):
    path = tmp_path / "events.jsonl"
    lines = [json.dumps({"t": i, "kind": "x" * 50}) + "\n" for i in range(100)]
    path.write_text("".join(lines))
    tail = JsonlTail(path, max_bytes=1000)
    seen = []
    for _ in range(20):
        got = tail.new_records()
        assert len(got) <= 1000 // len(lines[0])
        seen += got
    assert [r["t"] for r in seen] == list(range(100))


def test_the_timeline_leaves_out_what_it_cannot_read(tmp_path):
    (tmp_path / "requests").mkdir()
    good = json.dumps({"t0": 1, "t1": 2, "op": "write", "ok": True})
    (tmp_path / "requests" / "w.jsonl").write_text(
        "\n".join([good, '{"t0": 1, "t1": NaN, "op": "write", "ok": true}', "", good, '{"t0": 3, "t1": ']))
    h = read_timeline(tmp_path)
    assert len(h) == 2 and h.unreadable == 2
