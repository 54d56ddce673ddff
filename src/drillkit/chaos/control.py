"""A Chaos Toolkit control that writes every activity's start and end to events.jsonl as it happens.

The journal is written only at the end of a run; this log survives an interrupted one.

An activity of any provider (a `process` kill, an `http` call, chaostoolkit-aws, kubernetes)
marks itself as the drill's fault with a `drillkit` key:

    {"type": "action", "name": "kill-primary", "provider": {"type": "process", ...},
     "drillkit": {"fault": "primary-loss", "at": "end"}}

The control then records `fault.injected` (fault `primary-loss`) when the activity succeeded, at its
end (default: the fault has taken effect once the provider returned) or its start (`"at": "start"`),
as chaoslib timed the provider call, without the activity's pauses.
`{"drillkit": {"clears": "primary-loss"}}` records `fault.cleared` the same way.
`{"drillkit": {"phase": "promote"}}` puts the activity in the runbook phase `promote`: its events
carry the phase, and `targets.phases.promote` budgets the whole group (drillkit.measure.phases). drillkit's own
actions record their faults themselves, at the moment the fault took effect.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from drillkit.chaos import events_file_from
from drillkit.evidence import (ACTIVITY_END, ACTIVITY_START, EXPERIMENT_END, FAULT_CLEARED, FAULT_INJECTED,
                               ROLLBACKS_END, ROLLBACKS_START, append_event)

MARK_KEY = "drillkit"


def _event(configuration: dict[str, Any] | None, kind: str, **fields: Any) -> None:
    append_event(events_file_from(configuration), kind, **fields)


def _describe(activity: dict[str, Any]) -> dict[str, Any]:
    provider = activity.get("provider", {})
    out = {"name": activity.get("name"), "type": activity.get("type"),
           "function": provider.get("func") or provider.get("path")}
    phase = mark_of(activity).get("phase")
    return out | ({"phase": phase} if phase else {})


def mark_of(activity: dict[str, Any]) -> dict[str, Any]:
    """The activity's `drillkit` marking ({} for none); validated by drillkit.scenario.loader."""
    mark = activity.get(MARK_KEY)
    return mark if isinstance(mark, dict) else {}


def before_activity_control(context: dict, configuration: dict | None = None, **kwargs: Any) -> None:
    _event(configuration, ACTIVITY_START, **_describe(context))


def after_activity_control(context: dict, state: dict, configuration: dict | None = None, **kwargs: Any) -> None:
    status = state.get("status") if isinstance(state, dict) else None
    fields = _describe(context)
    fields.update(status=status, started=state.get("start"), duration=state.get("duration"))
    if state.get("exception"):
        fields["error"] = str(state["exception"][-1]).strip()
    _event(configuration, ACTIVITY_END, **fields)
    mark = mark_of(context)
    if mark and status == "succeeded":
        # chaoslib's own times of the provider call, without the activity's pauses
        t = _epoch(state.get("start") if mark.get("at") == "start" else state.get("end"))
        if "fault" in mark:
            _event(configuration, FAULT_INJECTED, t=t, fault=mark["fault"], activity=context.get("name"),
                   marked=True, **({"precondition": True} if mark.get("precondition") else {}))
        if "clears" in mark:
            _event(configuration, FAULT_CLEARED, t=t, fault=mark["clears"], activity=context.get("name"),
                   marked=True)


def _epoch(iso: str | None) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else time.time()


def before_method_control(context: dict, configuration: dict | None = None, **kwargs: Any) -> None:
    _event(configuration, "method.start")


def after_method_control(context: dict, state: Any = None, configuration: dict | None = None, **kwargs: Any) -> None:
    _event(configuration, "method.end")


def before_rollback_control(context: dict, configuration: dict | None = None, **kwargs: Any) -> None:
    _event(configuration, ROLLBACKS_START)


def after_rollback_control(context: dict, state: Any = None, configuration: dict | None = None,
                           **kwargs: Any) -> None:
    _event(configuration, ROLLBACKS_END)


def after_experiment_control(context: dict, state: dict, configuration: dict | None = None, **kwargs: Any) -> None:
    _event(configuration, EXPERIMENT_END, status=state.get("status"), deviated=state.get("deviated"),
           t_end=time.time())
