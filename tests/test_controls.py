"""The report's "What this drill evidences": the facts the evidence shows, with their figures, and
the controls of a mapping (drillkit's shipped one, or the user's, kept with the drill) whose every
need those facts meet; nothing is claimed that the evidence does not show."""

from __future__ import annotations

import html as html_lib
import json
import re
from pathlib import Path

import yaml

from drillkit.report import render_report
from drillkit.scenario.controls import load_mapping, shipped_path

from support.sample_evidence import make_drill
from support.scenario_copy import copy_scenario


def section(folder: Path) -> str:
    html = (folder / "report.html").read_text()
    start = html.index('id="evidences"')
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html[start:html.index("</section>", start)]))
    return html_lib.unescape(text).replace(" :", ":")


def test_the_shipped_mapping_names_the_controls_the_issue_lists():
    ids = [c.id for c in load_mapping().controls]
    for wanted in ("SOC 2 A1.3", "ISO 22301 §8.5", "ISO/IEC 27001:2022 A.5.30", "DORA Art. 11–12",
                   "DORA Art. 24–25", "NIST SP 800-34", "PCI DSS 12.10.2", "HIPAA §164.308(a)(7)(ii)(D)"):
        assert any(i.startswith(wanted) for i in ids), wanted
    assert shipped_path().is_file()


def test_a_passing_drill_evidences_a_judged_recovery_test_and_no_restore(tmp_path):
    folder = make_drill(tmp_path / "drill", n_ops=2000)
    render_report(folder)
    text = section(folder)
    assert "recovery test: A recovery test of the system (scenario region-loss) on 2024-11-21" in text
    assert "RTO measured 3.200 s against 10.000 s: met" in text
    evidenced, _, unmet = text.partition("Not evidenced by this drill")
    assert "SOC 2 A1.3" in evidenced and "PCI DSS 12.10.2" in evidenced
    assert "HIPAA §164.308(a)(7)(ii)(B) (needs restore test)" in unmet
    assert "drillkit's shipped mapping" in text


def test_an_aborted_drill_evidences_no_recovery_test(tmp_path):
    folder = make_drill(tmp_path / "drill", n_ops=2000)
    summary = json.loads((folder / "summary.json").read_text())
    summary["verdict"] = "aborted"
    (folder / "summary.json").write_text(json.dumps(summary))
    render_report(folder)
    text = section(folder)
    assert "shows no recovery test" in text
    evidenced = text.partition("Not evidenced by this drill")[0]
    assert "SOC 2 A1.3" not in evidenced


def test_the_mapping_kept_with_the_drill_is_the_one_rendered(tmp_path):
    folder = make_drill(tmp_path / "drill", n_ops=2000)
    (folder / "controls.yaml").write_text(yaml.safe_dump({"format": "drillkit-controls/1", "controls": [
        {"id": "ACME-BCP-7", "asks": "Failover is rehearsed against the RTO.", "needs": ["recovery_test", "objectives_judged"]}]}))
    render_report(folder)
    text = section(folder)
    assert "ACME-BCP-7" in text and "SOC 2" not in text and "kept with this drill (controls.yaml)" in text


def test_a_scenario_names_its_own_mapping_and_a_bad_one_is_refused(tmp_path, drillkit_cli):
    good = tmp_path / "acme.yaml"
    good.write_text(yaml.safe_dump({"format": "drillkit-controls/1", "controls": [
        {"id": "ACME-BCP-7", "asks": "Failover is rehearsed.", "needs": ["recovery_test"]}]}))
    path = copy_scenario("scenarios/region-loss.yaml", tmp_path, "s",
                         lambda doc: doc.update(readiness={"controls": "acme.yaml"}))
    assert drillkit_cli("validate", str(path)).returncode == 0
    good.write_text(yaml.safe_dump({"format": "drillkit-controls/1", "controls": [
        {"id": "ACME-BCP-7", "asks": "Failover is rehearsed.", "needs": ["vibes"]}]}))
    run = drillkit_cli("validate", str(path))
    assert run.returncode == 2 and "acme.yaml: controls.0.needs.0:" in run.stderr, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    good.unlink()
    run = drillkit_cli("validate", str(path))
    assert run.returncode == 2 and "readiness.controls" in run.stderr
