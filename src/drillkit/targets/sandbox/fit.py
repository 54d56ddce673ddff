"""The sandbox's fit rules: the steps of drillkit.chaos.actions an experiment may call on this
sandbox's strategy and app quota (`Sandbox.check_fit`, called by drillkit.targets.check_fit before
anything starts)."""

from __future__ import annotations

from typing import Any

from drillkit.errors import InputError
from drillkit.scenario import LoadedScenario

NEEDS_STANDBY = frozenset({"promote_standby", "pause_replay", "resume_replay", "rebuild_as_standby", "switchover",
                           "wait_caught_up"})
"""Runbook steps and faults that act on region B's hot standby, which backup-restore does not have."""
ACTIONS_MODULE = "drillkit.chaos.actions"


def check_strategy(loaded: LoadedScenario, experiment: dict[str, Any]) -> None:
    """Each sandbox step the experiment calls makes sense for the system's strategy and quota."""
    system = loaded.scenario.system
    config = experiment.get("configuration") if isinstance(experiment.get("configuration"), dict) else {}

    def value(v: Any) -> Any:
        if isinstance(v, str) and v.startswith("${") and v.endswith("}"):
            return config.get(v[2:-1], v)
        return v

    for section in ("method", "rollbacks"):
        for i, activity in enumerate(experiment.get(section) or []):
            provider = activity.get("provider") if isinstance(activity, dict) else None
            if not isinstance(provider, dict) or provider.get("module") != ACTIONS_MODULE:
                continue
            func, args = provider.get("func"), provider.get("arguments") or {}
            step = f"{loaded.experiment_path.name} {section}[{i}] {activity.get('name')!r} calls {func}"
            problem = None
            if system.strategy == "backup-restore" and func in NEEDS_STANDBY:
                problem = f"{step}, which needs region B's standby; strategy backup-restore has none"
            elif system.strategy == "backup-restore" and func == "inject_link_fault" and \
                    value(args.get("link")) == "repl-A-B":
                problem = f"{step} on link repl-A-B; strategy backup-restore has no replication link"
            elif func == "restore_region_from_backup" and system.strategy != "backup-restore":
                problem = f"{step}, which restores a region that has only backup copies; strategy {system.strategy} has a standby"
            elif func == "scale_app_tier" and isinstance(value(args.get("instances")), int) and \
                    value(args.get("instances")) > system.app.max_instances:
                problem = (f"{step} with {value(args.get('instances'))} instances, over the quota "
                           f"system.app.max_instances ({system.app.max_instances})")
            if problem:
                raise InputError(problem, file=str(loaded.path), field="system.strategy"
                                 if "strategy" in problem else "system.app.max_instances")
