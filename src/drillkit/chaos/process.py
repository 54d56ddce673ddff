"""Faults on the processes of a system drillkit did not build: kill, freeze, thaw.

Chaos Toolkit Python providers (`"module": "drillkit.chaos.process"`) that need no target, only
the drill's event log. Each finds its processes by `pid`, `pidfile` (its first line) or `command`
(a regular expression searched in each process's command line; every match), optionally with
every descendant (`tree`), and refuses what would hit drillkit itself: pid <= 1 (0 and -1 name
process groups: `kill -KILL 0` kills the caller's own group), drillkit's own process, its process
group and its ancestors.

The fault's instant is taken at the system call: `t` = `t_lo` just before the first `os.kill` (the
first process named, signalled first), `t_hi` just after the last (with `tree`, the last descendant). Then the effect is
confirmed before the provider returns: killed processes gone (a zombie is gone), frozen ones with
every thread stopped. A process that cannot be found, signalled or confirmed fails the activity
(ActivityFailed); as the activity failed, no fault took effect as far as the drill knows, and the
event log says `fault.failed` with the error. Success records `fault.injected` (thaw:
`fault.cleared`) with the instant and its interval, and returns them too (FAULT_INSTANT_KEY), so
the same call reports its instant wherever it runs.
"""

from __future__ import annotations

import os
import re
import signal as signals
import time
from pathlib import Path
from typing import Any

from drillkit.chaos import Configuration, events_file_from
from drillkit.errors import DrillkitError, FaultError
from drillkit.evidence import FAULT_CLEARED, FAULT_FAILED, FAULT_INJECTED, FAULT_INSTANT_KEY, append_event
from drillkit.targets.processes import ProcessEntry, alive, entry_for, stat_fields, wait_gone, wait_stopped

__all__ = ["freeze_process", "kill_process", "thaw_process"]

ENDING = frozenset({signals.SIGKILL, signals.SIGTERM, signals.SIGINT, signals.SIGQUIT})
"""Signals whose effect is confirmed as the process gone (others are confirmed delivered only)."""


def kill_process(pid: int | str | None = None, pidfile: str | None = None, command: str | None = None,
                 signal: str | int = "SIGKILL", tree: bool = False, timeout: float = 10.0,
                 fault: str = "process-kill", configuration: Configuration = None) -> dict[str, Any]:
    """Send `signal` (default SIGKILL) to the process(es) named, and with `tree` to every descendant;
    for SIGKILL, SIGTERM, SIGINT and SIGQUIT wait up to `timeout` s until each is gone."""
    return _fault(configuration, fault, lambda: _kill(pid, pidfile, command, signal, tree, timeout))


def freeze_process(pid: int | str | None = None, pidfile: str | None = None, command: str | None = None,
                   tree: bool = False, timeout: float = 10.0, fault: str = "process-freeze",
                   configuration: Configuration = None) -> dict[str, Any]:
    """SIGSTOP the process(es) named (a hung process: alive, sockets open, nothing answers) and wait
    until every thread is stopped; `thaw_process` (the rollback) resumes them."""
    return _fault(configuration, fault, lambda: _freeze(pid, pidfile, command, tree, timeout))


def thaw_process(pid: int | str | None = None, pidfile: str | None = None, command: str | None = None,
                 tree: bool = False, fault: str = "process-freeze",
                 configuration: Configuration = None) -> dict[str, Any]:
    """SIGCONT the process(es) named: the freeze's rollback; records `fault.cleared`."""
    events = _events_file(configuration)
    try:
        targets = find(pid, pidfile, command, tree)
        t_lo, t, t_hi = _signal(targets, signals.SIGCONT)
    except DrillkitError as exc:
        _activity_failed(exc)
    out = _instant(t, t_lo, t_hi) | {"pids": [e.pid for e in targets]}
    if events is not None:
        append_event(events, FAULT_CLEARED, t=t, t_lo=t_lo, t_hi=t_hi, fault=fault, pids=out["pids"])
    return out


