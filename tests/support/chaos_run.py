"""Plain Chaos Toolkit (`chaos run`) against a sandbox brought up by `drillkit sandbox up`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from drillkit.net import http_json
from support.scenario_copy import ROOT


BIN = Path(sys.executable).parent


SEED = 30


def seed(endpoint: str, objects: bool) -> None:
    """What the drill's load would have written: records (and objects) for the faults to act on."""
    for i in range(SEED):
        assert http_json(f"{endpoint}/records", "POST", {"key": f"seed-{i}", "payload": f"payload-{i}"})[0] == 201
        if objects:
            assert http_json(f"{endpoint}/objects/seed-{i}", "PUT", {"payload": f"payload-{i}"})[0] == 201


def plain_chaos_run(scenario: Path, experiment: Path, tmp_path: Path, *options: str, objects: bool | None = None):
    """`drillkit sandbox up` for `scenario`, seeded as its load would have; `chaos run` of
    `experiment` against it (with `options`, e.g. `--var k:float=1`); `drillkit sandbox down`
    whatever happened. Returns the chaos run, the journal and the sandbox's events."""
    pointer = tmp_path / "pointer"
    cli = [str(BIN / "drillkit"), "sandbox"]
    up = subprocess.run([*cli, "up", "--scenario", str(scenario), "--pointer", str(pointer)], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    try:
        state = pointer.read_text().strip()
        endpoint = next(line.split()[-1] for line in up.stdout.splitlines() if "endpoint" in line)
        if objects is not None:
            seed(endpoint, objects)
        journal = tmp_path / "journal.json"
        run = subprocess.run([str(BIN / "chaos"), "--log-file", str(tmp_path / "chaos.log"), "run", *options,
                              "--journal-path", str(journal), str(experiment)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             env={**os.environ, "DRILLKIT_SANDBOX": state})
        events = (Path(state).parent / "events.jsonl").read_text()
    finally:
        down = subprocess.run([*cli, "down", "--pointer", str(pointer)], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert down.returncode == 0, down.stderr
    for said in (up.stdout + up.stderr, down.stdout + down.stderr):  # only drillkit's own lines
        assert "Warning" not in said and "Traceback" not in said, said
    return run, json.loads(journal.read_text()), events
