"""`drillkit history`: the trend of RTO, RPO and verdicts per scenario across drills."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from drillkit.errors import EvidenceError, InputError
from drillkit.report import render_report
from drillkit.report.history import print_table, scan, write_html

from support.sample_evidence import T_START, make_drill

DAY = 86_400.0
# (folder, scenario, days after T_START, verdict, rto_s, rpo_s, writes_lost)
DRILLS = [
    ("2024-11-21-region-loss", "region-loss", 0, "pass", 3.2, 0.0, 0),
    ("2024-12-05-region-loss", "region-loss", 14, "fail", 12.4, 1.88, 37),
    ("2025-01-09-region-loss", "region-loss", 49, "pass", 2.75, 0.0, 0),
    ("ci/2024-11-30-lag", "replica-lag-then-region-loss", 9, "fail", None, 4.5, 120),
]


def _drill(root: Path, name: str, scenario: str, days: float, verdict: str, rto, rpo, lost) -> Path:
    folder = make_drill(root / name, n_ops=1000, failing=verdict == "fail")
    s = json.loads((folder / "summary.json").read_text())
    shift = days * DAY
    s["scenario"], s["verdict"] = scenario, verdict
    for k in ("t_start", "t_end", "t_fault"):
        s["measures"][k] += shift
    s["measures"].update(rto_s=rto, rto_write_s=rto, rpo_s=rpo, writes_lost=lost, writes_acked=4877,
                         writes_lost_after_fault=3 if lost > 100 else 0,
                         not_recovered=["write"] if rto is None else [])
    (folder / "summary.json").write_text(json.dumps(s))
    y = (folder / "scenario.yaml").read_text().replace("name: region-loss", f"name: {scenario}")
    (folder / "scenario.yaml").write_text(y)
    return folder


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reports")
    for row in DRILLS:
        _drill(root, *row)
    render_report(root / DRILLS[0][0])
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a drill")
    (root / "broken").mkdir()
    (root / "broken" / "summary.json").write_text("{ truncated")
    return root


def test_scan_finds_each_drill_and_skips_what_is_not_one(root):
    found = scan(root)
    assert sorted(d.name for d in found.drills) == sorted(r[0] for r in DRILLS)
    assert len(found.skipped) == 1 and found.skipped[0].startswith("broken: ")
    groups = found.by_scenario()
    assert list(groups) == ["region-loss", "replica-lag-then-region-loss"]
    assert [d.verdict for d in groups["region-loss"]] == ["pass", "fail", "pass"]
    first = groups["region-loss"][0]
    assert first.start == T_START and first.operator == "sre-oncall" and first.targets["rto"] == 10.0
    assert groups["replica-lag-then-region-loss"][0].rto_text() == "not recovered"


def table_rows(root: Path) -> list[list[str]]:
    buf = io.StringIO()
    print_table(scan(root), file=buf)
    return [re.split(r"\s{2,}", line.strip()) for line in buf.getvalue().splitlines()
            if re.search(r"\d{4}-\d\d-\d\d \d\d:", line)]


def test_terminal_table_rows_grouped_by_scenario_in_time_order(root):
    rows = table_rows(root)
    assert rows == [
        ["region-loss", "2024-11-21 12:00:00.000", "PASS", "3.200 s", "0.000 s", "0",
         "2024-11-21-region-loss"],
        ["2024-12-05 12:00:00.000", "FAIL", "12.400 s", "1.880 s", "37", "2024-12-05-region-loss"],
        ["2025-01-09 12:00:00.000", "PASS", "2.750 s", "0.000 s", "0", "2025-01-09-region-loss"],
        ["replica-lag-then-region-loss", "2024-11-30 12:00:00.000", "FAIL", "not recovered",
         "4.500 s", "120 (+3 after fault)", "ci/2024-11-30-lag"],
    ]


def test_history_html_is_self_contained_with_a_trend_chart_per_scenario(root):
    page = write_html(scan(root))
    assert page == root / "history.html"
    html = page.read_text(encoding="utf-8")
    assert not re.search(r"https?://", html), "an external URL in history.html"
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r"\ssrc\s*=", html) and not re.search(r"url\((?!#)", html)
    assert "default-src 'none'" in html
    assert html.count('<svg class="chart"') == 2
    assert 'aria-label="RTO and RPO per drill over time (3 drills)"' in html
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "two charts share an id"
    assert re.findall(r'href="([^"#]+)"', html) == ["2024-11-21-region-loss/report.html"]
    assert (root / "2024-11-21-region-loss" / "report.html").is_file()
    for text in ("12.400 s", "2.750 s", "not recovered", "120 (+3 after fault)", "RTO ≤ 10 s",
                 "2 pass, 1 fail", "broken: "):
        assert text in html, text
    assert html.index("region-loss</h2>") < html.index("replica-lag-then-region-loss</h2>")


def test_names_from_the_evidence_are_escaped(tmp_path):
    folder = _drill(tmp_path, "x", "<script>alert(1)</script>", 0, "pass", 1.0, 0.0, 0)
    assert folder.is_dir()
    html = write_html(scan(tmp_path)).read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_scan_refuses_a_missing_or_empty_folder_or_a_single_drill(tmp_path, root):
    with pytest.raises(InputError, match="no such folder"):
        scan(tmp_path / "absent")
    with pytest.raises(EvidenceError, match="no drill evidence folder"):
        scan(tmp_path)
    with pytest.raises(InputError, match="one drill's evidence folder"):
        scan(root / DRILLS[0][0])


def test_cli_history_exit_codes(root, drillkit_cli, tmp_path):
    ok = drillkit_cli("history", str(root))
    assert ok.returncode == 0, ok.stderr
    assert "12.400 s" in ok.stdout and f"trend page: {root / 'history.html'}" in ok.stdout
    assert ok.stderr.startswith("skipped broken: ")
    for args in (["history", str(tmp_path / "absent")], ["history", str(tmp_path)],
                 ["history", str(root / DRILLS[0][0])]):
        r = drillkit_cli(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_cli_history_defaults_to_reports(tmp_path):
    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "drillkit.cli", "history"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, env=dict(os.environ))

    missing = run()
    assert missing.returncode == 2 and "reports: no such folder" in missing.stderr
    _drill(tmp_path / "reports", "d1", "region-loss", 0, "pass", 3.2, 0.0, 0)
    found = run()
    assert found.returncode == 0, found.stderr
    assert (tmp_path / "reports" / "history.html").is_file() and "3.200 s" in found.stdout


@pytest.mark.parametrize("columns", ["60", "100"])
def test_a_narrow_terminal_gets_every_figure_whole(tmp_path, columns):
    """At 100 columns the table once cut its figures to fit ("0.52" for 0.525 s, "MISSING
    (registered PA") and dropped the Folder column: a narrow terminal now wraps the lines instead."""
    _drill(tmp_path / "reports", "a-folder-name", "a-scenario-with-a-long-name", 0, "pass", 0.525, 0.0, 0)
    found = subprocess.run([sys.executable, "-m", "drillkit.cli", "history", str(tmp_path / "reports")],
                           capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": columns})
    assert found.returncode == 0, found.stderr
    for whole in ("0.525 s", "0.000 s", "a-scenario-with-a-long-name", "a-folder-name", "Lost writes", "Folder"):
        assert whole in found.stdout, found.stdout
