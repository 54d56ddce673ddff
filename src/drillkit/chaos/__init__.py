"""drillkit's Chaos Toolkit extension: faults, runbook actions and probes for `drillkit.chaos.*` providers.

Every provider takes the running target from the experiment configuration key `drillkit_sandbox`
(in experiments: `{"type": "env", "key": "DRILLKIT_SANDBOX"}`), the path of the target's state
file, and records its events in the drill's event log (`drillkit_events`, else the log the
target was started with). Each provider is declared with `@action(Capability, ...)`: it
receives a `Context` and fails its activity with one line when the target lacks a capability.
"""

from __future__ import annotations

import functools
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from drillkit.errors import DrillkitError, InputError

CONFIG_KEY = "drillkit_sandbox"
ENV_KEY = "DRILLKIT_SANDBOX"
EVENTS_CONFIG_KEY = "drillkit_events"
EVENTS_ENV_KEY = "DRILLKIT_EVENTS"

Configuration = dict[str, Any] | None


@dataclass
class Context:
    """What a provider acts on (the target) and where it writes what happened (the event log)."""

    target: Any
    events_file: Path

    def record(self, kind: str, **fields: Any) -> dict:
        from drillkit.evidence import append_event

        return append_event(self.events_file, kind, **fields)

    def read_events(self) -> list[dict]:
        from drillkit.evidence import read_events

        return read_events(self.events_file.parent)


def events_file_from(configuration: Configuration, target: Any = None) -> Path:
    """The drill's event log; only a plain `chaos run` (no `drillkit_events`) needs the target's state."""
    config = configuration or {}
    events = config.get(EVENTS_CONFIG_KEY) or os.environ.get(EVENTS_ENV_KEY)
    if events:
        return Path(events)
    return (target if target is not None else context_from(configuration).target).events_file


def context_from(configuration: Configuration) -> Context:
    from drillkit.targets import attach

    config = configuration or {}
    path = config.get(CONFIG_KEY) or os.environ.get(ENV_KEY)
    if not path:
        raise InputError(f"no system to act on: set configuration {CONFIG_KEY!r} or ${ENV_KEY} "
                         "(run `drillkit sandbox up` first)")
    target = attach(path)
    return Context(target, events_file_from(configuration, target))


def action(*needs: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a provider: `fn(ctx, *args)` becomes `fn(*args, configuration=None)` for chaoslib.

    The target must offer every capability in `needs`; drillkit's own errors become the
    activity's failure (ActivityFailed), one line each.
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())[1:]
        config = inspect.Parameter("configuration", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                   annotation="Configuration")
        plain = [p for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        others = [p for p in params if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD]
        public = sig.replace(parameters=[*plain, config, *others])

        @functools.wraps(fn)
        def provider(*args: Any, **kwargs: Any) -> Any:
            from chaoslib.exceptions import ActivityFailed

            from drillkit.targets.capabilities import require

            bound = public.bind(*args, **kwargs)
            configuration = bound.arguments.pop("configuration", None)
            call = {}
            for name, value in bound.arguments.items():
                if public.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                    call.update(value)
                else:
                    call[name] = value
            try:
                ctx = context_from(configuration)
                for capability in needs:
                    require(ctx.target, capability)
                return fn(ctx, **call)
            except DrillkitError as exc:
                raise ActivityFailed(str(exc)) from exc

        provider.__signature__ = public  # type: ignore[attr-defined]
        provider.needs = needs  # type: ignore[attr-defined]
        return provider

    return wrap
