"""The in-flight drill: region A's client link delays every byte past the clients' timeout,
never cleared, so the load stops with every user mid-request (tests/test_inflight_drill.py,
bench/inflight.py --slow-link)."""

from __future__ import annotations

import json
from pathlib import Path

from support.scenario_copy import copy_scenario


LATENCY_MS = 1500


EXPERIMENT = {
    "version": "1.0.0",
    "title": "Every byte to region A is delayed past the clients' timeout, until the end",
    "description": "No failover, no rollback: the writes in flight when the load stops time out.",
    "configuration": {"drillkit_sandbox": {"type": "env", "key": "DRILLKIT_SANDBOX", "default": ""}},
    "controls": [{"name": "drillkit-events", "provider": {"type": "python", "module": "drillkit.chaos.control"}}],
    "method": [{"type": "action", "name": "slow-client-link", "provider": {
        "type": "python", "module": "drillkit.chaos.actions", "func": "inject_link_fault",
        "arguments": {"link": "client-A", "kind": "latency", "ms": LATENCY_MS}}}],
}


def slow_link_scenario(tmp_path: Path) -> Path:
    experiment = tmp_path / "slow-link.json"
    experiment.write_text(json.dumps(EXPERIMENT))

    def change(doc: dict) -> None:
        doc["experiment"] = str(experiment)
        doc["system"]["routing"] = {"policy": "manual", "upstream_timeout": "4s"}
        doc["load"].update(users=10, warmup="2s", duration="30s", request_timeout="1s", canary=None, cooldown="4s")
        doc["targets"] = {"max_unexpected": 0}

    return copy_scenario("scenarios/ground-truth-outage.yaml", tmp_path, "inflight", change)
