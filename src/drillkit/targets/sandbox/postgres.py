"""Real PostgreSQL clusters for the sandbox: a primary with WAL archiving and a hot standby.

PostgreSQL refuses to run as root, so when drillkit is root every server process and every
file it owns belong to an unprivileged user (`DRILLKIT_PG_USER`, default `nobody`).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psycopg

from drillkit.errors import EnvironmentProblem, SandboxError, ServiceError
from drillkit.targets import processes
from drillkit.net import free_port

DB_USER = "drillkit"
DB_NAME = "drillkit"
STANDBY_NAME = "standby_b"

RECORDS_DDL = """
CREATE TABLE IF NOT EXISTS records (
    key text PRIMARY KEY,
    payload text NOT NULL,
    checksum text NOT NULL,
    written_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    region text
)
"""


@dataclass(frozen=True)
class PgBinaries:
    bindir: Path
    version: str

    def tool(self, name: str) -> str:
        return str(self.bindir / name)


def _version_of(bindir: Path) -> str:
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10)
    m = re.search(r"(\d+(?:\.\d+)?)", out.stdout)
    return m.group(1) if m else out.stdout.strip()


def _candidate_bindirs() -> list[Path]:
    found: list[Path] = []
    env = os.environ.get("DRILLKIT_PG_BIN")
    if env:
        return [Path(env)]
    on_path = shutil.which("pg_ctl")
    if on_path:
        found.append(Path(os.path.realpath(on_path)).parent)
    versioned = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(re.sub(r"\D", "", p.split("/")[-2]) or 0))
    found.extend(Path(p) for p in reversed(versioned))
    # the pgserver wheel bundles binaries for machines without PostgreSQL; located, not imported:
    # importing it makes platformdirs warn about XDG_RUNTIME_DIR on the user's terminal
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        found.extend(Path(p) / "pginstall" / "bin" for p in spec.submodule_search_locations)
    return found


NEEDED_TOOLS = ("postgres", "initdb", "pg_basebackup", "pg_ctl")


def find_binaries() -> PgBinaries:
    """The PostgreSQL binaries: DRILLKIT_PG_BIN, else pg_ctl on PATH, else /usr/lib/postgresql/*/bin
    (newest first), else the pgserver wheel's bundled ones."""
    candidates = _candidate_bindirs()
    for bindir in candidates:
        if all((bindir / n).is_file() and os.access(bindir / n, os.X_OK) for n in NEEDED_TOOLS):
            return PgBinaries(bindir, _version_of(bindir))
    where = ", ".join(str(c) for c in candidates) or "nowhere"
    hint = "set DRILLKIT_PG_BIN" if os.environ.get("DRILLKIT_PG_BIN") is None else "DRILLKIT_PG_BIN"
    raise EnvironmentProblem(f"no usable PostgreSQL binaries (looked in {where}); {hint} to a bin folder")


@dataclass(frozen=True)
class RunAs:
    """Who PostgreSQL runs as: None when drillkit itself is not root."""

    user: str | None
    uid: int
    gid: int

    @classmethod
    def for_postgres(cls) -> "RunAs":
        if os.geteuid() != 0:
            return cls(None, os.getuid(), os.getgid())
        name = os.environ.get("DRILLKIT_PG_USER", "nobody")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise EnvironmentProblem(f"DRILLKIT_PG_USER: no such user {name!r} to run PostgreSQL as") from None
        return cls(name, entry.pw_uid, entry.pw_gid)

    def popen_kwargs(self) -> dict:
        if self.user is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def own(self, path: Path, mode: int = 0o700) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            os.chown(path, self.uid, self.gid)
        path.chmod(mode)


def _run(cmd: list[str], run_as: RunAs, log: Path, what: str, timeout: float = 60) -> None:
    """Run a PostgreSQL tool in its own process group: if the drill is interrupted, the whole
    group dies (initdb's own postgres child included) before the sandbox folder is deleted."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd="/",
                                start_new_session=True, **run_as.popen_kwargs())
    try:
        proc.wait(timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _wait_group_gone(proc.pid)
        if isinstance(exc := sys.exc_info()[1], subprocess.TimeoutExpired):
            raise SandboxError(f"{what} did not finish within {timeout:.0f}s") from exc
        raise
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise SandboxError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")


def dsn(port: int, dbname: str = DB_NAME, **extra: object) -> str:
    parts = {"host": "127.0.0.1", "port": port, "user": DB_USER, "dbname": dbname, "connect_timeout": 2, **extra}
    return " ".join(f"{k}={v}" for k, v in parts.items())


@dataclass
class PgServer:
    """One running postmaster of the sandbox."""

    name: str
    datadir: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


def write_conf(datadir: Path, settings: dict[str, object]) -> None:
    lines = []
    for key, value in settings.items():
        rendered = value if isinstance(value, (int, float)) else "'" + str(value).replace("'", "''") + "'"
        lines.append(f"{key} = {rendered}")
    with open(datadir / "postgresql.auto.conf", "a") as fh:
        fh.write("\n".join(lines) + "\n")


def base_settings(archive_dir: Path) -> dict[str, object]:
    return {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": f'test ! -f "{archive_dir}/%f" && cp %p "{archive_dir}/%f"',
        "archive_timeout": "60s",
        "max_wal_senders": 8,
        "wal_keep_size": "256MB",
        "hot_standby": "on",
        "hot_standby_feedback": "on",
        "fsync": "off",
        "wal_retrieve_retry_interval": "100ms",
        "wal_receiver_status_interval": "1s",
        "max_connections": 200,
        "shared_buffers": "32MB",
        "log_min_messages": "warning",
    }


def initdb(bins: PgBinaries, run_as: RunAs, datadir: Path, log: Path, wal_segsize_mb: int = 16) -> None:
    """A new cluster in `datadir` (an empty folder `run_as` owns), trusting local connections."""
    _run([bins.tool("initdb"), "-D", str(datadir), "-U", DB_USER, "--auth=trust", "-E", "UTF8",
          "--no-sync", "--no-instructions", f"--wal-segsize={wal_segsize_mb}"], run_as, log, "initdb")


def wal_segsize_mb(archive_timeout: float | None) -> int:
    """With an `archive_timeout` (backup-restore, whose RPO it bounds) a segment is archived at
    least that often, in 1 MB segments so that a forced switch each second does not write 16 MB."""
    return 1 if archive_timeout else 16


RECORDED_IN_CHECKPOINT = ("wal_level", "max_connections", "max_worker_processes", "max_wal_senders",
                          "max_prepared_transactions", "max_locks_per_transaction")
"""Settings a checkpoint records, below which a hot standby refuses to replay it."""


def init_primary(bins: PgBinaries, run_as: RunAs, datadir: Path, archive_dir: Path, log: Path,
                 archive_timeout: float | None = None, template: Path | None = None,
                 copying: subprocess.Popen | None = None) -> PgServer:
    """A new primary archiving its WAL to `archive_dir`: a copy of the stopped `template` cluster
    (pgtemplate: it holds the drillkit database; `copying`: that copy, started earlier into
    `datadir` by start_copy, to finish first), else a bare new cluster (`initdb`)."""
    run_as.own(datadir)
    run_as.own(archive_dir)
    if template is not None:
        finish_copy(copying or start_copy(template, datadir), template)
    else:
        initdb(bins, run_as, datadir, log, wal_segsize_mb(archive_timeout))
    settings = base_settings(archive_dir)
    if archive_timeout:
        settings.update(archive_timeout=f"{int(archive_timeout)}s", wal_keep_size="64MB", min_wal_size="8MB",
                        max_wal_size="64MB")
    write_conf(datadir, settings)
    return PgServer("primary", datadir, free_port())


def take_base_backup(bins: PgBinaries, run_as: RunAs, port: int, target: Path, log: Path) -> None:
    """pg_basebackup of the server on `port` into `target` (a new folder), WAL included."""
    shutil.rmtree(target, ignore_errors=True)
    run_as.own(target)
    _run([bins.tool("pg_basebackup"), "-h", "127.0.0.1", "-p", str(port), "-U", DB_USER,
          "-D", str(target), "-X", "stream", "--checkpoint=fast", "--no-sync"], run_as, log, "pg_basebackup",
         timeout=120)


def standby_from_template(template: Path, run_as: RunAs, datadir: Path, source_port: int,
                          archive_dir: Path, copying: subprocess.Popen | None = None) -> PgServer:
    """A hot standby streaming from `source_port`, from a copy of the stopped cluster the primary
    started from (a cold base backup: it replays what follows the shutdown checkpoint they share).
    `copying`: that copy, started earlier into `datadir` (start_copy), to finish first."""
    if copying is None:
        run_as.own(datadir)
        copying = start_copy(template, datadir)
    finish_copy(copying, template)
    write_conf(datadir, {**base_settings(archive_dir), "archive_mode": "off"})
    make_standby(run_as, datadir, source_port)
    return PgServer("standby", datadir, free_port())


def copy_cluster(source: Path, datadir: Path) -> None:
    """Copy a stopped cluster into `datadir`, owners and modes kept: drillkit's own user copies,
    so a template only it can read serves a PostgreSQL running as another user."""
    finish_copy(start_copy(source, datadir), source)


def start_copy(source: Path, datadir: Path) -> subprocess.Popen:
    """copy_cluster in the background, in its own process group and carrying its sandbox folder's
    mark (the folder is `datadir`'s parent), as the postmasters do: a sandbox that fails to come up
    stops it with its other processes, and a reaper knows it; finish_copy waits for it."""
    folder = Path(datadir).absolute().parent
    return subprocess.Popen(["cp", "-a", "--reflink=auto", f"{source}/.", str(datadir)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd="/", start_new_session=True,
                            env=processes.marked_env(folder))


def stop_copy(copying: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(copying.pid, signal.SIGKILL)
    copying.wait()


def finish_copy(copying: subprocess.Popen, source: Path, timeout: float = 120) -> None:
    """Wait for a copy; interrupted (a signal, its timeout), it is stopped before this returns, so
    it writes nothing into a folder being removed."""
    try:
        _, err = copying.communicate(timeout=timeout)
    except BaseException as exc:
        stop_copy(copying)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise SandboxError(f"copying the PostgreSQL cluster {source} did not finish within {timeout:.0f}s") from None
        raise
    if copying.returncode != 0:
        raise SandboxError(f"copying the PostgreSQL cluster {source} failed: {err.decode(errors='replace').strip()}")


def init_standby(bins: PgBinaries, run_as: RunAs, datadir: Path, source_port: int, archive_dir: Path,
                 log: Path) -> PgServer:
    """A hot standby by `pg_basebackup -R`, streaming from `source_port` (the replication link)."""
    run_as.own(datadir)
    _run([bins.tool("pg_basebackup"), "-h", "127.0.0.1", "-p", str(source_port), "-U", DB_USER,
          "-D", str(datadir), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"],
         run_as, log, "pg_basebackup")
    settings = base_settings(archive_dir)
    settings["primary_conninfo"] = (f"host=127.0.0.1 port={source_port} user={DB_USER} "
                                    f"application_name={STANDBY_NAME} connect_timeout=2")
    settings["archive_mode"] = "off"
    write_conf(datadir, settings)
    return PgServer("standby", datadir, free_port())


BIND_ATTEMPTS = 5


def start(bins: PgBinaries, run_as: RunAs, server: PgServer, log: Path, timeout: float = 30,
          on_spawn: Callable[[int], None] | None = None, dbname: str = DB_NAME) -> PgServer:
    """Start the postmaster on `server.port`; `on_spawn` learns its pid at once, so an interrupted
    start is stopped too. It is ready when it takes a connection to `dbname` (a sandbox's clusters,
    copies of the template, hold only the drillkit database; a new initdb's, only `postgres`).

    PostgreSQL cannot bind port 0 and report the port it got, so the port is chosen first; when
    something else took it before the postmaster bound it, another free port is tried (at most
    BIND_ATTEMPTS in all), and `server.port` is the port it finally listens on.

    The postmaster carries its sandbox folder's id (the folder is the data directory's parent) in
    its environment and, readable without privileges, on its command line: what a reaper checks.
    """
    folder = Path(server.datadir).absolute().parent
    sandbox_id = processes.folder_id(folder)
    mark = ["-c", f"{processes.PG_MARK}={sandbox_id}"] if sandbox_id else []
    for attempt in range(1, BIND_ATTEMPTS + 1):
        log_start = log.stat().st_size if log.exists() else 0
        out = open(log, "ab")
        try:
            server.process = subprocess.Popen(
                [bins.tool("postgres"), "-D", str(server.datadir), "-p", str(server.port), *mark],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd="/", start_new_session=True,
                env=processes.marked_env(folder), **run_as.popen_kwargs())
        finally:
            out.close()
        if on_spawn is not None:
            on_spawn(server.process.pid)
        try:
            wait_ready(server, log, timeout, dbname)
            return server
        except ServiceError:
            if server.process.poll() is None or attempt == BIND_ATTEMPTS or not _bind_failed(log, log_start):
                raise
            server.port = free_port()
    raise AssertionError("unreachable")


def _bind_failed(log: Path, since: int) -> bool:
    """The postmaster's log, from `since` on, says its port was taken."""
    with open(log, "rb") as fh:
        fh.seek(since)
        text = fh.read().decode(errors="replace")
    return "could not bind" in text or "Address already in use" in text


def wait_ready(server: PgServer, log: Path, timeout: float = 30, dbname: str = DB_NAME) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise SandboxError(f"PostgreSQL {server.name} exited ({server.process.returncode}): {' | '.join(tail)}")
        try:
            with psycopg.connect(dsn(server.port, dbname=dbname, connect_timeout=1)) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            last = exc
            time.sleep(0.05)
    raise SandboxError(f"PostgreSQL {server.name} on port {server.port} not ready after {timeout:.0f}s: {last}")


def create_schema(port: int) -> None:
    with psycopg.connect(dsn(port, dbname="postgres"), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    with psycopg.connect(dsn(port), autocommit=True) as conn:
        conn.execute(RECORDS_DDL)


def require_synchronous_standby(port: int) -> None:
    """Make every commit on the primary wait for the standby. Only once it streams: before, the
    primary's own setup (CREATE DATABASE) would wait for a standby that does not exist yet."""
    with psycopg.connect(dsn(port), autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{STANDBY_NAME}'")
        conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            row = conn.execute("SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
                               (STANDBY_NAME,)).fetchone()
            if row and row[0] == "sync":
                return
            time.sleep(0.02)
    raise SandboxError(f"the standby did not become synchronous on port {port}")


def promote(port: int, wait_seconds: int = 30) -> float:
    """Promote the standby on `port`; returns the seconds promotion took."""
    t0 = time.monotonic()
    with psycopg.connect(dsn(port), autocommit=True) as conn:
        done = conn.execute("SELECT pg_promote(true, %s)", (wait_seconds,)).fetchone()[0]
    if not done:
        raise SandboxError(f"PostgreSQL on port {port} did not finish promotion within {wait_seconds}s")
    return time.monotonic() - t0


def stop_process_group(pid: int, grace: float = 5.0) -> None:
    """Fast shutdown of a postmaster started outside a sandbox (tests), the sandbox's own way."""
    if processes.start_ticks(pid) is not None:
        processes.stop_all([processes.entry_for("postgres", pid)], grace=grace)


def _wait_group_gone(pgid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            return
        time.sleep(0.02)


SHM_KEY_TRIES = 100
"""PostgreSQL keys its segment by its data directory's inode, adding one while the key is taken."""


def drop_shared_memory(datadir: Path) -> bool:
    """A SIGKILLed postmaster leaves its System V segment behind; remove it, but only when it is
    provably that data directory's: the segment postmaster.pid names (key and id), keyed from the
    directory's inode, created by the directory's owner, attached by no one. `datadir` must be a
    data directory inside a verified sandbox folder; whether a segment was removed."""
    try:
        st = os.lstat(datadir)
        key, shmid = (int(x) for x in (datadir / "postmaster.pid").read_text().splitlines()[6].split()[:2])
        table = Path("/proc/sysvipc/shm").read_text().splitlines()
    except (OSError, ValueError, IndexError):
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    for line in table[1:]:
        # key shmid perms size cpid lpid nattch uid gid cuid cgid ...
        f = line.split()
        if len(f) < 10 or f[1] != str(shmid):
            continue
        if (int(f[0]) == key and 0 <= key - st.st_ino < SHM_KEY_TRIES and int(f[6]) == 0
                and int(f[9]) == st.st_uid):
            return subprocess.run(["ipcrm", "-m", str(shmid)], capture_output=True).returncode == 0
    return False


def stop_fast(bins: PgBinaries, run_as: RunAs, datadir: Path, log: Path, timeout: float = 30) -> None:
    """Fast shutdown of the postmaster alone (pg_ctl), for a switchover: its walsenders ship the
    shutdown checkpoint to the standbys before they exit, which a signal to the whole process
    group (the teardown's way) would cut short."""
    _run([bins.tool("pg_ctl"), "stop", "-D", str(datadir), "-m", "fast", "-w", "-t", str(int(timeout))],
         run_as, log, "pg_ctl stop", timeout=timeout + 5)


def control_data(bins: PgBinaries, run_as: RunAs, datadir: Path) -> dict[str, str]:
    """pg_controldata of a stopped cluster: its state and where its last checkpoint is."""
    out = subprocess.run([bins.tool("pg_controldata"), "-D", str(datadir)], capture_output=True, text=True,
                         timeout=10, cwd="/", env={**os.environ, "LC_ALL": "C"}, **run_as.popen_kwargs())
    if out.returncode != 0:
        raise SandboxError(f"pg_controldata {datadir} failed (exit {out.returncode}): {out.stderr.strip()}")
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.stdout.splitlines() if ":" in line)}


def make_standby(run_as: RunAs, datadir: Path, source_port: int) -> None:
    """Turn a cleanly stopped cluster into a standby streaming from `source_port`: a switched-over
    old primary follows the new one without a rewind, since nothing follows its shutdown checkpoint."""
    write_conf(datadir, {"primary_conninfo": f"host=127.0.0.1 port={source_port} user={DB_USER} "
                                              f"application_name={STANDBY_NAME} connect_timeout=2"})
    signal_file = datadir / "standby.signal"
    signal_file.touch()
    if run_as.user is not None:
        os.chown(signal_file, run_as.uid, run_as.gid)


__all__ = ["PgBinaries", "PgServer", "RunAs", "find_binaries", "initdb", "init_primary", "init_standby", "start",
           "standby_from_template", "copy_cluster", "start_copy", "finish_copy", "stop_copy", "write_conf", "wal_segsize_mb",
           "create_schema", "promote", "dsn", "stop_process_group", "drop_shared_memory", "stop_fast",
           "control_data", "make_standby", "take_base_backup", "wait_promoted"]


def wait_promoted(port: int, server: PgServer, timeout: float) -> None:
    """recovery_target_action = promote: the cluster leaves recovery once it reached the target."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise SandboxError(f"the restored cluster exited ({server.process.returncode}) during recovery")
        try:
            with psycopg.connect(dsn(port, connect_timeout=1), autocommit=True) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    return
        except psycopg.OperationalError:
            pass
        time.sleep(0.05)
    raise SandboxError(f"the restored cluster on port {port} still in recovery after {timeout:.0f}s")


def recover_cluster(bins: PgBinaries, run_as: RunAs, server: PgServer, base: Path, log: Path,
                    recovery: dict[str, object], timeout: float,
                    on_spawn: Callable[[int], None] | None = None) -> tuple[PgServer, float | None]:
    """A new cluster in `server.datadir` from the base backup `base`, replaying archived WAL as the
    `recovery` settings say (restore_command, a target), promoted at its end. Returns the running
    server and the newest record's write time it holds (epoch s; None when it holds none)."""
    datadir = server.datadir
    run_as.own(datadir)
    _run(["cp", "-a", f"{base}/.", str(datadir)], run_as, log, "copy of the base backup")
    (datadir / "backup_manifest").unlink(missing_ok=True)
    write_conf(datadir, {"recovery_target_action": "promote", **recovery})
    signal_file = datadir / "recovery.signal"
    signal_file.touch()
    if run_as.user is not None:
        os.chown(signal_file, run_as.uid, run_as.gid)
    running = start(bins, run_as, server, log, timeout=timeout, on_spawn=on_spawn)
    wait_promoted(running.port, running, timeout)
    return running, newest_record_at(running.port)


def newest_record_at(port: int) -> float | None:
    with psycopg.connect(dsn(port), autocommit=True) as conn:
        return conn.execute("SELECT EXTRACT(epoch FROM max(written_at))::float FROM records").fetchone()[0]
