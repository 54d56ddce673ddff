"""Targets: what a drill is pointed at, one plug-in per `system.kind`.

    sandbox/    the embedded two-region system drillkit starts and stops itself
    external/   a running system drillkit did not start: endpoint, workload mapping, audit adapter
    aws/        an AWS account (allowlisted, planned, trailed) over the external data plane; and
                the emulated account that rehearses it on the sandbox
    fake.py     an in-memory target for tests; tests/test_target_contract.py holds every target to
                the same contract

A plug-in is a class with the lifecycle below and whichever capability protocols of
drillkit.targets.capabilities its system has:

    Plugin.preflight(spec, scenario_dir, confirmed=)  refuse (InputError, exit 2) before anything
                                             starts; `confirmed`: the operator's --yes
    Plugin.up(spec, events_file=, scenario_dir=) -> target  start or attach; writes a state file
    Plugin.attach(state_file) -> target      another handle (chaos providers, watchdog threads)
    Plugin.reap_stale() -> [folder]          stop what a SIGKILLed drill left behind
    target.ready() -> [(event kind, fields)] wait until it can take load; what to record
    target.adopt(name, pid)                  take a harness process (Locust) into its registry
    target.facts() -> {name: value}          versions for the provenance
    target.service_failure() -> str | None   why the target's own machinery broke (watchdog)
    target.down()                            stop what it started (an external target: nothing)
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from drillkit.errors import InputError

KINDS: dict[str, str] = {
    "sandbox": "drillkit.targets.sandbox.system:Sandbox",
    "external": "drillkit.targets.external.target:ExternalTarget",
    "aws": "drillkit.targets.aws.target:AwsTarget",
    "fake": "drillkit.targets.fake:FakeTarget",  # tests only: no scenario can choose it
}


def plugin(kind: str) -> Any:
    """The plug-in class of a `system.kind`."""
    try:
        module, _, name = KINDS[kind].partition(":")
    except KeyError:
        raise InputError(f"unknown system kind {kind!r} (known: {', '.join(KINDS)})", field="system.kind") from None
    return getattr(importlib.import_module(module), name)


def kind_of(state_file: str | Path) -> str:
    """The kind a state file was written by (state files from before `kind` existed: sandbox)."""
    try:
        state = json.loads(Path(state_file).read_bytes())
    except (OSError, ValueError, RecursionError):
        raise InputError("no readable target state file", file=str(state_file)) from None
    kind = state.get("kind", "sandbox") if isinstance(state, dict) else None
    if not isinstance(kind, str):
        raise InputError("not a target state file (a JSON object naming its kind)", file=str(state_file))
    return kind


def attach(state_file: str | Path) -> Any:
    """A handle on the running target a state file describes."""
    return plugin(kind_of(state_file)).attach(state_file)


def reap_stale() -> list[str]:
    """Reap what SIGKILLed drills of every kind left behind."""
    return [folder for kind in KINDS for folder in plugin(kind).reap_stale()]
