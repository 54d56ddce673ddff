"""`drillkit plan`: every mutating AWS call a drill would make, with its parameters and what undoes
it, and none made. The account is checked (allowlist, resources) exactly as before a drill, with
the session in plan mode: its before-call hook refuses any mutating call, so a planner that
tried one would fail here rather than change the account."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from drillkit.scenario import LoadedScenario
from drillkit.targets.aws.account import Account, PlannedCall
from drillkit.targets.aws.operations import PLANNERS

AWS_MODULE = "drillkit.chaos.aws"


@dataclass
class Step:
    phase: str
    name: str
    provider: str
    calls: list[PlannedCall] = field(default_factory=list)
    note: str = ""


@dataclass
class Plan:
    account: str
    caller: str
    emulated: bool
    resources: dict[str, Any]
    steps: list[Step]

    @property
    def mutating_calls(self) -> int:
        return sum(len(s.calls) for s in self.steps)

    def lines(self) -> list[str]:
        out = [f"account {self.account} ({'emulated' if self.emulated else 'REAL AWS'}) as {self.caller}",
               "resources: " + ", ".join(f"{k}={v}" for k, v in self.resources.items() if v)]
        for step in self.steps:
            out.append(f"{step.phase}  {step.name}  ({step.provider})")
            for call in step.calls:
                out.append(f"    would call {call.line()}")
                out.append(f"      undone by: {call.rollback}")
            if step.note:
                out.append(f"    {step.note}")
        out.append(f"{self.mutating_calls} mutating calls planned; none was made")
        return out


def _arguments(activity: dict[str, Any], configuration: dict[str, Any]) -> dict[str, Any]:
    from chaoslib import substitute

    return substitute(activity.get("provider", {}).get("arguments") or {}, configuration, {})


def plan_drill(loaded: LoadedScenario, experiment: dict[str, Any]) -> Plan:
    from chaoslib.configuration import load_configuration

    spec = loaded.scenario.system.aws
    account = Account(spec, blocking=True)
    identity = account.identity()
    resources = account.resolve()
    configuration = load_configuration(experiment.get("configuration") or {})
    steps: list[Step] = []
    for phase in ("method", "rollbacks"):
        for activity in experiment.get(phase) or []:
            provider = activity.get("provider", {})
            where = f"{provider.get('module', provider.get('type'))}.{provider.get('func', '')}".rstrip(".")
            step = Step(phase, activity.get("name", "?"), where)
            func = provider.get("func")
            if provider.get("module") == AWS_MODULE and func in PLANNERS:
                planner = PLANNERS[func]
                accepted = inspect.signature(planner).parameters
                args = {k: v for k, v in _arguments(activity, configuration).items() if k in accepted}
                step.calls = planner(account, **args)
                if phase == "rollbacks" and not step.calls:
                    step.note = "puts back what the method changed (see 'undone by' above)"
            elif provider.get("module") == AWS_MODULE:
                step.note = "a probe: reads only"
            elif str(provider.get("module", "")).startswith("chaosaws"):
                step.note = "a chaostoolkit-aws provider: its calls are allowlisted and trailed as it runs, not planned"
            else:
                step.note = "not a drillkit.chaos.aws action: makes no mutating AWS call"
            steps.append(step)
    return Plan(identity.account, account.guard.caller.get("arn", "?"), identity.emulated, resources, steps)
