"""Operator steps: the people of a game day in the runbook, timed like any other phase.

`operator_step` is a runbook action (`drillkit.chaos.gameday`, func `operator_step`). The drill
shows the step and waits until one of these ends it:

- the operator, at the drill's terminal, answers `done`, `failed` or `skipped`, with a note; or
  `run` (with a note), which runs the step's `automated` action now and ends the step with its
  outcome: the people decide, drillkit executes;
- `done_when`, a Chaos Toolkit probe (a `provider` and a `tolerance`, as in a steady-state
  hypothesis) polled every `poll` seconds, meets its tolerance: the step completed itself (the
  endpoint takes writes again, config.json names region B);
- without an operator (no terminal: CI), `automated`, a Chaos Toolkit action standing in for the
  people, runs first (then `done_when`, when given, must still hold). It succeeds when it raises
  nothing and meets its own `tolerance` if it states one; without one, a process must exit 0 and
  an HTTP call answer below 400.

The step is an activity, so it is a phase (its name, or its `drillkit` mark's `phase`) with the
budget `targets.phases` gives it, judged and reported beside the automated phases. Its events say
who ended it and how: `operator.waiting` and `operator.step` (docs/evidence.md). A step answered
`failed`, or not ended within `timeout`, fails its activity, and so the drill's runbook. A step
with neither `done_when` nor `automated` needs an operator: without one, `drillkit validate` and
`drillkit run` refuse it (exit 2, naming the step).
"""

from __future__ import annotations

import getpass
import os
import select
import sys
import time
from typing import Any

from drillkit.chaos import Configuration, events_file_from

OPERATOR_ENV = "DRILLKIT_OPERATOR"
"""`terminal`: the operator answers at the drill's terminal; `none`: nobody is there (CI). Unset:
a terminal when the drill's standard input is one."""
OUTCOMES = {"d": "done", "done": "done", "f": "failed", "failed": "failed", "fail": "failed",
            "s": "skipped", "skip": "skipped", "skipped": "skipped", "r": "run", "run": "run"}
MODULE, FUNC = "drillkit.chaos.gameday", "operator_step"


def operator_present() -> bool:
    mode = os.environ.get(OPERATOR_ENV, "").strip().lower()
    if mode in ("terminal", "none"):
        return mode == "terminal"
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (ValueError, OSError):
        return False


