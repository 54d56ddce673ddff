"""Load workers' clocks (drillkit.evidence.clocks) and the one writer of the history
(drillkit.evidence.recorder), on numbers set by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from drillkit.errors import EvidenceError
from drillkit.evidence.clocks import CLOCKS, append_clock_sample, best_of, corrections, read_clock_samples
from drillkit.evidence.recorder import OpRecorder, client_file


def test_the_round_trip_with_the_least_delay_gives_the_offset_and_half_of_it_the_uncertainty():
    # a worker 0.25 s ahead; three round trips of 10, 2 and 6 ms, the answer in the middle of each
    exchanges = [(100.000, 100.255, 100.010), (101.000, 101.251, 101.002), (102.000, 102.253, 102.006)]
    sample = best_of("w1", "start", exchanges)
    assert sample.offset_s == pytest.approx(0.25, abs=1e-9)
    assert sample.uncertainty_s == pytest.approx(0.001) and sample.rtt_s == pytest.approx(0.002)
    assert sample.samples == 3 and sample.worker_t == 101.251
    assert best_of("w1", "start", []) is None


def test_corrections_interpolate_between_measurements_and_hold_flat_outside(tmp_path):
    # a clock 0.1 s ahead at worker time 1000 that drifts to 0.3 s ahead at worker time 1100
    for phase, w, offset, u in (("start", 1000.0, 0.1, 0.001), ("end", 1100.0, 0.3, 0.004)):
        exchange = (w - offset - u, w, w - offset + u)
        append_clock_sample(tmp_path, best_of("w1", phase, [exchange]))
    fix = corrections(tmp_path)["w1"]
    assert fix.offset_s == pytest.approx(0.1) and fix.drift_s == pytest.approx(0.2)
    assert fix.uncertainty_s == pytest.approx(0.004)
    worker_t = np.array([900.0, 1000.0, 1050.0, 1100.0, 1200.0])
    assert fix.apply(worker_t) == pytest.approx([899.9, 999.9, 1049.8, 1099.7, 1199.7])
    assert "canary" not in corrections(tmp_path)  # a file never measured is on the harness clock


def test_a_damaged_clock_line_names_the_file_and_line(tmp_path):
    append_clock_sample(tmp_path, best_of("w1", "start", [(1.0, 1.0, 1.0)]))
    with open(tmp_path / CLOCKS, "a") as fh:
        fh.write('{"worker": "w2"}\n')
    with pytest.raises(EvidenceError, match=r"clocks.jsonl: line 2: not a clock sample"):
        read_clock_samples(tmp_path)


def test_the_recorder_writes_whole_v1_lines_set_off_by_the_skew(tmp_path):
    path = client_file(tmp_path, "host/with space-12")
    assert path.name == "host_with_space-12.jsonl"
    recorder = OpRecorder.to_file(path, skew=-0.3)
    recorder.record(10.0, 10.5, "write", "k1", True, 201, "A", "ab" * 32, None, client="u1")
    recorder.write_lines(json.dumps({"t0": 1, "t1": 2, "op": "read", "key": "k1", "ok": False}) + "\n", 1)
    recorder.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"t0": 9.7, "t1": 10.2, "op": "write", "key": "k1", "ok": True, "status": 201, "region": "A",
                        "checksum": "ab" * 32, "error": None, "client": "u1"}
    assert lines[1]["op"] == "read" and recorder.count == 2
