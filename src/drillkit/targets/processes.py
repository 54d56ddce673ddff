"""Starting, identifying and stopping the processes a target starts, and reaping those of dead runs.

Every target that starts a process (the sandbox's services, the harness's Locust) registers it in its
folder's `processes.json` with its kernel start time, its user and its mark (the random id of the
folder, DRILLKIT_SANDBOX_ID in its environment), so only a process that is provably still ours is
ever signalled. A reaper acts only on a folder that is provably ours (`verified_folder`): a real
directory, owned by the invoking user, writable by no one else, holding an owner file."""

from __future__ import annotations

import json
import os
import secrets
import signal
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

from drillkit.errors import ServiceError
from drillkit.evidence import write_atomic

FAILURE_SUFFIX = ".failed.json"
"""A service that fails on its own writes `<name>.failed.json` in its folder (the path spawn_service
gives it as --failure-file; drillkit.net.fail writes it)."""


class ProcessEntry(BaseModel):
    """A process the sandbox started; `start_ticks` proves a pid is still ours before we kill it."""

    name: str
    pid: int
    start_ticks: int
    region: str | None = None
    group: bool = True
    uid: int | None = None
    """The process's real user at registration (PostgreSQL runs as another user than drillkit)."""
    mark: str | None = None
    """The DRILLKIT_SANDBOX_ID its environment (or, for PostgreSQL, its command line) carried at
    registration; a reaper signals only a process that still carries it."""


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


MARK_ENV = "DRILLKIT_SANDBOX_ID"
"""Every process a target starts carries its folder's id in its environment under this name."""
PG_MARK = "drillkit.sandbox_id"
"""... and a postmaster also on its command line (`-c drillkit.sandbox_id=ID`): its environment is
readable only with CAP_SYS_PTRACE when it runs as another user."""


def process_uid(pid: int) -> int | None:
    """The real user id of `pid` (/proc/PID/status, readable by anyone); None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_mark(pid: int) -> str | None:
    """The DRILLKIT_SANDBOX_ID `pid` was started with: from its environment as exec'd, else from a
    postmaster's `drillkit.sandbox_id=ID` argument; None when it carries none or is gone."""
    env_prefix, arg_prefix = f"{MARK_ENV}=".encode(), f"{PG_MARK}=".encode()
    for name, prefix in (("environ", env_prefix), ("cmdline", arg_prefix)):
        try:
            items = Path(f"/proc/{pid}/{name}").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in items:
            if item.startswith(prefix):
                return item[len(prefix):].decode(errors="replace")
    return None


def is_ours(entry: ProcessEntry) -> bool:
    """`entry`'s process still runs: the same start time, and the same user and mark it had when it
    was registered (a pid reused later, even after a reboot, differs in one of them)."""
    if start_ticks(entry.pid) != entry.start_ticks:
        return False
    if entry.uid is not None and process_uid(entry.pid) != entry.uid:
        return False
    return entry.mark is None or process_mark(entry.pid) == entry.mark


def alive(entry: ProcessEntry) -> bool:
    """Ours and running: an exited child not yet reaped (a zombie) is not alive."""
    return is_ours(entry) and not _zombie(entry.pid)


def entry_for(name: str, pid: int, region: str | None = None) -> ProcessEntry:
    ticks = start_ticks(pid)
    if ticks is None:
        raise ServiceError(f"{name} (pid {pid}) exited right after it started")
    return ProcessEntry(name=name, pid=pid, start_ticks=ticks, region=region, uid=process_uid(pid),
                        mark=_settled_mark(pid))


def _settled_mark(pid: int, timeout: float = 1.0) -> str | None:
    """`pid`'s mark once its exec has set up its environment: Popen returns when the exec closed the
    close-on-exec descriptors, a moment before the kernel records where the new environment lies
    (until then /proc/PID/environ and /proc/PID/cmdline read empty)."""
    deadline = time.monotonic() + timeout
    while True:
        set_up = _has_command_line(pid)
        mark = process_mark(pid)
        if mark is not None or set_up or time.monotonic() > deadline or _zombie(pid):
            return mark
        time.sleep(0.001)


