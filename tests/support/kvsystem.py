"""A system drillkit did not build, for tests: kvservice (tests/external_kv) over a real PostgreSQL.

`running_kv_system(base)` starts PostgreSQL (drillkit's own helpers), two kvservice regions over
the same database ("east", the primary, and "west", the standby) and the kvservice lb in front of
them, active on east; it yields a `KvSystem` and stops all of it on the way out.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg
import yaml

from drillkit.targets.sandbox import postgres as pg
from drillkit.targets import processes

HERE = Path(__file__).resolve().parents[1]
KVSERVICE = str(HERE / "external_kv" / "kvservice.py")
CRASH = str(HERE / "external_kv" / "crash.py")
DB_NAME = "kvstore"
READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class KvSystem:
    endpoint: str  # the lb: what clients use
    dsn: str  # the service's database
    primary_url: str  # region east, directly
    standby_url: str  # region west, directly
    primary_pid: int
    standby_pid: int
    lb_pid: int
    switch_log: Path  # the lb's route switches, one JSON line each
    ground_truth: Path  # where crash.py is to write what it lost
    folder: Path  # everything of this system: logs, ready files, the database


def pid_gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its parent has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def table_rows(dsn: str) -> dict[str, tuple[str, str]]:
    """Every row of kv_items: id -> (value, sha256)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {row[0]: (row[1], row[2]) for row in conn.execute("SELECT id, value, sha256 FROM kv_items")}


def _check_reachable(path: Path, run_as: pg.RunAs) -> None:
    """PostgreSQL runs as `run_as`: it must be able to walk down to its data folder."""
    if run_as.user is None:
        return
    for folder in [path, *path.parents]:
        st = folder.stat()
        if st.st_uid == run_as.uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid == run_as.gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            raise RuntimeError(f"PostgreSQL runs as {run_as.user}, who cannot enter {folder}: "
                               f"give running_kv_system a base folder it can reach (e.g. in /tmp, mode 0755)")


def _spawn(folder: Path, name: str, args: list[str]) -> tuple[subprocess.Popen, Path, Path]:
    ready = folder / f"{name}.ready.json"
    ready.unlink(missing_ok=True)
    log_path = folder / f"{name}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, KVSERVICE, *args, "--ready-file", str(ready)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd="/")
    return proc, ready, log_path


def _wait_ready(proc: subprocess.Popen, ready: Path, log: Path, name: str) -> dict:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if ready.exists():
            return json.loads(ready.read_text())
        if proc.poll() is not None:
            raise RuntimeError(f"kvservice {name} exited ({proc.returncode}) before it was ready; its log:\n"
                               + log.read_text(errors="replace")[-4000:])
        if time.monotonic() > deadline:
            raise RuntimeError(f"kvservice {name} not ready after {READY_TIMEOUT:.0f}s; its log:\n"
                               + log.read_text(errors="replace")[-4000:])
        time.sleep(0.02)


def _kill(procs: list[subprocess.Popen]) -> None:
    """SIGKILL each service's process group (each leads its own session) and reap it."""
    for proc in procs:
        if proc.poll() is None:  # an exited one stays a zombie until reaped here: its pid is not reused
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        proc.wait()


