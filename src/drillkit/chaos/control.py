"""A Chaos Toolkit control that writes every activity's start and end to events.jsonl as it happens.

The journal is written only at the end of a run; this log survives an interrupted one.

An activity of any provider (a `process` kill, an `http` call, chaostoolkit-aws, kubernetes)
marks itself as the drill's fault with a `drillkit` key:

    {"type": "action", "name": "kill-primary", "provider": {"type": "process", ...},
     "drillkit": {"fault": "primary-loss", "at": "end"}}

The control then records `fault.injected` (fault `primary-loss`) only when the activity succeeded
by its provider's own contract, which chaoslib does not hold it to: a `process` provider must exit
with status 0 (chaoslib only logs a warning and carries on), an `http` provider must answer a
status below 400 (chaoslib has no expected status: it warns too), a `python` provider must return
without raising. Otherwise the control records `fault.failed` with the provider's error, and the
drill has no fault instant, no RTO and no RPO (docs/measurements.md).

The fault's instant `t` lies in the interval [`t_lo`, `t_hi`] recorded with it. A provider may
report its own instant (FAULT_INSTANT_KEY, epoch seconds; `drillkit_fault_t_lo`/`_hi` optional):
a process prints it as a JSON line on stdout, a Python provider returns it in a dict, an HTTP
answer carries it in its JSON body. A reported instant outside the activity's own span is not
taken. Otherwise the interval is the provider call as chaoslib timed it (its start and end,
without the activity's pauses) and `t` is its end (default: the fault has taken effect once the
provider returned) or its start (`"at": "start"`).
`{"drillkit": {"clears": "primary-loss"}}` records `fault.cleared` the same way.
`{"drillkit": {"phase": "promote"}}` puts the activity in the runbook phase `promote`: its events
carry the phase, and `targets.phases.promote` budgets the whole group (drillkit.measure.phases). drillkit's own
sandbox actions (drillkit.chaos.actions) record their faults themselves, at the moment the fault
took effect (named by their own arguments); drillkit.chaos.process records its `fault.injected` and
`fault.failed` itself, so a `fault` mark on it adds no second event (RECORDS_ITSELF).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from drillkit.chaos import events_file_from
from drillkit.evidence import (ACTIVITY_END, ACTIVITY_START, EXPERIMENT_END, FAULT_CLEARED, FAULT_FAILED,
                               FAULT_INJECTED, FAULT_INSTANT_KEY, METHOD_END, METHOD_START, ROLLBACKS_END,
                               ROLLBACKS_START, append_event)

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
    if not ({"fault", "clears"} & set(mark)):
        return
    lo, hi = _epoch(state.get("start")), _epoch(state.get("end"))
    error = provider_failure(context, state)
    common = {"activity": context.get("name"), "marked": True}
    if error is not None:
        if "fault" in mark and not _records_itself(context):
            _event(configuration, FAULT_FAILED, t=hi, t_lo=lo, t_hi=hi, fault=mark["fault"], error=error, **common)
        return
    t, lo, hi, source = fault_instant(state.get("output"), lo, hi, mark.get("at"))
    common.update(t_lo=lo, t_hi=hi, instant=source)
    if "fault" in mark and not _records_itself(context):
        _event(configuration, FAULT_INJECTED, t=t, fault=mark["fault"], **common,
               **({"precondition": True} if mark.get("precondition") else {}))
    if "clears" in mark:
        _event(configuration, FAULT_CLEARED, t=t, fault=mark["clears"], **common)


RECORDS_ITSELF = ("drillkit.chaos.process",)
"""The fault providers that record their own `fault.injected` (at the system call) and
`fault.failed`: a mark on them adds no second event. Every other provider, drillkit's AWS and
object actions included, is recorded by this control."""


def _records_itself(activity: dict[str, Any]) -> bool:
    provider = activity.get("provider") or {}
    return provider.get("type") == "python" and str(provider.get("module", "")) in RECORDS_ITSELF


def provider_failure(activity: dict[str, Any], state: dict[str, Any]) -> str | None:
    """Why the activity did not succeed by its provider's own contract, or None when it did."""
    if state.get("status") != "succeeded":
        lines = "".join(map(str, state.get("exception") or [])).strip().splitlines()
        return lines[-1].strip() if lines else f"the activity {state.get('status') or 'did not run'}"
    kind = (activity.get("provider") or {}).get("type")
    output = state.get("output")
    if kind == "process" and isinstance(output, dict) and output.get("status") != 0:
        said = (str(output.get("stderr") or "").strip() or str(output.get("stdout") or "").strip()).splitlines()
        return f"exit status {output.get('status')}" + (f": {said[-1][:200]}" if said else "")
    if kind == "http" and isinstance(output, dict) and isinstance(output.get("status"), int) \
            and output["status"] >= 400:
        body = output.get("body")
        text = (json.dumps(body) if isinstance(body, (dict, list)) else str(body or "")).strip()
        return f"HTTP status {output['status']}" + (f": {text[:200]}" if text else "")
    return None


def reported_instant(output: Any) -> dict[str, float] | None:
    """The instant a provider reported in its output (see the module's doc), or None."""
    found = None
    if isinstance(output, dict) and isinstance(output.get("body"), dict) and "headers" in output:
        found = output["body"]  # an HTTP answer
    elif isinstance(output, dict) and isinstance(output.get("stdout"), str) and "status" in output:
        for line in output["stdout"].splitlines():  # a process: its last such line
            line = line.strip()
            if line.startswith("{") and FAULT_INSTANT_KEY in line:
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                found = doc if isinstance(doc, dict) else found
    elif isinstance(output, dict):
        found = output  # a Python provider
    if not found or FAULT_INSTANT_KEY not in found:
        return None
    try:
        t = float(found[FAULT_INSTANT_KEY])
        return {"t": t, "t_lo": float(found.get(f"{FAULT_INSTANT_KEY}_lo", t)),
                "t_hi": float(found.get(f"{FAULT_INSTANT_KEY}_hi", t))}
    except (TypeError, ValueError):
        return None


def fault_instant(output: Any, lo: float, hi: float, at: str | None) -> tuple[float, float, float, str]:
    """`t`, `t_lo`, `t_hi` and where they come from: the provider's report when it lies within the
    activity's span (`provider`), else the span itself (`activity`)."""
    got = reported_instant(output)
    if got and lo <= got["t_lo"] <= got["t"] <= got["t_hi"] <= hi:
        return got["t"], got["t_lo"], got["t_hi"], "provider"
    return (lo if at == "start" else hi), lo, hi, "activity"


def _epoch(iso: str | None) -> float:
    return datetime.fromisoformat(iso).timestamp() if iso else time.time()


def before_method_control(context: dict, configuration: dict | None = None, **kwargs: Any) -> None:
    _event(configuration, METHOD_START)


def after_method_control(context: dict, state: Any = None, configuration: dict | None = None, **kwargs: Any) -> None:
    _event(configuration, METHOD_END)


def before_rollback_control(context: dict, configuration: dict | None = None, **kwargs: Any) -> None:
    _event(configuration, ROLLBACKS_START)


def after_rollback_control(context: dict, state: Any = None, configuration: dict | None = None,
                           **kwargs: Any) -> None:
    _event(configuration, ROLLBACKS_END)


def after_experiment_control(context: dict, state: dict, configuration: dict | None = None, **kwargs: Any) -> None:
    _event(configuration, EXPERIMENT_END, status=state.get("status"), deviated=state.get("deviated"),
           t_end=time.time())