# -- the steps -----------------------------------------------------------------------------------


def _fault(configuration: Configuration, fault: str, act) -> dict[str, Any]:
    events = _events_file(configuration)
    try:
        out = act()
    except DrillkitError as exc:
        if events is not None:
            now = time.time()
            append_event(events, FAULT_FAILED, t=now, t_lo=now, t_hi=now, fault=fault, error=str(exc))
        _activity_failed(exc)
    if events is not None:
        append_event(events, FAULT_INJECTED, t=out[FAULT_INSTANT_KEY], t_lo=out[f"{FAULT_INSTANT_KEY}_lo"],
                     t_hi=out[f"{FAULT_INSTANT_KEY}_hi"], fault=fault, instant="system call",
                     **{k: v for k, v in out.items() if not k.startswith(FAULT_INSTANT_KEY)})
    return out


def _kill(pid, pidfile, command, signal, tree, timeout) -> dict[str, Any]:
    sig = signal_of(signal)
    targets = find(pid, pidfile, command, tree)
    t_lo, t, t_hi = _signal(targets, sig)
    confirmed = sig in ENDING
    if confirmed:
        left = wait_gone(targets, float(timeout))
        if left:
            raise FaultError(f"{sig.name} sent, yet pid {', '.join(str(e.pid) for e in left)} still runs "
                             f"after {float(timeout):g} s")
    return _instant(t, t_lo, t_hi) | {"pids": [e.pid for e in targets], "signal": sig.name,
                                      "confirmed": "gone" if confirmed else "delivered"}


def _freeze(pid, pidfile, command, tree, timeout) -> dict[str, Any]:
    targets = find(pid, pidfile, command, tree)
    t_lo, t, t_hi = _signal(targets, signals.SIGSTOP)
    running = wait_stopped([e.pid for e in targets], float(timeout))
    if running:
        raise FaultError(f"SIGSTOP sent, yet thread(s) {', '.join(map(str, running[:5]))} still run after "
                         f"{float(timeout):g} s")
    return _instant(t, t_lo, t_hi) | {"pids": [e.pid for e in targets], "signal": "SIGSTOP",
                                      "confirmed": "stopped"}


def _signal(targets: list[ProcessEntry], sig: int) -> tuple[float, float, float]:
    """Signal each process, the first named first; (t_lo, t, t_hi): t_lo = t the moment just before
    the first call (the signal is sent inside it, microseconds later), t_hi after the last call. A process gone since it was found is skipped, unless
    it was the only one."""
    sent = 0
    t_lo = t = None
    for entry in targets:
        if not alive(entry):
            continue
        before = time.time()
        try:
            os.kill(entry.pid, sig)
        except ProcessLookupError:
            continue
        except PermissionError:
            raise FaultError(f"not permitted to signal pid {entry.pid}") from None
        after = time.time()
        if t is None:
            t_lo = t = before
        sent += 1
    if not sent:
        raise FaultError(f"no such process: pid {', '.join(str(e.pid) for e in targets)} exited before the signal")
    return t_lo, t, after


def _instant(t: float, t_lo: float, t_hi: float) -> dict[str, float]:
    return {FAULT_INSTANT_KEY: t, f"{FAULT_INSTANT_KEY}_lo": t_lo, f"{FAULT_INSTANT_KEY}_hi": t_hi}


# -- finding the processes ---------------------------------------------------------------------


def signal_of(value: str | int) -> signals.Signals:
    """`SIGKILL`, `KILL`, `kill` or 9."""
    try:
        if isinstance(value, int) or str(value).strip().isdigit():
            return signals.Signals(int(value))
        name = str(value).strip().upper()
        return signals.Signals[name if name.startswith("SIG") else f"SIG{name}"]
    except (KeyError, ValueError):
        raise FaultError(f"unknown signal {value!r}") from None


