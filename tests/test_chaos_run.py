"""Every experiment in experiments/ also runs under plain `chaos run` against `drillkit sandbox up`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from support.scenario_copy import ROOT
from support.chaos_run import plain_chaos_run


def scenario_per_experiment() -> dict[str, Path]:
    """The first scenario (by name) that drives each experiment: its system settings are the sandbox's."""
    found: dict[str, Path] = {}
    for scenario in sorted((ROOT / "scenarios").glob("*.yaml")):
        experiment = (scenario.parent / yaml.safe_load(scenario.read_text())["experiment"]).resolve()
        found.setdefault(experiment.name, scenario)
    return found


def test_every_experiment_has_a_scenario():
    experiments = {p.name for p in (ROOT / "experiments").glob("*.json")}
    assert experiments == set(scenario_per_experiment())


@pytest.mark.parametrize("experiment", sorted(scenario_per_experiment()))
def test_plain_chaos_run_against_a_sandbox_from_the_cli(experiment, tmp_path, no_leftovers):
    scenario = scenario_per_experiment()[experiment]
    _, result, events = plain_chaos_run(scenario, ROOT / "experiments" / experiment, tmp_path,
                                        objects="objects" in (yaml.safe_load(scenario.read_text())["system"] or {}))
    failed = [(r["activity"]["name"], r.get("exception")) for r in result["run"] if r["status"] != "succeeded"]
    assert (result["status"], result["deviated"], failed) == ("completed", False, [])
    assert '"kind": "fault.injected"' in events and '"kind": "activity.end"' in events
