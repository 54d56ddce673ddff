"""The pytest plugin: drill probes as a CI gate.

`pytest probes/ --drill-evidence DIR` re-judges an archived drill without starting anything
(`--drill SCENARIO`, which runs the drill first, is drillkit.run.plugin's). The probes read only
the evidence folder, through summarize() (measure, then judge), so CI and an auditor get the same
verdict. Every check of the drill is one test, `test_check[<check name>]`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drillkit.errors import DrillkitError

EVIDENCE_KEY = pytest.StashKey[Path]()
SUMMARY_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("drillkit", "disaster-recovery drill probes")
    group.addoption("--drill-evidence", metavar="DIR", help="judge the drill evidence in DIR (starts nothing)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "drill_probe: a probe judging a drill's evidence")
    evidence = config.getoption("--drill-evidence", None)
    if not evidence:
        return
    folder = Path(evidence)
    from drillkit.judge.summary import summarize

    try:
        config.stash[SUMMARY_KEY] = summarize(folder)
    except DrillkitError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[EVIDENCE_KEY] = folder


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`drill_check` is every check of the drill under judgement, one test each, named by the check."""
    if "drill_check" in metafunc.fixturenames:
        summary = metafunc.config.stash.get(SUMMARY_KEY, None)
        checks = summary["checks"] if summary is not None else []
        metafunc.parametrize("drill_check", checks, ids=[str(c["name"]) for c in checks])


@pytest.fixture(scope="session")
def drill_evidence(pytestconfig: pytest.Config) -> Path:
    """The evidence folder under judgement."""
    folder = pytestconfig.stash.get(EVIDENCE_KEY, None)
    if folder is None:
        pytest.skip("no drill to judge: pass --drill-evidence DIR or --drill SCENARIO")
    return folder


@pytest.fixture(scope="session")
def drill_summary(pytestconfig: pytest.Config, drill_evidence: Path) -> dict:
    """The measures, checks and verdict of the drill, recomputed from its evidence."""
    return pytestconfig.stash[SUMMARY_KEY]


def pytest_report_header(config: pytest.Config) -> str | None:
    folder = config.stash.get(EVIDENCE_KEY, None)
    return f"drill evidence: {folder}" if folder else None
