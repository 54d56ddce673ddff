"""An independent clock on a fault's system call: drillkit.chaos.process.kill_process run in a child
process traced by strace, whose `-ttt` timestamp of the `kill` call (taken by strace at the call's
entry stop, while the caller waits inside it) is the ground truth the recorded instant is held to.
Used by tests/test_fault_truth.py and bench/fault_instant.py (not shipped)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

KILLER = ("import json, sys\n"
          "from drillkit.chaos.process import kill_process\n"
          "print(json.dumps(kill_process(**json.loads(sys.argv[1]))))\n")


@dataclass(frozen=True)
class TracedKill:
    result: dict
    syscall_t: float
    """strace's timestamp of the kill(2) of the first process (its entry)."""
    syscall_s: float
    """How long that call took, as strace saw it (-T)."""
    events: list[dict]

    @property
    def error_s(self) -> float:
        return abs(self.result["drillkit_fault_t"] - self.syscall_t)


def strace() -> str | None:
    return shutil.which("strace")


def kill_traced(first_pid: int, **args) -> TracedKill:
    """kill_process(**args) in a child under strace; `first_pid` the process it must signal first."""
    with tempfile.TemporaryDirectory(prefix="fault-clock-") as tmp:
        trace, events = Path(tmp) / "trace", Path(tmp) / "events.jsonl"
        done = subprocess.run([strace(), "-ttt", "-T", "-e", "trace=kill", "-e", "signal=none", "-o", str(trace),
                               sys.executable, "-c", KILLER, json.dumps(args)], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "DRILLKIT_EVENTS": str(events)})
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        calls = [m for m in (re.match(r"^(\d+\.\d+) kill\((\d+), (SIG\w+)\)\s+= 0 <(\d+\.\d+)>", line)
                             for line in trace.read_text().splitlines()) if m]
        first = next(m for m in calls if int(m.group(2)) == first_pid)
        recorded = [json.loads(line) for line in events.read_text().splitlines() if line]
    return TracedKill(result, float(first.group(1)), float(first.group(4)), recorded)


VICTIM_TREE = ("import subprocess, sys, time\n"
               "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']) for _ in range(2)]\n"
               "print(' '.join(str(k.pid) for k in kids), flush=True)\n"
               "time.sleep(600)\n")


def start_tree() -> tuple[subprocess.Popen, list[int]]:
    """A process tree of a system drillkit did not start: a parent and two children, in a session of
    their own; (the parent, the children's pids)."""
    parent = subprocess.Popen([sys.executable, "-c", VICTIM_TREE], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    kids = [int(p) for p in parent.stdout.readline().split()]
    return parent, kids


def kill_postmaster_under_load(box, writers: int = 4, acked_first: int = 50, **args) -> TracedKill:
    """kill_process, traced, on region A's postmaster and its backends (by its pid file) while
    `writers` clients write through the global endpoint, once `acked_first` writes were acknowledged."""
    import threading
    import time
    import uuid

    from drillkit.net import http_json

    stop, acked = threading.Event(), []

    def writer() -> None:
        while not stop.is_set():
            try:
                status, _ = http_json(f"{box.endpoint}/records", "POST", {"key": uuid.uuid4().hex, "payload": "x"},
                                      timeout=1.0)
                acked.append(status == 201)
            except OSError:
                acked.append(False)

    pidfile = Path(box.state.regions["A"].datadir) / "postmaster.pid"
    postmaster = int(pidfile.read_text().splitlines()[0])
    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for t in threads:
        t.start()
    try:
        while sum(acked) < acked_first:
            time.sleep(0.01)
        return kill_traced(postmaster, pidfile=str(pidfile), tree=True, **args)
    finally:
        stop.set()
        for t in threads:
            t.join()