def _has_command_line(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


def marked_env(root: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a process started for the target folder `root`: its id under MARK_ENV."""
    env = dict(os.environ if base is None else base)
    mark = folder_id(root)
    if mark is not None:
        env[MARK_ENV] = mark
    return env


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
                                start_new_session=True, cwd="/", env=marked_env(root))
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
            raise ServiceError(f"{name} exited ({proc.returncode}) before it was ready: {' | '.join(tail)}")
        time.sleep(0.02)
    raise ServiceError(f"{name} not ready after {timeout:.0f}s")


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
    """SIGTERM every group (postmasters get SIGINT, a fast shutdown), then SIGKILL what remains.
    Only processes still ours when it starts, and the members of their groups."""
    entries = [e for e in entries if is_ours(e)]
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
    """Mark `root` as belonging to this process: when it dies outright, the next drill (and
    `drillkit sandbox down`) reaps it. An unowned folder (`drillkit sandbox up`, once up) lives until
    it is brought down by hand. The folder's random id, kept across claims, marks its processes."""
    mark = folder_id(root) or secrets.token_hex(16)
    owner = {"pid": os.getpid(), "start_ticks": start_ticks(os.getpid())} if owned else {"pid": None}
    write_atomic(root / OWNER_FILE, json.dumps({**owner, "id": mark}))


def folder_id(root: Path) -> str | None:
    """The random id `claim` gave `root` (what its processes carry as DRILLKIT_SANDBOX_ID)."""
    try:
        owner = json.loads((Path(root) / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    mark = owner.get("id") if isinstance(owner, dict) else None
    return mark if isinstance(mark, str) and mark else None


def unverified(root: Path, prefix: str) -> str | None:
    """Why `root` is not provably a target folder of the invoking user, or None when it is: named
    `prefix*`, a real directory (not a symlink), owned by this user and writable by no one else,
    holding an owner file and a registry that are the same user's regular files."""
    root = Path(root)
    if not root.name.startswith(prefix):
        return f"not a drillkit folder (its name does not start with {prefix})"
    try:
        st = os.lstat(root)
    except OSError as exc:
        return f"cannot read it: {exc.strerror}"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return "not a directory (a symlink or a file)"
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not by this user ({os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "writable by other users"
    for name in (OWNER_FILE, REGISTRY):
        if not regular_file_of_mine(root / name):
            return f"no {name} of this user's in it"
    if folder_id(root) is None:
        return f"its {OWNER_FILE} holds no id"
    return None


def regular_file_of_mine(path: Path) -> bool:
    """`path` is a regular file (not a symlink) of the invoking user, writable by no one else."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def abandoned(root: Path) -> bool:
    """Whether the process that claimed `root` is dead (never a live drill's, nor an unowned one)."""
    try:
        owner = json.loads((root / OWNER_FILE).read_text())
        pid, ticks = owner["pid"], owner.get("start_ticks")
    except (OSError, ValueError, TypeError, KeyError):
        return False
    return isinstance(pid, int) and start_ticks(pid) != ticks


def provable(root: Path) -> list[ProcessEntry]:
    """The processes of `root`'s registry a reaper may signal: registered with a mark, and still
    running with the same start time, user and mark."""
    try:
        entries = read_registry(root)
    except (OSError, ValueError):
        return []
    return [e for e in entries if e.mark is not None and e.uid is not None and is_ours(e)]


def stop_registered(root: Path, grace: float = 1.0) -> int:
    """Stop every process `root`'s registry holds that is provably still ours (continued first: a
    frozen one must be able to exit); how many there were. `root` must be verified first."""
    ours = provable(root)
    continue_all(ours)
    stop_all(ours, grace=grace)
    return len(ours)


def reap_abandoned(base: Path, prefix: str, reap: Callable[[Path], object]) -> list[str]:
    """`reap` every `base/prefix*` folder that is verified ours (`unverified`) and whose owner is
    dead (SIGKILLed); never a live drill's, never another user's."""
    reaped = []
    for root in base.glob(f"{prefix}*"):
        if unverified(root, prefix) is None and abandoned(root):
            reap(root)
            reaped.append(str(root))
    return reaped
