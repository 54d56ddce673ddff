"""Starting, identifying and stopping the processes a target starts, and reaping those of dead runs.

Every target that starts a process (the sandbox's services, the harness's Locust) registers it in its
folder's `processes.json` with its kernel start time, so only a process that is still ours is ever
signalled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

from drillkit.errors import SandboxError
from drillkit.evidence import write_atomic

FAILURE_SUFFIX = ".failed.json"
"""A service that fails on its own writes `<name>.failed.json` in its folder (the path spawn_service
gives it as --failure-file; drillkit.targets.sandbox.net.fail writes it)."""


class ProcessEntry(BaseModel):
    """A process the sandbox started; `start_ticks` proves a pid is still ours before we kill it."""

    name: str
    pid: int
    start_ticks: int
    region: str | None = None
    group: bool = True



@contextmanager
def shielded():
    """Cleanup must finish: a second Ctrl-C or SIGTERM must not orphan processes half-way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            # saved before it is replaced: a signal landing between the two calls must not leave
            # the handler ignored for the rest of the process (every later SIGINT lost)
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, signal.SIG_IGN)
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


REGISTRY = "processes.json"


def write_registry(root: Path, entries: list[ProcessEntry]) -> None:
    """Every process a sandbox started, on disk as soon as it starts: what a reaper may stop."""
    # whole or not at all: the watchdog reads it while the drill writes it
    write_atomic(Path(root) / REGISTRY, json.dumps([e.model_dump() for e in entries]))


def read_registry(root: Path) -> list[ProcessEntry]:
    path = Path(root) / REGISTRY
    if not path.exists():
        return []
    return [ProcessEntry.model_validate(e) for e in json.loads(path.read_text())]


def stat_fields(path: str) -> list[str] | None:
    """The fields of a /proc/.../stat file after the command name (so `[0]` is the state, `[2]` the
    process group, `[19]` the start time); None when the process or thread is gone."""
    try:
        return Path(path).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_ticks(pid: int) -> int | None:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat): a pid reused later differs."""
    fields = stat_fields(f"/proc/{pid}/stat")
    return None if fields is None else int(fields[19])


def is_ours(entry: ProcessEntry) -> bool:
    return start_ticks(entry.pid) == entry.start_ticks


def alive(entry: ProcessEntry) -> bool:
    """Ours and running: an exited child not yet reaped (a zombie) is not alive."""
    return is_ours(entry) and not _zombie(entry.pid)


def entry_for(name: str, pid: int, region: str | None = None) -> ProcessEntry:
    ticks = start_ticks(pid)
    if ticks is None:
        raise SandboxError(f"{name} (pid {pid}) exited right after it started")
    return ProcessEntry(name=name, pid=pid, start_ticks=ticks, region=region)


def spawn_service(module: str, args: list[str], root: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """Start `python -m module` in its own session, in `/`: it reports its ports through a ready
    file, and why it failed, if it ever does on its own, through a failure file (see `failures`)."""
    root = Path(root).absolute()
    ready = root / f"{name}.ready.json"
    ready.unlink(missing_ok=True)
    failure = root / f"{name}{FAILURE_SUFFIX}"
    failure.unlink(missing_ok=True)
    log = open(root / f"{name}.log", "ab")
    try:
        proc = subprocess.Popen([sys.executable, "-m", module, *args, "--ready-file", str(ready),
                                 "--failure-file", str(failure)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd="/")
    finally:
        log.close()
    return proc, ready


def wait_ready(proc: subprocess.Popen, ready: Path, name: str, timeout: float = 60) -> dict:
    """The service's ready file; a service that exits first is an error naming the end of its log.
    The bound is generous: on a loaded machine, importing moto alone can take seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            return json.loads(ready.read_text())
        if proc.poll() is not None:
            log = ready.parent / f"{name}.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
            raise SandboxError(f"{name} exited ({proc.returncode}) before it was ready: {' | '.join(tail)}")
        time.sleep(0.02)
    raise SandboxError(f"{name} not ready after {timeout:.0f}s")


def failures(root: Path) -> list[dict]:
    """The services of the sandbox in `root` that failed on their own, oldest first:
    `{"service", "reason", "t", "pid"}` each."""
    found = []
    for path in Path(root).glob(f"*{FAILURE_SUFFIX}"):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda f: f.get("t", 0))


