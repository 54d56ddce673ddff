"""What a drill may leave behind: processes it started, TCP ports it bound and its folders.

Under pytest-xdist each worker runs drills of its own beside the other's, in a temporary folder
of its own (`worker_tmpdir`): a worker counts only what is its own — a process whose environment
carries its PYTEST_XDIST_WORKER, whose command line names its folder, or whose parent is its own,
a port such a process listens on, a folder in its temporary folder. Run alone, everything counts.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

from drillkit.targets.processes import stat_fields

MARKERS = ("drillkit.targets.sandbox.", "drillkit.targets.aws.", "locust", "postgres", "kvservice")
FOLDERS = ("drillkit-sandbox-*", "drillkit-external-*", "drillkit-aws-*", "drillkit-fake-*", "drillkit-kvtest-*")
WORKER_ENV = "PYTEST_XDIST_WORKER"
WORKER_TMP_PREFIX = "drillkit-tests-"


def worker() -> str | None:
    return os.environ.get(WORKER_ENV)


def worker_tmpdir() -> Path | None:
    """Give this xdist worker a temporary folder of its own (sticky and world-writable like /tmp:
    tests plant folders in it as another user); None when not a worker."""
    name = worker()
    if name is None:
        return None
    folder = Path(tempfile.mkdtemp(prefix=f"{WORKER_TMP_PREFIX}{name}-", dir="/tmp"))
    folder.chmod(0o1777 | stat.S_IRWXU)
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = str(folder)
    return folder


def remove_worker_tmpdir(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def drill_folders() -> set[Path]:
    where = Path(tempfile.gettempdir())
    return {f for pattern in FOLDERS for f in where.glob(pattern)}


def _read(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def _parent(pid: int) -> int:
    fields = stat_fields(f"/proc/{pid}/stat")
    return int(fields[1]) if fields else 0


class Ownership:
    """Which processes are this worker's, memoized for one look at the machine."""

    def __init__(self) -> None:
        self.name = worker()
        self.tmp = str(Path(tempfile.gettempdir())).encode()
        self.mark = f"{WORKER_ENV}={self.name}\0".encode() if self.name else b""
        self.known: dict[int, bool] = {}

    def __call__(self, pid: int) -> bool:
        if self.name is None:
            return True
        chain = []
        verdict = False
        while pid > 1 and pid not in self.known:
            chain.append(pid)
            env = _read(pid, "environ") + b"\0"
            if self.mark in env or self.tmp + b"/" in _read(pid, "cmdline"):
                verdict = True
                break
            pid = _parent(pid)
        else:
            verdict = self.known.get(pid, False)
        for p in chain:
            self.known[p] = verdict
        return verdict


def drill_processes(owned: Ownership | None = None) -> dict[int, str]:
    owned = owned or Ownership()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        cmd = _read(int(entry.name), "cmdline").replace(b"\0", b" ").decode(errors="replace").strip()
        fields = stat_fields(str(entry / "stat"))
        running = fields is not None and fields[0] != "Z"
        if running and cmd and any(m in cmd for m in MARKERS) and owned(int(entry.name)):
            found[int(entry.name)] = cmd
    return found


def _socket_owners() -> dict[str, int]:
    """Socket inode → a pid holding it."""
    owners = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[target[8:-1]] = int(entry.name)
    return owners


def listening_ports(owned: Ownership | None = None) -> set[int]:
    """TCP ports listened on (this worker's, under xdist: a port whose holder cannot be found counts)."""
    owned = owned or Ownership()
    listening: dict[int, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":
                listening[int(fields[1].rsplit(":", 1)[1], 16)] = fields[9]
    if owned.name is None:
        return set(listening)
    holders = _socket_owners()
    return {port for port, inode in listening.items() if inode not in holders or owned(holders[inode])}


class Snapshot:
    def __init__(self) -> None:
        owned = Ownership()
        self.processes = drill_processes(owned)
        self.ports = listening_ports(owned)
        self.sandboxes = drill_folders()

    def leaks(self, settle: float = 5.0) -> dict[str, object]:
        """New processes, ports and sandbox folders since the snapshot, after a short settling time."""
        deadline = time.monotonic() + settle
        while True:
            owned = Ownership()
            procs = {p: c for p, c in drill_processes(owned).items() if p not in self.processes}
            ports = listening_ports(owned) - self.ports
            folders = drill_folders() - self.sandboxes
            if not (procs or ports or folders) or time.monotonic() > deadline:
                return {k: v for k, v in (("processes", procs), ("ports", ports), ("folders", folders)) if v}
            time.sleep(0.1)
