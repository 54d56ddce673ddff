"""Each region's app tier as instances behind its client link, and the runbook steps that change it:
scaling a region's app tier (pilot light, a warm standby at reduced capacity) and restoring a
backup-and-restore region's database from the backups copied to it. A mixin of Sandbox."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Callable

from drillkit.errors import FaultError, SandboxError
from drillkit.targets import processes
from drillkit.targets.capabilities import RegionRestore, Scaling
from drillkit.targets.sandbox import postgres as pg
from drillkit.targets.sandbox.app import command as app_command
from drillkit.targets.sandbox.backup_copy import BASE_PREFIX, MANIFEST, WAL_DIR
from drillkit.net import free_port, http_json

Pending = list[tuple[str, subprocess.Popen, Path]]


def instance_name(prefix: str, n: int) -> str:
    """The first instance keeps the region's plain name (`app-B`), the others are numbered."""
    return prefix if n == 1 else f"{prefix}-{n}"


def spawn_apps(root: Path, region: str, db_port: int, s3_ports: dict[str, int], capacity: float | None,
               names: list[str], track: Callable[[str, int, str], None],
               table: tuple[int, float] | None = None) -> Pending:
    """Start one app process per name over the region's database (and its global table replica,
    `table`: its port and the region's clock offset); `track` registers each at once."""
    out = []
    table_port, offset = table if table else (None, 0.0)
    for name in names:
        proc, ready = processes.spawn_service(
            "drillkit.targets.sandbox.app", app_command(region, db_port, s3_ports, capacity, name, table_port, offset),
            root, name)
        track(name, proc.pid, region)
        out.append((name, proc, ready))
    return out


def wait_apps(pending: Pending) -> dict[str, int]:
    return {name: processes.wait_ready(proc, ready, name)["port"] for name, proc, ready in pending}


class AppTierSteps:
    """Operations of `Sandbox` (which supplies state, _region, _processes_of, adopt, link...)."""

    def start_app_instances(self, region: str, db_port: int, count: int, prefix: str | None = None) -> dict[str, int]:
        """`count` new instances of the region's app over `db_port`, numbered after those it runs."""
        target = self._region(region)
        prefix = prefix or f"app-{region}"
        taken = {p.name for p in self.state.processes}
        names, n = [], 1
        while len(names) < count:
            if instance_name(prefix, n) not in taken:
                names.append(instance_name(prefix, n))
            n += 1
        stores = {region: target.s3_port} if target.s3_port is not None else {}
        table = (target.table_port, target.clock_offset) if target.table_port is not None else None
        return wait_apps(spawn_apps(Path(self.state.root), region, db_port, stores, self.state.app_capacity,
                                    names, self.adopt, table))

    def balance_app_tier(self, region: str) -> None:
        """The region's client link balances over exactly its running instances."""
        target = self._region(region)
        self.link(target.link).balance(list(target.apps.values()))
        self.state.save()

    def scale_app_tier(self, region: str, instances: int, timeout: float = 30) -> Scaling:
        """Start (or stop) app instances until the region runs `instances`, within its quota; done
        when every new instance answers its health check with its database reachable."""
        self._reload()
        target = self._region(region)
        instances = int(instances)
        if instances < 0:
            raise FaultError(f"cannot scale region {region} to {instances} instances")
        if instances > self.state.max_instances:
            raise FaultError(f"region {region}: {instances} instances exceed the quota of "
                             f"{self.state.max_instances} (system.app.max_instances)")
        if target.role in ("empty", "down") or target.db_port is None:
            raise FaultError(f"region {region} has no database ({target.role}): restore it before scaling its app tier")
        t0 = time.time()
        before = dict(target.apps)
        if instances > len(before):
            started = self.start_app_instances(region, target.db_port, instances - len(before))
            target.apps.update(started)
            self.balance_app_tier(region)
            _wait_healthy(started, timeout)
        elif instances < len(before):
            gone = list(before)[instances:]
            for name in gone:
                del target.apps[name]
            self.balance_app_tier(region)
            entries = [p for p in self.state.processes if p.name in gone]
            processes.stop_all(entries, grace=1.0)
            self.state.processes = [p for p in self.state.processes if p not in entries]
        self._save_registry()
        t = time.time()
        return Scaling(region, len(before), instances, t, t - t0, tuple(target.apps))

    def restore_region(self, region: str, timeout: float = 120) -> RegionRestore:
        """backup-and-restore: a new cluster in `region` from the newest base backup that reached its
        archive, every WAL segment copied after it replayed to the end, then promoted. What the copy
        job had not delivered when the primary region was lost is not there: the RPO."""
        self._reload()
        target = self._region(region)
        if target.role != "empty":
            raise FaultError(f"region {region} is {target.role}: only a region without a database "
                             "(strategy backup-restore) is restored from its backup copies")
        archive = Path(self.state.backup_archive or "")
        bases = sorted((b for b in archive.glob(f"{BASE_PREFIX}*") if (b / MANIFEST).is_file()),
                       key=lambda b: (b / MANIFEST).stat().st_mtime)
        if not bases:
            raise FaultError(f"no base backup has reached region {region}'s archive ({archive})")
        base = bases[-1]
        bins, run_as = self._pg_tools()
        root = Path(self.state.root)
        t0 = time.time()
        server, newest = pg.recover_cluster(
            bins, run_as, pg.PgServer(f"restored-{region}", root / f"pg-{region}", free_port()), base,
            root / f"pg-{region}.log", {"restore_command": f'cp "{archive / WAL_DIR}/%f" "%p"', "archive_mode": "off"},
            timeout, on_spawn=lambda pid: self.adopt(f"postgres-{region}", pid, region))
        segments = sorted(p.name for p in (archive / WAL_DIR).iterdir() if len(p.name) == 24)
        target.role, target.db_port, target.datadir = "primary", server.port, str(server.datadir)
        self.state.primary_region = region
        self._save_registry()
        t = time.time()
        return RegionRestore(region=region, base_backup=base.name, wal_segments=len(segments),
                             last_segment=segments[-1] if segments else None, newest_record_at=newest,
                             t=t, took_s=t - t0, db_port=server.port)


def _wait_healthy(ports: dict[str, int], timeout: float) -> None:
    """Each instance's own /health (not through the link) answers 200: it can reach its database."""
    deadline = time.monotonic() + timeout
    waiting = dict(ports)
    while waiting:
        for name, port in list(waiting.items()):
            try:
                status, _ = http_json(f"http://127.0.0.1:{port}/health", timeout=1.0)
            except (OSError, ValueError):
                status = None
            if status == 200:
                del waiting[name]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise SandboxError(f"app instance(s) {', '.join(waiting)} not healthy after {timeout:.0f}s")
        time.sleep(0.05)
