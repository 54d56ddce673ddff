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
    Plugin.check_fit(loaded, experiment)     refuse an experiment this kind of system cannot run
                                             (the sandbox's strategy rules); see check_fit below
    Plugin.own_workload: Workload | None     the API every system of this kind serves, which the
                                             canary drives when the load brings no mapping
    Plugin.up(spec, events_file=, scenario_dir=) -> target  start or attach; writes a state file
    Plugin.attach(state_file) -> target      another handle (chaos providers, watchdog threads)
    Plugin.reap_stale() -> [folder]          stop what a SIGKILLed drill left behind
    Plugin.born_with_the_drill: bool         it starts empty with the drill (every key in it is
                                             the drill's); else the drill's keys are scoped
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


def check_fit(loaded: Any, experiment: dict[str, Any]) -> None:
    """The experiment fits the scenario: its kind's own rules (the plug-in's), then what holds for
    every kind (drillkit.scenario.check_fit). InputError (exit 2) naming the file and field."""
    from drillkit.scenario import check_fit as scenario_fit

    plugin(loaded.scenario.system.kind).check_fit(loaded, experiment)
    scenario_fit(loaded, experiment)


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


FOLDERS: dict[str, tuple[str, str]] = {
    "sandbox": ("drillkit-sandbox-", "sandbox.json"),
    "external": ("drillkit-external-", "target.json"),
    "aws": ("drillkit-aws-", "target.json"),
}
"""Per kind, how its folder's name starts and what its state file is called."""


def verified_folder(state_file: str | Path) -> tuple[str, Path]:
    """The kind and folder of a target state file that may be brought down: named as its kind's
    (`drillkit-sandbox-*/sandbox.json`, `drillkit-external-*/target.json`, `drillkit-aws-*/target.json`),
    a regular file in a folder proven to be this user's (processes.unverified). Anything else is an
    InputError naming the file: nothing may be touched on its word."""
    from drillkit.targets import processes

    path = Path(state_file).absolute()
    found = [(kind, prefix) for kind, (prefix, name) in FOLDERS.items()
             if path.name == name and path.parent.name.startswith(prefix)]
    if not found:
        raise InputError("not a target state file (drillkit-sandbox-*/sandbox.json, drillkit-external-*/target.json "
                         "or drillkit-aws-*/target.json); nothing was touched", file=str(path))
    kind, prefix = found[0]
    why = processes.unverified(path.parent, prefix)
    if why is None and not processes.regular_file_of_mine(path):
        why = f"{path.name} is not this user's own regular file"
    if why is None and kind_of(path) != kind:
        why = f"its state file is not a {kind} target's"
    if why is not None:
        raise InputError(f"not a target folder of this user: {why}; nothing was touched", file=str(path))
    return kind, path.parent


def reap_stale() -> list[str]:
    """Reap what SIGKILLed drills of every kind left behind."""
    return [folder for kind in KINDS for folder in plugin(kind).reap_stale()]
