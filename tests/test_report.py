"""The report stage: report.html and summary.md from synthetic evidence folders with known figures."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from drillkit.errors import EvidenceError
from drillkit.report import render_report
from drillkit.evidence.history import read_timeline
from drillkit.report.ops import bin_width

from support.sample_evidence import make_drill


class _Tables(HTMLParser):
    """Cells of the tables inside one section, as text, row by row."""

    def __init__(self, section: str):
        super().__init__()
        self.section, self.inside, self.rows, self.cell = section, False, [], None

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.inside = dict(attrs).get("id") == self.section
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if self.inside and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "section":
            self.inside = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data + " ")


def table(html: str, section: str) -> dict[str, list[str]]:
    p = _Tables(section)
    p.feed(html)
    return {r[0]: r[1:] for r in p.rows if r}


def section_text(html: str, section: str) -> str:
    m = re.search(rf'<section id="{section}">(.*?)</section>', html, re.S)
    assert m, f"no section {section}"
    return " ".join(re.sub(r"<[^>]+>", " ", m.group(1)).split())


@pytest.fixture(scope="module")
def passing(tmp_path_factory) -> Path:
    folder = make_drill(tmp_path_factory.mktemp("pass") / "drill")
    render_report(folder)
    return folder


@pytest.fixture(scope="module")
def failing(tmp_path_factory) -> Path:
    folder = make_drill(tmp_path_factory.mktemp("fail") / "drill", failing=True)
    render_report(folder)
    return folder


def html_of(folder: Path) -> str:
    return (folder / "report.html").read_text(encoding="utf-8")


def assert_self_contained(html: str) -> None:
    assert not re.search(r"https?://", html), "an external URL in the report"
    assert not re.search(r"""(?:src|href)\s*=\s*(?!["']?#)""", html), "a link to another file"
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"url\((?!#)", html)


def test_passing_report_shows_verdict_and_every_measured_value_first(passing):
    html = html_of(passing)
    assert re.search(r'class="banner pass".*?<div class="verdict">PASS</div>', html, re.S)
    assert "region-loss" in section_text(html, "targets") or "region-loss" in html[:html.index('id="targets"')]
    assert html.index('id="verdict"') < html.index('id="targets"') < html.index('id="timeline"')
    rows = table(html, "targets")
    assert rows["RTO — writes"][0] == "≤ 10 s"
    assert rows["RTO — writes"][1].startswith("3.200 s resolution ±0.021 s")
    assert rows["RTO — writes"][2] == "PASS"
    assert rows["RTO — reads"][1].startswith("1.100 s resolution ±0.017 s")
    assert rows["RPO"][:3] == ["≤ 2 s", "0.000 s", "PASS"]
    assert rows["Lost acknowledged writes"][1].startswith("0 of 4,877 acknowledged")
    assert rows["Lost writes acknowledged after the fault"][1].startswith("0")
    assert rows["Integrity — corrupt / unexpected records"][1:] == ["0 / 0", "PASS"]
    assert rows["Availability"][1].startswith("97.340 %")
    assert rows["Max replication lag"][1].startswith("0.412 s 18.0 KiB")
    assert 'id="findings"' not in html


def test_failing_report_names_each_missed_target_in_plain_words(failing):
    html = html_of(failing)
    assert '<div class="verdict">FAIL</div>' in html
    rows = table(html, "targets")
    assert rows["RTO — writes"][1].startswith("12.400 s") and rows["RTO — writes"][2] == "FAIL"
    assert rows["RTO — reads"][2] == "PASS"
    assert rows["RPO"][1:3] == ["1.880 s recovery point 12:00:08.120 UTC", "PASS"]
    assert rows["Lost acknowledged writes"][1].startswith("37 ") and rows["Lost acknowledged writes"][2] == "FAIL"
    findings = section_text(html, "findings")
    assert "Writes were unavailable for 12.400 s; the target is 10 s." in findings
    assert ("37 acknowledged writes were lost, acknowledged between 12:00:08.120 and "
            "12:00:09.870 UTC; the target allows 0.") in findings
    assert "Reads" not in findings and "RPO" not in findings
    lost = section_text(html, "lost")
    assert "w-0000000" in lost and "2024-11-21 12:00:08.120 UTC – 12:00:09.870 UTC" in lost


