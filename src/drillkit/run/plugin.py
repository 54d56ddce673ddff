"""The pytest plugin's `--drill SCENARIO`: run the drill once per session, then judge its evidence
as `--drill-evidence` does (drillkit.judge.plugin). It lives with the harness, which it runs; the
judging plugin below it starts nothing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from drillkit.errors import DrillkitError


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("drillkit", "disaster-recovery drill probes")
    group.addoption("--drill", metavar="SCENARIO", help="run the drill in SCENARIO once, then judge it")
    group.addoption("--drill-out", metavar="DIR", help="evidence folder for --drill (default: a new temp folder)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Before the judging plugin reads `--drill-evidence`: run the drill, then judge its folder."""
    scenario = config.getoption("--drill", None)
    if not scenario:
        return
    if config.getoption("--drill-evidence", None):
        raise pytest.UsageError("--drill and --drill-evidence exclude each other")
    config.option.drill_evidence = str(run_drill(Path(scenario), config.getoption("--drill-out")))


def run_drill(scenario: Path, out: str | None) -> Path:
    from drillkit.run.drill import Drill
    from drillkit.scenario import load_scenario

    folder = Path(out) if out else Path(tempfile.mkdtemp(prefix="drillkit-probes-")) / "evidence"
    try:
        Drill(load_scenario(scenario), folder, judge_with_probes=False).run()
    except DrillkitError as exc:
        raise pytest.UsageError(str(exc)) from None
    return folder
