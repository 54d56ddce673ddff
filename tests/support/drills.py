"""Real drills through the CLI: a shipped scenario varied, run, and its evidence read back."""

from __future__ import annotations

import json
from pathlib import Path

from support.scenario_copy import copy_scenario


def variant(tmp_path: Path, base: str, name: str, system: dict | None = None, load: dict | None = None,
            targets: dict | None = None, safeguards: dict | None = None) -> Path:
    """A copy of a library scenario with some settings changed, written into tmp_path."""
    def change(data: dict) -> None:
        data["name"] = name
        for key, changes in (("system", system), ("load", load), ("targets", targets), ("safeguards", safeguards)):
            data.setdefault(key, {})
            for k, v in (changes or {}).items():
                if isinstance(v, dict):
                    data[key].setdefault(k, {}).update(v)
                else:
                    data[key][k] = v
    return copy_scenario(f"scenarios/{base}", tmp_path, name, change)


def run_drill(drillkit_cli, scenario: Path, out: Path, *extra: str) -> tuple[int, dict, list[dict]]:
    proc = drillkit_cli("run", str(scenario), "--out", str(out), *extra)
    assert "Traceback" not in proc.stderr, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines() if line]
    return proc.returncode, summary, events


def ops(out: Path) -> list[dict]:
    return [json.loads(line) for f in (out / "requests").glob("*.jsonl") for line in f.read_text().splitlines()]


def first(events: list[dict], kind: str, **match) -> dict:
    return next(e for e in events if e["kind"] == kind and all(e.get(k) == v for k, v in match.items()))


def served_again(out: Path, healed: float) -> float:
    """When the canary, on the harness's clock, first had an answer to an op sent after `healed`."""
    return min(op["t1"] for op in ops(out) if op.get("client") == "canary" and op["ok"] and op["t0"] >= healed)


def write_record(box, key: str) -> str:
    """Write one record through the global endpoint; the region that acknowledged it."""
    from drillkit.net import http_json

    status, body = http_json(f"{box.endpoint}/records", "POST", {"key": key, "payload": f"payload of {key}"})
    assert status == 201, body
    return body["region"]