@pytest.mark.parametrize("which", ["passing", "failing"])
def test_report_is_one_self_contained_file_with_inline_charts(which, request):
    html = html_of(request.getfixturevalue(which))
    assert_self_contained(html)
    assert html.count('<svg class="chart"') == 2
    assert '<svg class="topology"' in html
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "duplicate ids between inline SVGs"
    assert "@media print" in html and "Content-Security-Policy" in html


def test_phases_timeline_marks_provenance_and_activities(failing):
    html = html_of(failing)
    phases = {k: v for k, v in table(html, "phases").items() if k != "#"}
    names = [v[0] for v in phases.values()]
    assert names[:3] == ["lose-region-a", "detection (region a seen unhealthy)", "promote-standby"]
    promote = next(v for v in phases.values() if v[0] == "promote-standby")
    assert promote[2:4] == ["+1.600 s", "1.110 s"]
    assert next(v for v in phases.values() if v[0] == "recovered (writes)")[3] == "12.400 s"
    assert "writes recovered +12.400 s" in html and "traffic switched a → b" in html
    assert "recovery point -1.880 s (RPO)" in html
    prov = table(html, "provenance")
    assert prov["Operator"] == ["sre-oncall"] and prov["Version — postgresql"] == ["16.4"]
    assert prov["Workspace git commit"] == ["3f2c9a1e0b7d4c6a8e9f1b2c3d4e5f6a7b8c9d0e"]
    acts = table(html, "activities")
    assert acts["promote-standby"][:2] == ["action", "succeeded"]
    assert "warm-standby" in section_text(html, "scenario")
    assert "20,000 operations in bins of 0.1 s" in html


def test_summary_md_has_verdict_table_and_findings(passing, failing):
    ok = (passing / "summary.md").read_text()
    assert ok.startswith("## ✅ PASS — region-loss")
    assert "| Objective | Target | Measured | Result |" in ok and "| --- | --- | --- | --- |" in ok
    assert "| RTO — writes | ≤ 10 s | 3.200 s" in ok
    bad = (failing / "summary.md").read_text()
    assert bad.startswith("## ❌ FAIL — region-loss")
    assert "- Writes were unavailable for 12.400 s; the target is 10 s." in bad


def test_only_summary_renders_and_says_what_is_missing(tmp_path):
    folder = make_drill(tmp_path / "bare", failing=True, only_summary=True)
    html = html_of(Path(render_report(folder)).parent)
    assert '<div class="verdict">FAIL</div>' in html
    assert_self_contained(html)
    assert '<svg class="chart"' not in html
    evidence = section_text(html, "evidence")
    for name in ("requests/*.jsonl", "events.jsonl", "lag.csv", "journal.json", "scenario.yaml",
                 "provenance.json"):
        assert name in evidence
    assert "No provenance.json" in html and "No journal.json" in html and "No scenario.yaml" in html
    assert "No lag.csv" in html
    assert table(html, "targets")["RTO — writes"][1].startswith("12.400 s")
    assert "Writes were unavailable for 12.400 s" in (folder / "summary.md").read_text()


def test_target_without_check_is_not_checked_rather_than_passed(tmp_path):
    folder = make_drill(tmp_path / "n", only_summary=True)
    _edit_summary(folder, checks=[], targets={"rto": "10s", "min_availability": 0.99})
    render_report(folder)
    rows = table(html_of(folder), "targets")
    assert rows["RTO — writes"][2] == "PASS"
    assert rows["Availability"] == ["≥ 99.000 %", "97.340 % of 20,000 operations", "not checked"]
    assert rows["RPO"][2] == "no target"


def test_no_summary_is_a_clear_error(tmp_path):
    with pytest.raises(EvidenceError, match="summary.json"):
        render_report(tmp_path)


def _edit_summary(folder: Path, **changes) -> None:
    path = folder / "summary.json"
    s = json.loads(path.read_text())
    for key, value in changes.items():
        if key in s["measures"]:
            s["measures"][key] = value
        else:
            s[key] = value
    path.write_text(json.dumps(s))


