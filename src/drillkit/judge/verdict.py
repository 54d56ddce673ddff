"""The verdict of a drill is the verdict of its pytest probes: the same tests a CI job runs on the
evidence (`pytest probes/ --drill-evidence DIR`), run here in-process on the drill's folder."""

from __future__ import annotations

from pathlib import Path

import pytest


def run_probes(folder: Path) -> int:
    """Run the shipped probes against `folder`, writing junit.xml and probes.log there; pytest's exit code."""
    import contextlib

    from drillkit.evidence import JUNIT
    from drillkit.judge.probes import PROBES_DIR

    folder = Path(folder)
    # only drillkit's plugin: a verdict must not depend on the pytest plugins that happen to be
    # installed next to drillkit (hypothesis alone takes 0.8 s to import)
    args = [str(PROBES_DIR), "-c", str(PROBES_DIR / "probes.ini"), "--rootdir", str(PROBES_DIR),
            "--disable-plugin-autoload", "-p", "drillkit.judge.plugin",
            "--drill-evidence", str(folder), "--junitxml", str(folder / JUNIT), "-q", "-rfEs",
            "-o", "junit_suite_name=drillkit-probes", "-o", "console_output_style=classic"]
    with open(folder / "probes.log", "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return int(pytest.main(args))
