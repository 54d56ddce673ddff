"""Where a drill's CPU goes: every process's CPU time over a window, read from /proc, by component.

Linux only (/proc). A process counts when it lives through the whole window; the CPU of children
it reaped inside the window (PostgreSQL's short-lived backends, reaped by the postmaster) counts
with it, through the parent's cutime/cstime.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass

# (what a process's command line holds, the component it belongs to), first match wins
COMPONENTS = (
    ("drillkit.targets.sandbox.router", "router"),
    ("drillkit.targets.sandbox.app", "app"),
    ("drillkit.targets.sandbox.linkproxy", "link proxies"),
    ("locust", "Locust"),
    ("postgres", "PostgreSQL"),
    ("drillkit.cli run", "harness"),
)
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Snapshot:
    t: float
    busy: float  # the machine's busy CPU seconds so far (/proc/stat)
    total: float  # and all CPU seconds so far
    processes: dict[int, tuple[float, str]]  # pid: (CPU seconds, itself and reaped children; component)


def component(cmdline: str) -> str:
    return next((name for needle, name in COMPONENTS if needle in cmdline), "other")


def snapshot() -> Snapshot:
    from drillkit.targets.processes import stat_fields

    processes = {}
    for entry in os.listdir("/proc"):
        fields = stat_fields(f"/proc/{entry}/stat") if entry.isdigit() else None
        if fields is None:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        # utime stime cutime cstime: fields 14-17 of stat, [11:15] after the command name
        processes[int(entry)] = (sum(int(f) for f in fields[11:15]) / TICK, component(cmdline))
    with open("/proc/stat") as fh:
        cpu = [int(x) for x in fh.readline().split()[1:]]
    idle = cpu[3] + cpu[4]  # idle + iowait
    return Snapshot(time.time(), (sum(cpu) - idle) / TICK, sum(cpu) / TICK, processes)


def cpu_by_component(a: Snapshot, b: Snapshot) -> dict:
    """CPU seconds each component used between two snapshots, and how busy the machine was."""
    used: Counter[str] = Counter()
    for pid, (seconds, name) in b.processes.items():
        if pid in a.processes and a.processes[pid][1] == name:
            used[name] += seconds - a.processes[pid][0]
    return {"window_s": round(b.t - a.t, 3), "cpu_s": {k: round(v, 3) for k, v in used.most_common()},
            "machine_busy": round((b.busy - a.busy) / (b.total - a.total), 3) if b.total > a.total else None}