def test_everything_is_escaped(tmp_path):
    folder = make_drill(tmp_path / "x", n_ops=2000)
    _edit_summary(folder, scenario="<script>alert(1)</script>", reasons=["<b>bold</b>"],
                  verdict="fail", lost_keys_first=['k"><img src=x>'])
    with open(folder / "events.jsonl", "a") as fh:
        fh.write(json.dumps({"t": 1732190411.0, "kind": "activity.start", "name": "<i>x</i>",
                             "type": "action"}) + "\n")
    html = html_of(render_report(folder).parent)
    assert "<script>" not in html and "<img" not in html and "<i>x</i>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;i&gt;x&lt;/i&gt;" in html
    md = (folder / "summary.md").read_text()
    assert "<script>" not in md


def test_aborted_drill_and_unrecovered_class_and_unknown_check(tmp_path):
    folder = make_drill(tmp_path / "a", n_ops=2000)
    s = json.loads((folder / "summary.json").read_text())
    s["verdict"] = "aborted"
    s["measures"]["rto_by_op"]["write"].update(rto_s=None, t_recovered=None)
    s["measures"].update(rpo_s=None, writes_lost=None)
    for c in s["checks"]:
        if c["name"] in ("rpo", "max_lost_writes"):
            c.update(measured=None, passed=False, message=f"{c['name']} not measured")
    s["checks"].append({"name": "object_replication_sla", "target": "15m", "measured": 1234.5,
                        "passed": False, "message": "Objects replicated in 1234.500 s; the SLA is 15 min."})
    (folder / "summary.json").write_text(json.dumps(s))
    with open(folder / "events.jsonl", "a") as fh:
        fh.write(json.dumps({"t": 1732190420.0, "kind": "drill.aborted", "reason": "SIGINT"}) + "\n")
    html = html_of(render_report(folder).parent)
    assert 'class="banner aborted"' in html and '<div class="verdict">ABORTED</div>' in html
    findings = section_text(html, "findings")
    assert "The drill was aborted (SIGINT)" in findings
    assert "Writes never recovered: failures from 12:00:10.004 UTC lasted until the load ended" in findings
    assert "Objects replicated in 1234.500 s; the SLA is 15 min." in findings
    assert "RPO was not measured (the evidence holds no result for it); the target is 2 s." in findings
    assert "Lost acknowledged writes was not measured" in findings and "—" not in findings
    rows = table(html, "targets")
    assert rows["RTO — writes"][1:3] == ["not recovered resolution ±0.021 s · 5,123 failures", "FAIL"]
    assert rows["object_replication_sla"] == ["15m", "1234.500 Objects replicated in 1234.500 s; "
                                              "the SLA is 15 min.", "FAIL"]


def test_history_reader_agrees_with_json_on_odd_lines(tmp_path):
    (tmp_path / "requests").mkdir()
    req = tmp_path / "requests" / "r.jsonl"
    recs = [{"t0": 1.0 + i, "t1": 1.5 + i, "op": "write" if i % 2 else "read", "key": f"k{i}",
             "ok": i % 3 != 0, "status": 200, "region": "a", "checksum": None, "error": None}
            for i in range(50)]
    recs[7]["extra"] = {"t0": 99, "ok": True}
    recs[9]["op"] = 'we"ird'
    lines = [json.dumps(r) for r in recs] + [""] + [json.dumps(recs[0], separators=(",", ":"))]
    lines.append(json.dumps({**recs[1], "t1": float("nan")}))
    req.write_text("\n".join(lines) + '\n{"t0": 3, "t1": ')
    h = read_timeline(tmp_path)
    expect = recs + [recs[0]]
    assert h.unreadable == 2
    assert len(h) == len(expect)
    order = np.argsort(h.t0, kind="stable")
    exp_order = np.argsort([r["t0"] for r in expect], kind="stable")
    assert np.allclose(h.t0[order], [expect[i]["t0"] for i in exp_order])
    assert sorted(h.classes[c] for c in h.op) == sorted(r["op"] for r in expect)
    assert h.ok.sum() == sum(r["ok"] for r in expect)