def steps(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    """The operator steps among the experiment's method and rollbacks."""
    out = []
    for activity in [*(experiment.get("method") or []), *(experiment.get("rollbacks") or [])]:
        provider = activity.get("provider") if isinstance(activity, dict) else None
        if isinstance(provider, dict) and provider.get("module") == MODULE and provider.get("func") == FUNC:
            out.append(activity)
    return out


def unattended_problem(experiment: dict[str, Any]) -> tuple[str, str] | None:
    """(step name, why) for the first step that needs a person when none is there; else None."""
    if operator_present():
        return None
    for activity in steps(experiment):
        args = (activity.get("provider") or {}).get("arguments") or {}
        if not args.get("done_when") and not args.get("automated"):
            return (str(activity.get("name")),
                    "an operator step with neither done_when nor automated needs a person at the drill's terminal, "
                    f"and there is none (no terminal; {OPERATOR_ENV}=terminal if there is one)")
    return None


def operator_step(title: str, instructions: str = "", done_when: dict[str, Any] | None = None,
                  automated: dict[str, Any] | None = None, timeout: float = 3600.0, poll: float = 1.0,
                  configuration: Configuration = None, secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    from chaoslib.exceptions import ActivityFailed

    from drillkit.evidence import OPERATOR_STEP, OPERATOR_WAITING, append_event

    events = events_file_from(configuration)
    present = operator_present()
    how = "terminal" if present else ("automated" if automated else "done_when" if done_when else "nobody")
    started = time.time()
    append_event(events, OPERATOR_WAITING, title=title, instructions=instructions, answered_by=how,
                 done_when=bool(done_when), automated=bool(automated), timeout_s=timeout)
    if present:
        _show(title, instructions, done_when, automated)
    outcome, by, note = _wait(present, title, done_when, automated, timeout, max(poll, 0.05),
                              configuration or {}, secrets or {})
    append_event(events, OPERATOR_STEP, title=title, outcome=outcome, by=by, note=note,
                 waited_s=round(time.time() - started, 6))
    if present:
        print(f"  step {title!r}: {outcome} ({by}){': ' + note if note else ''}", file=sys.stderr, flush=True)
    if outcome == "failed":
        raise ActivityFailed(f"operator step {title!r} failed ({by}){': ' + note if note else ''}")
    return {"outcome": outcome, "by": by, "note": note}


def _show(title: str, instructions: str, done_when: dict[str, Any] | None, automated: dict[str, Any] | None) -> None:
    lines = ["", f"▶ OPERATOR STEP: {title}"]
    lines += [f"    {line}" for line in instructions.strip().splitlines()]
    if done_when:
        lines.append("    (it also completes by itself once its check holds)")
    lines.append("  answer: done | failed | skipped, then an optional note, and Enter")
    if automated:
        lines.append("          run  (drillkit carries the step out now)")
    print("\n".join(lines), file=sys.stderr, flush=True)


def _wait(present: bool, title: str, done_when: dict[str, Any] | None, automated: dict[str, Any] | None,
          timeout: float, poll: float, configuration: dict[str, Any],
          secrets: dict[str, Any]) -> tuple[str, str, str]:
    """(outcome, by, note)."""
    if not present and automated:
        error = _carry_out(automated, configuration, secrets)
        if error is not None:
            return "failed", "automated", error
        if not done_when:
            return "done", "automated", ""
    if not present and not done_when and not automated:
        return "failed", "nobody", "no operator at a terminal and no done_when or automated alternative"
    deadline = time.monotonic() + timeout
    operator = getpass.getuser()
    while True:
        if done_when and _holds(done_when, configuration, secrets):
            return "done", "done_when", ""
        left = deadline - time.monotonic()
        if left <= 0:
            return "failed", "timeout", f"not ended within {timeout:g} s"
        if present:
            answer = _read_answer(min(poll, left))
            if answer is not None:
                word, _, note = answer.strip().partition(" ")
                outcome = OUTCOMES.get(word.lower())
                if outcome is None or (outcome == "run" and not automated):
                    print(f"  answer done, failed or skipped{', run' if automated else ''} (then a note)",
                          file=sys.stderr, flush=True)
                    continue
                if outcome == "run":
                    error = _carry_out(automated, configuration, secrets)  # type: ignore[arg-type]
                    by = f"operator {operator}, automated"
                    return ("failed", by, f"{note.strip()} ({error})".strip()) if error else ("done", by, note.strip())
                return outcome, f"operator {operator}", note.strip()
        else:
            time.sleep(min(poll, left))


_typed = bytearray()
"""What the operator typed and no step has read yet (read from the descriptor, not through
sys.stdin's buffer, so a line typed ahead is never left waiting behind select)."""


def _read_answer(wait: float) -> str | None:
    """A line from the drill's terminal, or None after `wait` seconds (a signal still interrupts)."""
    if b"\n" not in _typed:
        try:
            fd = sys.stdin.fileno()
            ready, _, _ = select.select([fd], [], [], wait)
            chunk = os.read(fd, 4096) if ready else b""
        except (ValueError, OSError):
            time.sleep(wait)
            return None
        if ready and not chunk:  # the terminal closed: nobody will answer
            time.sleep(wait)
        _typed.extend(chunk)
    if b"\n" not in _typed:
        return None
    line, _, rest = bytes(_typed).partition(b"\n")
    _typed[:] = rest
    text = line.decode("utf-8", "replace").strip()
    return text or None


def _run(activity: dict[str, Any], configuration: dict[str, Any], secrets: dict[str, Any]) -> tuple[Any, str | None]:
    """Run a Chaos Toolkit activity in-process: (its output, None) or (None, its error)."""
    from chaoslib.activity import run_activity
    from chaoslib.exceptions import ChaosException

    activity = {"name": "step", **activity} if "type" in activity else {"type": "probe", "name": "step", **activity}
    try:
        return run_activity(activity, configuration, secrets), None
    except ChaosException as exc:
        return None, str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__
    except Exception as exc:  # a provider's own bug: the step failed, the drill goes on judging it
        return None, f"{type(exc).__name__}: {exc}"[:300]


def _carry_out(action: dict[str, Any], configuration: dict[str, Any], secrets: dict[str, Any]) -> str | None:
    """Run the automated alternative; None when it succeeded, else why not. It succeeded when it
    raised nothing and its output meets its `tolerance` if it states one; without one, a process
    must exit 0 and an HTTP call answer below 400 (chaoslib reports both as output, not failure)."""
    output, error = _run({k: v for k, v in action.items() if k != "tolerance"}, configuration, secrets)
    if error is not None:
        return error
    if "tolerance" in action:
        from chaoslib.hypothesis import within_tolerance

        return None if within_tolerance(action["tolerance"], output, configuration, secrets) else \
            f"its output does not meet its tolerance {action['tolerance']!r}"
    kind = (action.get("provider") or {}).get("type")
    status = output.get("status") if isinstance(output, dict) else None
    if kind == "process" and status not in (0, None):
        last = str(output.get("stderr") or output.get("stdout") or "").strip().splitlines()[-1:] or [""]
        return f"the process exited {status}{': ' + last[0][:200] if last[0] else ''}"
    if kind == "http" and isinstance(status, int) and status >= 400:
        return f"the HTTP call answered {status}"
    return None


def _holds(probe: dict[str, Any], configuration: dict[str, Any], secrets: dict[str, Any]) -> bool:
    """The probe ran and its output meets its tolerance (default: true)."""
    from chaoslib.hypothesis import within_tolerance

    value, error = _run({k: v for k, v in probe.items() if k != "tolerance"}, configuration, secrets)
    if error is not None:
        return False
    try:
        return bool(within_tolerance(probe.get("tolerance", True), value, configuration, secrets))
    except Exception:
        return False
