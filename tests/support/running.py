"""A drill started in the background (`drillkit run` as a subprocess) and waited on, event by
event, for the tests that interrupt, kill or tamper with it mid-run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from support.scenario_copy import ROOT


def start_drill(out: Path, scenario: str = "scenarios/region-loss.yaml") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "drillkit.cli", "run", scenario, "--out", str(out), "--quiet"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def events(out: Path) -> list[dict]:
    path = out / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for_event(proc: subprocess.Popen, out: Path, kind: str, match: dict, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e["kind"] == kind and all(e.get(k) == v for k, v in match.items()) for e in events(out)):
            return
        assert proc.poll() is None, f"drill ended before {kind} {match}: {proc.stderr.read()}"
        time.sleep(0.01)
    raise AssertionError(f"no {kind} {match} within {timeout}s")
