"""`time_scale`: a scenario states a seed's production timings, and the drill runs them faster.

With `time_scale: 60` one second of drill stands for a minute of production. Every duration the
scenario *writes* under `targets`, `alarms` (time metrics) and `system` is divided by the scale
here, once, when the scenario is loaded. A system's timings are those its spec declares
(`SandboxSpec.SCALED_DURATIONS`; a system drillkit did not build has none). Defaults are drill
timings already, and `load`, `stable` and `safeguards` are always the drill's own. The resolved
scenario stored with the evidence holds the drill values and `scaled: true`, so it is never
divided twice; the report multiplies back to show the production figure beside each scaled one (drillkit.report.fmt.scaled).
"""

from __future__ import annotations

from typing import Any

from drillkit.evidence import TIME_METRICS

TARGET_DURATIONS = ("rto", "rto_write", "rto_read", "rpo", "max_replication_lag", "max_time_to_detect",
                    "max_backup_age", "max_restore_time")
TARGET_BUDGETS = ("phases", "rpo_by_store", "rto_by_op")


def scaled_fields(data: dict[str, Any], scale: float, spec: Any) -> dict[str, Any]:
    """`data` (a scenario as set, `model_dump(exclude_unset=True)`) with its scaled durations
    divided; the system's are those its spec class declares (`SCALED_DURATIONS`, `SCALED_MAPS`)."""
    out = {**data, "scaled": True}
    targets = dict(out.get("targets") or {})
    for key in TARGET_DURATIONS:
        if targets.get(key) is not None:
            targets[key] = targets[key] / scale
    for key in TARGET_BUDGETS:
        if targets.get(key):
            targets[key] = {k: v / scale for k, v in targets[key].items()}
    if targets:
        out["targets"] = targets
    out["alarms"] = [{**a, "above": a["above"] / scale} if a.get("metric") in TIME_METRICS else a
                     for a in out.get("alarms") or []]
    system = out.get("system")
    if isinstance(system, dict) and (spec.SCALED_DURATIONS or spec.SCALED_MAPS):
        system = {k: dict(v) if isinstance(v, dict) else v for k, v in system.items()}
        for part, key in spec.SCALED_DURATIONS:
            if isinstance(system.get(part), dict) and system[part].get(key) is not None:
                system[part][key] = system[part][key] / scale
        for part, key in spec.SCALED_MAPS:
            if isinstance(system.get(part), dict) and system[part].get(key):
                system[part][key] = {name: v / scale for name, v in system[part][key].items()}
        out["system"] = system
    return out