def kill_group(entry: ProcessEntry, sig: int = signal.SIGKILL) -> bool:
    """Signal the process group of one of our processes; never touches a pid that is not ours."""
    if not is_ours(entry):
        return False
    try:
        os.killpg(entry.pid, sig) if entry.group else os.kill(entry.pid, sig)
    except ProcessLookupError:
        return False
    return True


def wait_gone(entries: list[ProcessEntry], timeout: float) -> list[ProcessEntry]:
    deadline = time.monotonic() + timeout
    alive = list(entries)
    while alive and time.monotonic() < deadline:
        for e in alive:
            try:
                os.waitpid(e.pid, os.WNOHANG)
            except ChildProcessError:
                pass
        alive = [e for e in alive if is_ours(e) and not _zombie(e.pid)]
        if alive:
            time.sleep(0.02)
    return alive


def group_members(entries: list[ProcessEntry]) -> list[int]:
    """The pids of these processes and of every member of the process groups they lead (one look
    through /proc, a few milliseconds: take it before signalling, not while timing a signal)."""
    groups = {e.pid for e in entries if e.group}
    pids = {e.pid for e in entries}
    found = []
    for name in os.listdir("/proc"):
        fields = stat_fields(f"/proc/{name}/stat") if name.isdigit() else None
        if fields is not None and (int(name) in pids or int(fields[2]) in groups):
            found.append(int(name))
    return found


def wait_stopped(pids: list[int], timeout: float) -> list[int]:
    """Wait until every thread of these processes is stopped (a SIGSTOP has taken effect, or it
    exited); returns the threads still running at the timeout.

    A signal only marks a thread: one on another CPU or inside a system call stops a little later,
    so a frozen process can still act for a few milliseconds after the signal went out."""
    deadline = time.monotonic() + timeout
    while True:
        running = [tid for pid in pids for tid, state in _thread_states(pid) if state not in "TtZX"]
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(0.0005)


def _thread_states(pid: int) -> list[tuple[int, str]]:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found = ((int(tid), stat_fields(f"/proc/{pid}/task/{tid}/stat")) for tid in tids)
    return [(tid, fields[0]) for tid, fields in found if fields is not None]


def _zombie(pid: int) -> bool:
    fields = stat_fields(f"/proc/{pid}/stat")
    return fields is None or fields[0] == "Z"


def stop_all(entries: list[ProcessEntry], grace: float = 3.0) -> None:
    """SIGTERM every group (postmasters get SIGINT, a fast shutdown), then SIGKILL what remains."""
    for e in entries:
        kill_group(e, signal.SIGINT if e.name.startswith("postgres") else signal.SIGTERM)
    left = wait_gone(entries, grace)
    for e in left:
        kill_group(e, signal.SIGKILL)
    wait_gone(left, 2.0)
    for e in entries:
        try:
            os.killpg(e.pid, 0)
        except (ProcessLookupError, PermissionError):
            continue
        # the leader is gone but members of its group (postgres backends) may linger
        try:
            os.killpg(e.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def continue_all(entries: list[ProcessEntry]) -> None:
    """A frozen postmaster ignores the fast-shutdown signal until continued, then shuts down cleanly."""
    for e in entries:
        kill_group(e, signal.SIGCONT)


OWNER_FILE = "owner.json"


def claim(root: Path, owned: bool = True) -> None:
    """Mark `root` as belonging to this process: when it dies outright, the next drill reaps it.
    An unowned folder (`drillkit sandbox up`) lives until it is brought down by hand."""
    owner = {"pid": os.getpid(), "start_ticks": start_ticks(os.getpid())} if owned else None
    (root / OWNER_FILE).write_text(json.dumps(owner))


def abandoned(root: Path) -> bool:
    """Whether the process that claimed `root` is dead (never a live drill's, nor an unowned one)."""
    try:
        owner = json.loads((root / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return owner is not None and start_ticks(owner["pid"]) != owner["start_ticks"]


def stop_registered(root: Path, grace: float = 1.0) -> int:
    """Stop every process `root`'s registry holds that is still ours (continued first: a frozen
    one must be able to exit); how many there were."""
    ours = [e for e in read_registry(root) if is_ours(e)]
    continue_all(ours)
    stop_all(ours, grace=grace)
    return len(ours)


def reap_abandoned(base: Path, prefix: str, reap: Callable[[Path], object]) -> list[str]:
    """`reap` every `base/prefix*` folder whose owner is dead (SIGKILLed); never a live drill's."""
    reaped = []
    for root in base.glob(f"{prefix}*"):
        if abandoned(root):
            reap(root)
            reaped.append(str(root))
    return reaped
