"""One drill through `drillkit run` as a subprocess, and what it left: for the benchmarks."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Drilled:
    exit: int
    summary: dict
    events: list[dict]
    ops: list[dict]


def run(scenario: Path, out: Path, timeout: float = 300) -> Drilled:
    proc = subprocess.run([sys.executable, "-m", "drillkit.cli", "run", str(scenario), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    return Drilled(proc.returncode, json.loads((out / "summary.json").read_text()),
                   [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines() if line],
                   [json.loads(line) for f in (out / "requests").glob("*.jsonl") for line in f.read_text().splitlines()])


def out_folder(given: Path | None, prefix: str) -> Path:
    """Where a benchmark keeps its drills' evidence: `--out`, or a new temporary folder."""
    folder = given or Path(tempfile.mkdtemp(prefix=prefix))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
