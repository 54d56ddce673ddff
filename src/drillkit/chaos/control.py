"""A Chaos Toolkit control that writes every activity's start and end to events.jsonl as it happens.

The journal is written only at the end of a run; this log survives an interrupted one.
"""

from __future__ import annotations

import time
from typing import Any

from drillkit.chaos import system_from


def _event(configuration: dict[str, Any] | None, kind: str, **fields: Any) -> None:
    system_from(configuration).event(kind, **fields)


def _describe(activity: dict[str, Any]) -> dict[str, Any]:
    provider = activity.get("provider", {})
    return {"name": activity.get("name"), "type": activity.get("type"),
            "function": provider.get("func") or provider.get("path")}


def before_activity_control(context: dict, configuration: dict | None = None, **kwargs: Any) -> None:
    _event(configuration, "activity.start", **_describe(context))


def after_activity_control(context: dict, state: dict, configuration: dict | None = None, **kwargs: Any) -> None:
    status = state.get("status") if isinstance(state, dict) else None
    fields = _describe(context)
    fields.update(status=status, started=state.get("start"), duration=state.get("duration"))
    if state.get("exception"):
        fields["error"] = str(state["exception"][-1]).strip()
    _event(configuration, "activity.end", **fields)


def before_method_control(context: dict, configuration: dict | None = None, **kwargs: Any) -> None:
    _event(configuration, "method.start")


def after_method_control(context: dict, state: Any = None, configuration: dict | None = None, **kwargs: Any) -> None:
    _event(configuration, "method.end")


def before_rollback_control(context: dict, configuration: dict | None = None, **kwargs: Any) -> None:
    _event(configuration, "rollbacks.start")


def after_rollback_control(context: dict, state: Any = None, configuration: dict | None = None,
                           **kwargs: Any) -> None:
    _event(configuration, "rollbacks.end")


def after_experiment_control(context: dict, state: dict, configuration: dict | None = None, **kwargs: Any) -> None:
    _event(configuration, "experiment.end", status=state.get("status"), deviated=state.get("deviated"),
           t_end=time.time())