def test_bins_stay_bounded_for_any_length():
    for span in (0.5, 20, 600, 86_400, 30 * 86_400):
        assert span / bin_width(span) <= 400


def test_million_op_report_stays_under_3_mb(tmp_path):
    folder = make_drill(tmp_path / "big", n_ops=1_000_000, duration=120.0, fault_at=40.0)
    report = render_report(folder)
    size = report.stat().st_size
    assert size <= 3 * 1024 * 1024, size
    html = report.read_text(encoding="utf-8")
    assert "1,000,000 operations" in html and html.count('<svg class="chart"') == 2
    assert_self_contained(html)


def test_the_active_active_section_counts_every_verdict_and_shows_a_pair_in_its_key_timeline(tmp_path):
    folder = make_drill(tmp_path / "drill", n_ops=2000)
    summary = json.loads((folder / "summary.json").read_text())
    t = summary["measures"]["t_fault"]

    def write(value, region, t0, t1, ts):
        return {"key": "hot-1", "value": value, "t0": t + t0, "t1": t + t1, "ok": True, "region": region,
                "ts": t + ts, "client": value.split("-")[0]}
    early = write("far-1", "A", -5.0, -4.9, -4.9)         # outside the pair's 50 ms window
    winner, loser = write("b-1", "B", 1.0, 1.1, 1.6), write("a-2", "A", 1.2, 1.3, 1.3)
    summary["measures"].update({
        "items_acked": 3, "items_lost": 0, "lww_discarded": 0, "lww_anomalies": 1, "items_resynced": 0,
        "items_superseded": 1, "items_divergent": 0, "rpo_items_s": 0.0, "regions_audited": ["A", "B"],
        "lww_findings": {"lww_anomaly": [{"key": "hot-1", "write": loser, "winner": winner,
                                          "final": {"A": "b-1", "B": "b-1"}, "timeline": [early, winner, loser]}]}})
    (folder / "summary.json").write_text(json.dumps(summary))
    html = Path(render_report(folder)).read_text()
    rows = table(html, "active-active")
    assert rows["LWW anomalies"][0] == "1" and rows["superseded"][0] == "1" and rows["lost"][0] == "0"
    assert rows["b"] == ["b-1", "B", "+1.000 s", "+1.100 s", "+1.600 s", "overwrote it"]   # by client
    assert rows["a"][0] == "a-2" and rows["a"][-1] == "lost to the next" and "far" not in rows
    text = section_text(html, "active-active")
    assert "Regions audited (standing at the end, after replication settled): A, B" in text
    assert "LWW anomaly: key hot-1" in text and "its final value: b-1" in text


def test_workers_clocks_are_shown_and_widen_rto_and_rpo(tmp_path):
    folder = make_drill(tmp_path / "drill", n_ops=2000, failing=True)
    summary = json.loads((folder / "summary.json").read_text())
    summary["measures"].update(clock_offsets=[
        {"worker": "host-b-4242", "offset_s": 0.3001, "drift_s": 0.0012, "uncertainty_s": 0.0004},
        {"worker": "host-c-77", "offset_s": -0.02, "drift_s": None, "uncertainty_s": 0.0009}],
        clock_uncertainty_s=0.0009)
    (folder / "summary.json").write_text(json.dumps(summary))
    html = Path(render_report(folder)).read_text()
    rows = table(html, "load-workers")
    assert rows["host-b-4242"] == ["—", "—", "—", "300.1 ms", "1.2 ms", "± 0.4 ms"]
    assert rows["host-c-77"] == ["—", "—", "—", "-20.0 ms", "one measurement", "± 0.9 ms"]
    targets = table(html, "targets")
    assert targets["RTO — writes"][1].startswith("12.400 s ± 0.9 ms (clock)")
    assert targets["RPO"][1].startswith("1.880 s ± 0.9 ms (clock)")
    summary["measures"].update(clock_offsets=[], clock_uncertainty_s=None)
    (folder / "summary.json").write_text(json.dumps(summary))
    html = Path(render_report(folder)).read_text()
    assert "<h2>Load workers</h2>" not in html
    assert not any("(clock)" in cell for row in table(html, "targets").values() for cell in row)