def find(pid: int | str | None, pidfile: str | None, command: str | None, tree: bool) -> list[ProcessEntry]:
    """The processes named by exactly one of pid, pidfile, command (and their descendants with
    `tree`), each with its kernel start time so that a pid reused meanwhile is never signalled."""
    given = [name for name, v in (("pid", pid), ("pidfile", pidfile), ("command", command)) if v not in (None, "")]
    if len(given) != 1:
        raise FaultError(f"name the process by exactly one of pid, pidfile, command (given: {', '.join(given) or 'none'})")
    if pidfile not in (None, ""):
        pids = [_pid_in(Path(str(pidfile)))]
    elif command not in (None, ""):
        pids = _matching(str(command))
    else:
        pids = [_as_pid(pid, "pid")]
    for p in pids:
        refuse(p)
    if tree:
        pids += [d for d in descendants(pids) if d not in pids]
        for p in pids:
            refuse(p)
    found = []
    for p in pids:
        try:
            found.append(entry_for(f"pid {p}", p))
        except DrillkitError:
            if p == pids[0]:
                raise FaultError(f"no such process: pid {p}") from None
    return found


def refuse(pid: int) -> None:
    """drillkit never signals init, a process group (0, -1, negative), itself, its group or an ancestor."""
    if pid <= 1:
        raise FaultError(f"refused: pid {pid} is {'init' if pid == 1 else 'a process group, not a process'}")
    me = os.getpid()
    if pid == me or pid in _ancestors(me):
        raise FaultError(f"refused: pid {pid} is drillkit's own process or one of its ancestors")
    fields = stat_fields(f"/proc/{pid}/stat")
    if fields is not None and int(fields[2]) == os.getpgrp():
        raise FaultError(f"refused: pid {pid} is in drillkit's own process group")


def _ancestors(pid: int) -> set[int]:
    out = set()
    while pid > 1:
        fields = stat_fields(f"/proc/{pid}/stat")
        if fields is None:
            break
        pid = int(fields[1])
        out.add(pid)
    return out


def descendants(roots: list[int]) -> list[int]:
    """Every descendant of `roots`, parents before children (one look through /proc)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        fields = stat_fields(f"/proc/{name}/stat") if name.isdigit() else None
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], list(roots)
    while todo:
        for child in sorted(children.get(todo.pop(0), [])):
            out.append(child)
            todo.append(child)
    return out


def _matching(pattern: str) -> list[int]:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise FaultError(f"command {pattern!r} is not a regular expression: {exc}") from None
    me, group, ancestors = os.getpid(), os.getpgrp(), _ancestors(os.getpid())
    found = []
    for name in sorted(os.listdir("/proc"), key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0)):
        if not name.isdigit() or int(name) == me or int(name) in ancestors:
            continue
        try:
            argv = Path(f"/proc/{name}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:
            continue
        fields = stat_fields(f"/proc/{name}/stat")
        if fields is None or int(fields[2]) == group or not argv[0]:
            continue
        if regex.search(" ".join(a.decode(errors="replace") for a in argv)):
            found.append(int(name))
    if not found:
        raise FaultError(f"no such process: no command line matches {pattern!r}")
    return found


def _pid_in(path: Path) -> int:
    try:
        first = path.read_text().splitlines()[0].strip()
    except (OSError, IndexError) as exc:
        raise FaultError(f"cannot read a pid from {path}: {getattr(exc, 'strerror', None) or 'empty file'}") from None
    return _as_pid(first, f"pidfile {path}")


def _as_pid(value: Any, what: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise FaultError(f"{what}: {value!r} is not a process id") from None


def _events_file(configuration: Configuration) -> Path | None:
    """The drill's event log; under a plain `chaos run` with no drill, none (the result still says
    the instant)."""
    try:
        return events_file_from(configuration)
    except DrillkitError:
        return None


def _activity_failed(exc: Exception):
    from chaoslib.exceptions import ActivityFailed

    raise ActivityFailed(str(exc)) from exc