@contextlib.contextmanager
def running_kv_system(base: Path, flush_interval: float = 0.25) -> Iterator[KvSystem]:
    base = Path(base).absolute()
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    bins = pg.find_binaries()
    run_as = pg.RunAs.for_postgres()
    _check_reachable(base, run_as)
    pg_log = base / "postgres.log"
    server: pg.PgServer | None = None
    postmaster: list[int] = []
    services: list[subprocess.Popen] = []
    try:
        server = pg.init_primary(bins, run_as, base / "pgdata", base / "archive", pg_log)
        pg.start(bins, run_as, server, pg_log, on_spawn=postmaster.append, dbname="postgres")
        with psycopg.connect(pg.dsn(server.port, dbname="postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DB_NAME}")
        dsn = pg.dsn(server.port, dbname=DB_NAME)

        regions = {}
        for name in ("east", "west"):
            proc, ready, log = _spawn(base, name, ["serve", "--region", name, "--dsn", dsn,
                                                   "--flush-interval", str(flush_interval)])
            services.append(proc)
            regions[name] = (proc, ready, log)
        ports = {name: _wait_ready(*regions[name], name)["port"] for name in regions}

        switch_log = base / "switches.jsonl"
        switch_log.touch()
        proc, ready, log = _spawn(base, "lb", ["lb", *[a for n in ports for a in ("--upstream", f"{n}=127.0.0.1:{ports[n]}")],
                                               "--active", "east", "--switch-log", str(switch_log)])
        services.append(proc)
        lb_port = _wait_ready(proc, ready, log, "lb")["port"]

        yield KvSystem(
            endpoint=f"http://127.0.0.1:{lb_port}", dsn=dsn,
            primary_url=f"http://127.0.0.1:{ports['east']}", standby_url=f"http://127.0.0.1:{ports['west']}",
            primary_pid=regions["east"][0].pid, standby_pid=regions["west"][0].pid, lb_pid=proc.pid,
            switch_log=switch_log, ground_truth=base / "ground_truth.json", folder=base)
    finally:
        with processes.shielded():
            _kill(services)
            for pid in postmaster:  # every postmaster start tried (a taken port makes it retry)
                pg.stop_process_group(pid)
            if server is not None:
                pg.drop_shared_memory(server.datadir)


__all__ = ["CRASH", "KVSERVICE", "KvSystem", "running_kv_system", "table_rows"]


WORKLOAD = {
    "write": {"method": "PUT", "path": "/kv/{key}", "body": {"value": "{payload}", "sha256": "{checksum}"},
              "ok": [200]},
    "read": {"method": "GET", "path": "/kv/{key}", "payload_field": "value", "ok": [200], "not_found": [404]},
    "weights": {"write": 2, "read": 1},
    "wait": 0.05,
}


def scenario(folder: Path, system: KvSystem, method: list[dict], endpoint: str | None = None,
             dsn_env: str = "KV_AUDIT_DSN", rollbacks: list[dict] | None = None) -> Path:
    experiment = {
        "title": "the kv service loses its primary", "description": "kill -9 of the primary, then the lb moves",
        "configuration": {"drillkit_sandbox": {"type": "env", "key": "DRILLKIT_SANDBOX", "default": ""}},
        "controls": [{"name": "drillkit", "provider": {"type": "python", "module": "drillkit.chaos.control"}}],
        "method": method, "rollbacks": rollbacks or [],
    }
    (folder / "experiment.json").write_text(json.dumps(experiment, indent=2))
    (folder / "workload.yaml").write_text(yaml.safe_dump(WORKLOAD))
    doc = {
        "name": "kv-primary-loss", "experiment": "experiment.json",
        "system": {"kind": "external", "endpoint": endpoint or system.endpoint, "regions": ["east", "west"],
                   "region_endpoints": {"east": system.primary_url, "west": system.standby_url},
                   "region_header": "X-Served-By", "health_path": "/healthz",
                   "audit": {"kind": "postgres", "dsn_env": dsn_env, "query": "SELECT id, value FROM kv_items",
                             "settle": "1s"}},
        "load": {"workload": "workload.yaml", "users": 4, "warmup": "2s", "duration": "9s", "canary": "20ms",
                 "cooldown": "2s"},
        "targets": {"rto": "10s"},
        "stable": "1s",
        "safeguards": {"max_duration": "2m"},
    }
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


OUTAGE_S = 1.5
"""How long the drill's experiment waits after killing the primary before it moves the lb."""


def kill_primary(system: KvSystem) -> dict:
    return {"type": "action", "name": "kill-primary",
            "provider": {"type": "process", "path": sys.executable,
                         "arguments": [CRASH, "--url", system.primary_url, "--pid", str(system.primary_pid),
                                       "--ground-truth", str(system.ground_truth), "--min-pending", "3"]},
            "drillkit": {"fault": "primary-loss"}, "pauses": {"after": OUTAGE_S}}


def route_to_west(system: KvSystem) -> dict:
    return {"type": "action", "name": "route-to-west",
            "provider": {"type": "http", "url": f"{system.endpoint}/admin/route", "method": "POST",
                         "headers": {"Content-Type": "application/json"}, "arguments": {"to": "west"}},
            "drillkit": {"clears": "primary-loss"}}
