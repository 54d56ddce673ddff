"""The embedded two-region system: bring it up, act on it, audit it, tear it down.

Region A holds the primary database, region B a hot standby streaming through the
replication link; each region has an app behind a client link; a router is the global endpoint.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import psycopg

from drillkit.errors import EnvironmentProblem, FaultError, SandboxError, ServiceError
from drillkit.evidence import BACKUP_READY, EVENTS, REPLICATION_STREAMING, TABLE_REPLICATION
from drillkit.scenario import LoadedScenario, SandboxSpec
from drillkit.scenario.workload import DR_RECORDS
from drillkit.targets import processes
from drillkit.targets.capabilities import (
    LagSample,
    LinkChange,
    Promotion,
    RegionFault,
    RegionHealth,
    ReplayChange,
    ReplicaStatus,
    RoutingStatus,
)
from drillkit.targets.sandbox import pgtemplate
from drillkit.targets.sandbox import postgres as pg
from drillkit.targets.sandbox.apptier import AppTierSteps, instance_name, spawn_apps, wait_apps
from drillkit.targets.sandbox.failback import FailbackSteps
from drillkit.targets.sandbox.global_table import TableSteps
from drillkit.targets.sandbox.linkproxy import LinkControl
from drillkit.targets.sandbox.linkproxy import command as link_command
from drillkit.net import http_json
from drillkit.targets.sandbox.object_storage import ObjectStorage
from drillkit.targets.sandbox.recovery import Recovery, RestoreTests
from drillkit.targets.sandbox.router import routing_status
from drillkit.targets.sandbox.s3_service import replicator_command
from drillkit.targets.sandbox.table_service import replicator_command as table_replicator_command
from drillkit.targets.sandbox.site import CONFIG_JSON, SiteSteps, publish_site
from drillkit.targets.sandbox.state import (
    LinkState,
    ProcessEntry,
    RegionState,
    SandboxState,
    load_state,
)

REGIONS = ("A", "B")
REPLICATION_LINK = "repl-A-B"
OBJECT_REPLICATION_LINK = "objrepl-A-B"
SANDBOX_PREFIX = "drillkit-sandbox-"
TEMPLATE_WORK = "pg-template"
"""Where a sandbox builds the PostgreSQL template when the cache has none (removed once copied)."""
TEMPLATE_PROCESS = "postgres-template"
"""The template's postmaster while it is built: stopped before the sandbox is up."""
COPY_PROCESS = "copy-pg-{}"
"""A region's copy of the template (both are made at once, region B's while region A comes up)."""
TRANSIENT = frozenset({TEMPLATE_PROCESS, *(COPY_PROCESS.format(r) for r in REGIONS)})
"""Processes of the bring-up alone: tracked while it runs (a failed one stops them), gone after it."""


def _start_copy(template: Path, run_as: pg.RunAs, datadir: Path, track, region: str):
    """A region's copy of the template, registered while it runs (a copy that ended before it could
    be registered needs no stopping)."""
    run_as.own(datadir)
    copying = pg.start_copy(template, datadir)
    try:
        track(COPY_PROCESS.format(region), copying.pid, None)
    except BaseException as exc:
        if not (isinstance(exc, ServiceError) and copying.poll() is not None):
            pg.stop_copy(copying)
            raise
    return copying


def client_link(region: str) -> str:
    return f"client-{region}"


def table_link(source: str) -> str:
    """active-active: the link the global table's replication from `source` crosses."""
    return f"tablerepl-{source}-{_other(source)}"


def _other(region: str) -> str:
    return next(r for r in REGIONS if r != region)


class Sandbox(Recovery, RestoreTests, FailbackSteps, AppTierSteps, SiteSteps, TableSteps):
    """A handle on a running sandbox, from its state file: the `sandbox` target plug-in, with every
    capability of drillkit.targets.capabilities (Objects only with `system.objects`, GlobalTable
    only under strategy active-active).

    A handle belongs to one thread: its methods re-read and rewrite the state file, so threads
    (the lag sampler) take their own handle with `attach`.
    """

    kind = "sandbox"
    born_with_the_drill = True
    """Every key in it is the drill's (it starts empty with the drill): no key scope is needed."""
    own_workload = DR_RECORDS
    """Every region's app serves the records and objects API, whatever the locustfile."""
    region_header = "X-Region"
    """The header every app instance names its region in."""
    lag_interval = 0.2

    def __init__(self, state: SandboxState):
        self.state = state

    @classmethod
    def attach(cls, state_file: str | os.PathLike[str]) -> "Sandbox":
        return cls(load_state(state_file))

    @property
    def state_file(self) -> Path:
        return Path(self.state.root) / "sandbox.json"

    @property
    def endpoint(self) -> str:
        return self.state.endpoint

    @classmethod
    def preflight(cls, spec: SandboxSpec, scenario_dir: Path | None = None, confirmed: bool = False) -> None:
        """This machine can host the sandbox: PostgreSQL binaries, a temp folder, a loopback port."""
        from drillkit.targets.sandbox.preflight import check_host

        check_host()

    @classmethod
    def check_fit(cls, loaded: LoadedScenario, experiment: dict[str, Any]) -> None:
        from drillkit.targets.sandbox.fit import check_strategy

        check_strategy(loaded, experiment)

    @classmethod
    def reap_stale(cls) -> list[str]:
        return reap_stale()

    def ready(self) -> list[tuple[str, dict]]:
        """The standby streams (or, for backup-restore, region B holds a restorable base backup):
        the drill's load may start."""
        if self.state.backup_archive is not None:
            return [(BACKUP_READY, self.wait_backup_copied())]
        return [(REPLICATION_STREAMING, {"standbys": [row.as_dict() for row in self.wait_streaming()]})]

    def wait_backup_copied(self, timeout: float = 60) -> dict:
        """backup-restore: the copy job has delivered a whole base backup to region B's archive."""
        from drillkit.targets.sandbox.backup_copy import BASE_PREFIX, MANIFEST

        archive = Path(self.state.backup_archive or "")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            bases = sorted(b.name for b in archive.glob(f"{BASE_PREFIX}*") if (b / MANIFEST).is_file())
            if bases:
                return {"region": "B", "base_backups": bases, "archive": str(archive)}
            failure = self.service_failure()
            if failure:
                raise SandboxError(failure)
            time.sleep(0.05)
        raise SandboxError(f"no base backup reached region B's archive after {timeout:.0f}s")

    def facts(self) -> dict[str, str]:
        return {"postgresql": self.state.pg_version}

    def lacks(self) -> list[str]:
        """The capabilities this sandbox's configuration leaves out: object storage without
        `system.objects`, the global table and restoring a region from backups under other
        strategies, client routing without routing config-json."""
        return ([] if self.state.object_replicator_port is not None else ["Objects"]) + (
            [] if any(r.table_port is not None for r in self.state.regions.values()) else ["GlobalTable"]) + (
            [] if self.state.strategy == "backup-restore" else ["BackupRestore"]) + (
            [] if self.client_config() is not None else ["ClientRouting"])

    def audit_source(self) -> str:
        """The region whose records the audit reads: the serving one; under active-active, where
        clients are served by both and the endpoint's answer may be a lost region, the first
        region still standing."""
        if "GlobalTable" not in self.lacks():
            standing = [r for r in self.table_regions() if self.state.regions[r].db_port is not None]
            if standing:
                return standing[0]
        return self.serving_region()

    @property
    def events_file(self) -> Path:
        return Path(self.state.events_file)

    # -- bring up -------------------------------------------------------------------------

    @classmethod
    def up(cls, spec: SandboxSpec, events_file: str | os.PathLike[str] | None = None,
           base_dir: str | os.PathLike[str] | None = None, owned: bool = True,
           scenario_dir: Path | None = None) -> "Sandbox":
        """Start every process; on any failure, stop what was started and re-raise.

        An `owned` sandbox dies with the process that started it: if that process is killed
        outright, the next drill reaps it. `drillkit sandbox up` makes an unowned one.
        """
        bins = pg.find_binaries()
        run_as = pg.RunAs.for_postgres()
        base = Path(base_dir or tempfile.gettempdir()).absolute()
        try:
            root = Path(tempfile.mkdtemp(prefix=SANDBOX_PREFIX, dir=base))
        except OSError as exc:
            raise EnvironmentProblem(f"cannot create the sandbox folder in {base}: {exc.strerror}") from None
        root.chmod(0o755)
        # every service runs in /, so every path handed to one is absolute
        events = Path(events_file).absolute() if events_file else root / EVENTS
        started: list[ProcessEntry] = []

        def track(name: str, pid: int, region: str | None = None) -> None:
            started.append(processes.entry_for(name, pid, region))
            processes.write_registry(root, started)

        # owned while it comes up even when it is to outlive this process: killed half-way, it is
        # reaped by `drillkit sandbox down` and by the next drill
        processes.claim(root, owned=True)
        processes.write_registry(root, started)
        try:
            sandbox = cls._start(spec, bins, run_as, root, events, track)
        except BaseException:
            with processes.shielded():
                processes.stop_all(started)
                _drop_pg_leftovers(root)
                shutil.rmtree(root, ignore_errors=True)
            raise
        sandbox.state.processes = [p for p in started if p.name not in TRANSIENT]
        sandbox.state.save()
        if not owned:
            processes.claim(root, owned=False)
        return sandbox

    @classmethod
    def _start(cls, spec: SandboxSpec, bins: pg.PgBinaries, run_as: pg.RunAs, root: Path, events: Path,
               track) -> "Sandbox":
        """Every service binds a port of its own choosing and reports it (PostgreSQL, which cannot,
        retries on a taken port), so no port is ever chosen here and raced for.

        The strategy decides region B: a hot standby with `app.dr_instances` app instances
        (warm-standby, pilot-light: none by default), or nothing but the archive the backup copy
        job fills (backup-restore)."""
        archive = root / "archive"
        backups = spec.backups if spec.strategy == "backup-restore" else None
        stores = {}
        if spec.objects is not None:  # moto takes a second to import: start it before initdb
            for r in REGIONS:
                proc, ready = processes.spawn_service("drillkit.targets.sandbox.s3_service", ["store"], root, f"s3-{r}")
                track(f"s3-{r}", proc.pid, r)
                stores[r] = (proc, ready)

        table = spec.table
        if table is not None:
            for r in REGIONS:
                proc, ready = processes.spawn_service("drillkit.targets.sandbox.table_service", ["store"], root,
                                                      f"table-{r}")
                track(f"table-{r}", proc.pid, r)
                stores[f"table-{r}"] = (proc, ready)

        archive_timeout = backups.archive_timeout if backups else None
        template = pgtemplate.ensure(bins, run_as, root / TEMPLATE_WORK, root / "pg-template.log",
                                     pg.wal_segsize_mb(archive_timeout),
                                     on_spawn=lambda pid: track(TEMPLATE_PROCESS, pid, None))
        copies = {r: _start_copy(template, run_as, root / f"pg-{r}", track, r)
                  for r in (REGIONS if backups is None else ("A",))}
        primary = pg.init_primary(bins, run_as, root / "pg-A", archive, root / "pg-A.log",
                                  archive_timeout=archive_timeout, template=template, copying=copies["A"])
        pg.start(bins, run_as, primary, root / "pg-A.log", on_spawn=lambda pid: track("postgres-A", pid, "A"))

        s3_ports = {r: processes.wait_ready(*stores[r], f"s3-{r}")["port"] for r in REGIONS if r in stores}
        table_ports = {r: processes.wait_ready(*stores[f"table-{r}"], f"table-{r}")["port"]
                       for r in REGIONS if f"table-{r}" in stores}
        tables = {r: (port, table.clock_offset.get(r, 0.0)) for r, port in table_ports.items()} if table else {}
        instances = {"A": spec.app.instances, "B": spec.dr_instances}
        names = {r: [instance_name(f"app-{r}", n) for n in range(1, instances[r] + 1)] for r in REGIONS}
        apps = {"A": spawn_apps(root, "A", primary.port, s3_ports, spec.app.capacity, names["A"], track,
                                tables.get("A"))}
        pending = {}
        for r in table_ports:   # each region's table replicates to the other through its own link
            pending[table_link(r)] = processes.spawn_service(
                "drillkit.targets.sandbox.linkproxy", link_command(table_link(r), table_ports[_other(r)], events),
                root, table_link(r))
        if backups is None:
            pending[REPLICATION_LINK] = processes.spawn_service(
                "drillkit.targets.sandbox.linkproxy", link_command(REPLICATION_LINK, primary.port, events), root,
                REPLICATION_LINK)
        if s3_ports:
            pending[OBJECT_REPLICATION_LINK] = processes.spawn_service(
                "drillkit.targets.sandbox.linkproxy", link_command(OBJECT_REPLICATION_LINK, s3_ports["A"], events), root,
                OBJECT_REPLICATION_LINK)
        for name, (proc, _) in pending.items():
            track(name, proc.pid, None)
        link_info = {name: processes.wait_ready(*pending[name], name) for name in list(pending)}
        replicator_port = None
        for r in table_ports:
            name = f"table-replicator-{r}"
            proc, ready = processes.spawn_service(
                "drillkit.targets.sandbox.table_service",
                table_replicator_command(table_ports[r], link_info[table_link(r)]["port"], r, _other(r),
                                         table.replication_delay, events.parent / TABLE_REPLICATION),
                root, name)
            track(name, proc.pid, r)   # it runs in the source region: a fault on the region stops it
            pending[name] = (proc, ready)
        if s3_ports:
            proc, ready = processes.spawn_service(
                "drillkit.targets.sandbox.s3_service",
                replicator_command(link_info[OBJECT_REPLICATION_LINK]["port"], s3_ports["B"],
                                   spec.objects.replication_delay, spec.objects.delete_marker_replication),
                root, "object-replicator")
            track("object-replicator", proc.pid)
            pending["object-replicator"] = (proc, ready)

        db_ports: dict[str, int | None] = {"A": primary.port, "B": None}
        backup_archive = None
        if backups is None:
            standby = pg.standby_from_template(template, run_as, root / "pg-B", link_info[REPLICATION_LINK]["port"],
                                               archive, copying=copies["B"])
            pg.start(bins, run_as, standby, root / "pg-B.log", on_spawn=lambda pid: track("postgres-B", pid, "B"))
            db_ports["B"] = standby.port
            apps["B"] = spawn_apps(root, "B", standby.port, s3_ports, spec.app.capacity, names["B"], track,
                                   tables.get("B"))
        else:
            backup_archive = root / "archive-B"
            run_as.own(root / "backups")
            pg.take_base_backup(bins, run_as, primary.port, root / "backups" / "base-1", root / "base-backup.log")
            proc, ready = processes.spawn_service(
                "drillkit.targets.sandbox.backup_copy",
                ["--bases", str(root / "backups"), "--wal", str(archive), "--dest", str(backup_archive),
                 "--delay", repr(backups.copy_delay), "--events", str(events), "--region", "B",
                 *(["--owner", f"{run_as.uid}:{run_as.gid}"] if run_as.user is not None else [])],
                root, "backup-copy-A-B")
            track("backup-copy-A-B", proc.pid, "A")  # the copy job dies with region A
            processes.wait_ready(proc, ready, "backup-copy-A-B")
        shutil.rmtree(root / TEMPLATE_WORK, ignore_errors=True)
        app_ports = {r: wait_apps(apps.get(r, [])) for r in REGIONS}
        for region in REGIONS:
            name = client_link(region)
            proc, ready = processes.spawn_service(
                "drillkit.targets.sandbox.linkproxy", link_command(name, list(app_ports[region].values()), events),
                root, name)
            track(name, proc.pid)
            pending[name] = (proc, ready)
        for name in (client_link("A"), client_link("B")):
            link_info[name] = processes.wait_ready(*pending[name], name)
        table_replicators = {r: processes.wait_ready(*pending[f"table-replicator-{r}"], f"table-replicator-{r}")["port"]
                             for r in table_ports}
        if "object-replicator" in pending:
            replicator_port = processes.wait_ready(*pending["object-replicator"], "object-replicator")["port"]

        routing = spec.routing
        # config-json: the router is the frontend's CDN, failing over per request between the sites
        proc, ready = processes.spawn_service(
            "drillkit.targets.sandbox.router",
            ["--port", "0", "--primary", "A",
             "--policy", "origin-group" if routing.policy == CONFIG_JSON else routing.policy,
             "--interval", str(routing.interval), "--failure-threshold", str(routing.failure_threshold),
             "--ttl", str(routing.ttl), "--upstream-timeout", str(routing.upstream_timeout),
             "--events", str(events),
             *[a for r in REGIONS for a in ("--region", f"{r}=127.0.0.1:{link_info[client_link(r)]['port']}")]],
            root, "router")
        track("router", proc.pid)
        router = processes.wait_ready(proc, ready, "router")

        if routing.policy == CONFIG_JSON:
            publish_site(s3_ports, {r: link_info[client_link(r)]["port"] for r in REGIONS}, backend="A")
        roles = {"A": "primary", "B": "standby" if backups is None else "empty"}
        state = SandboxState(
            root=str(root), events_file=str(events), pg_bin=str(bins.bindir), pg_version=bins.version,
            pg_user=run_as.user, archive_dir=str(archive), strategy=spec.strategy,
            replication_mode=spec.replication.mode, routing_policy=routing.policy, primary_region="A",
            router_port=router["port"], app_capacity=spec.app.capacity, max_instances=spec.app.max_instances,
            backup_archive=str(backup_archive) if backup_archive else None,
            config_backend="A" if routing.policy == CONFIG_JSON else None,
            config_ttl=routing.ttl if routing.policy == CONFIG_JSON else None,
            table_replication_delay=table.replication_delay if table is not None else 0.0,
            regions={r: RegionState(name=r, role=roles[r], db_port=db_ports[r],
                                    datadir=str(root / f"pg-{r}") if db_ports[r] else None, apps=app_ports[r],
                                    link=client_link(r), s3_port=s3_ports.get(r), table_port=table_ports.get(r),
                                    clock_offset=tables[r][1] if r in tables else 0.0,
                                    table_replicator_port=table_replicators.get(r))
                     for r in REGIONS},
            object_replicator_port=replicator_port,
            links={name: LinkState(name=name, port=info["port"], control_port=info["control_port"],
                                   upstream=info.get("upstream", "")) for name, info in link_info.items()},
        )
        state.save()
        sandbox = cls(state)
        if backups is None:
            sandbox.wait_streaming(timeout=15)
        if spec.replication.mode == "sync":
            pg.require_synchronous_standby(primary.port)
        return sandbox

    def adopt(self, name: str, pid: int, region: str | None = None) -> None:
        """Take a drill process (the load, a restored region's servers) into the sandbox's registry,
        so a reaper finds it too; with a `region`, a fault on the region reaches it."""
        self.state.processes.append(processes.entry_for(name, pid, region))
        self._save_registry()

    # -- tear down ------------------------------------------------------------------------

    def down(self) -> None:
        """Stop every process this sandbox started and delete its folder."""
        with processes.shielded():
            self._reload()
            processes.continue_all(self.state.processes)
            processes.stop_all(self.state.processes)
            _drop_pg_leftovers(Path(self.state.root))
            shutil.rmtree(self.state.root, ignore_errors=True)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    # -- the System operations ------------------------------------------------------------

    def _processes_of(self, region: str) -> list[ProcessEntry]:
        return [p for p in self.state.processes if p.region == region]

    def _region(self, region: str) -> RegionState:
        try:
            return self.state.regions[region]
        except KeyError:
            raise FaultError(f"no region {region!r} (regions: {', '.join(self.state.regions)})") from None

    def kill_region(self, region: str) -> RegionFault:
        """SIGKILL every process of the region: its database and its app die at once.

        Returns the killed processes and `t`, the moment the signals went out: the fault's time.
        """
        self._region(region)
        killed = [p.name for p in self._processes_of(region) if processes.kill_group(p)]
        t = time.time()
        processes.wait_gone(self._processes_of(region), 5.0)
        self.state.regions[region].role = "down"
        self.state.save()
        return RegionFault(region, t, tuple(killed))

    def freeze_region(self, region: str) -> RegionFault:
        """SIGSTOP every process group of the region: alive but silent, like a hung host.

        Connections stay open and nothing answers, which is harder on clients than a crash. Its
        `t` is when every thread of the region had stopped, not when the signals went out.
        """
        self._region(region)
        ours = [p for p in self._processes_of(region) if processes.is_ours(p)]
        members = processes.group_members(ours)
        frozen = [p.name for p in ours if processes.kill_group(p, signal.SIGSTOP)]
        processes.wait_stopped(members, 1.0)
        t = time.time()   # the moment nothing of the region runs any more
        self.state.regions[region].frozen = True
        self.state.save()
        return RegionFault(region, t, tuple(frozen))

    def thaw_region(self, region: str) -> RegionFault:
        """SIGCONT the region's processes; `was_frozen` tells a real thaw from a repeated one."""
        target = self._region(region)
        was_frozen = target.frozen
        thawed = [p.name for p in self._processes_of(region) if processes.kill_group(p, signal.SIGCONT)]
        t = time.time()
        target.frozen = False
        self.state.save()
        return RegionFault(region, t, tuple(thawed), was_frozen=was_frozen)

    def kill_app_tier(self, region: str) -> RegionFault:
        """SIGKILL only the region's app: compute is gone, its database keeps running."""
        self._region(region)
        target = self._region(region)
        apps = [p for p in self._processes_of(region) if p.name in target.apps]
        killed = [p.name for p in apps if processes.kill_group(p)]
        t = time.time()
        processes.wait_gone(apps, 5.0)
        target.apps = {}  # the link keeps their ports (refused) until the runbook scales the tier again
        self.state.processes = [p for p in self.state.processes if p not in apps]
        self._save_registry()
        return RegionFault(region, t, tuple(killed))

    def _standby(self, region: str) -> RegionState:
        target = self._region(region)
        if target.role != "standby":
            raise FaultError(f"region {region} is {target.role}, not a standby")
        return target

    def pause_replay(self, region: str) -> ReplayChange:
        """Stop applying WAL on the standby while it keeps receiving: lag without touching the network."""
        target = self._standby(region)
        with psycopg.connect(pg.dsn(target.db_port, connect_timeout=1), autocommit=True) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
            t = time.time()
        return ReplayChange(region, t)

    def resume_replay(self, region: str) -> ReplayChange:
        """Apply WAL again; a no-op (`changed: False`) on a server no longer in recovery."""
        target = self._region(region)
        with psycopg.connect(pg.dsn(target.db_port, connect_timeout=1), autocommit=True) as conn:
            in_recovery, paused = conn.execute(
                "SELECT pg_is_in_recovery(), pg_is_in_recovery() AND pg_is_wal_replay_paused()").fetchone()
            if in_recovery:
                conn.execute("SELECT pg_wal_replay_resume()")
            t = time.time()
        return ReplayChange(region, t, changed=bool(paused))

    def promote_standby(self, region: str) -> Promotion:
        target = self._region(region)
        if target.role != "standby":
            raise FaultError(f"region {region} is {target.role}, not a standby")
        took = pg.promote(target.db_port)
        target.role = "primary"
        self.state.primary_region = region
        self.state.save()
        return Promotion(region, took)

    def switch_routing(self, to: str, reason: str = "runbook") -> RoutingStatus:
        self._region(to)
        if self.state.routing_policy == CONFIG_JSON:
            return self.publish_config(to, reason)
        status, body = self._router("/switch", "POST", {"to": to, "reason": reason})
        if status != 200:
            raise FaultError(f"router refused the switch to {to}: {body.get('error', status)}")
        return routing_status(body)

    def routing(self) -> RoutingStatus:
        if self.state.routing_policy == CONFIG_JSON:
            return self.config_status()
        status, body = self._router("")
        if status != 200:
            raise FaultError(f"router answered {status}")
        return routing_status(body)

    def invert_health_check(self, region: str, inverted: bool) -> RoutingStatus:
        """The router's health check of `region` reports the opposite of what it sees (Route 53's
        `Inverted`): under ``dns`` the answer follows after the failure threshold, as in Route 53."""
        status, body = self._router("/health", "POST", {"region": region, "inverted": inverted})
        if status != 200:
            raise FaultError(f"the router refused: {body.get('error', status)}")
        return routing_status(body)

    def _router(self, path: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict]:
        """A call to the router's control API; a router that cannot answer is a broken sandbox."""
        try:
            return http_json(f"{self.endpoint}/_drillkit/router{path}", method, body)
        except (OSError, ValueError) as exc:
            raise SandboxError(self.service_failure() or f"the router does not answer: {exc}") from None

    def service_failure(self) -> str | None:
        """Why a service of the sandbox stopped doing its job, or None while every one does.

        A service that fails on its own leaves a failure file (drillkit.net.fail); the
        router and the links, which no fault and no runbook step ever stops, must also be alive.
        Reads only files, so a watchdog thread may call it on its own handle.
        """
        root = Path(self.state.root)
        failed = processes.failures(root)
        if failed:
            first = failed[0]
            return f"sandbox service {first.get('service')} failed: {first.get('reason')}"
        links = load_state(self.state_file).links  # the file, not this handle: a runbook step adds links
        for entry in processes.read_registry(root):
            if (entry.name == "router" or entry.name in links) and not processes.alive(entry):
                return f"sandbox service {entry.name} (pid {entry.pid}) is gone"
        return None

    def serving_region(self) -> str:
        return self.routing().answer

    def region_health(self, region: str, timeout: float = 1.0) -> RegionHealth:
        """The region's /health as a client sees it, through its client link."""
        link = self.state.links[self._region(region).link]
        try:
            status, body = http_json(f"http://127.0.0.1:{link.port}/health", timeout=timeout)
        except (OSError, ValueError) as exc:
            return RegionHealth(region, False, error=str(exc) or type(exc).__name__)
        return RegionHealth(region, status == 200, status=status, role=body.get("role"), error=body.get("error"))

    def link(self, name: str) -> LinkControl:
        try:
            return LinkControl(self.state.links[name].control_port)
        except KeyError:
            raise FaultError(f"no link {name!r} (links: {', '.join(self.state.links)})") from None

    def link_names(self) -> list[str]:
        return list(self.state.links)

    def inject_link_fault(self, link: str, kind: str, **params) -> LinkChange:
        return LinkChange(link, self.link(link).inject(kind, **params)["at"])

    def clear_link_fault(self, link: str, kind: str | None = None) -> LinkChange:
        return LinkChange(link, self.link(link).clear(kind)["at"])

    def replication_status(self) -> list[ReplicaStatus]:
        """pg_stat_replication on the current primary."""
        primary = self._region(self.state.primary_region)
        query = ("SELECT application_name, state, sync_state, "
                 "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes, "
                 "EXTRACT(epoch FROM replay_lag)::float AS replay_lag_s FROM pg_stat_replication")
        with psycopg.connect(pg.dsn(primary.db_port, connect_timeout=1), autocommit=True) as conn:
            cur = conn.execute(query)
            names = [c.name for c in cur.description]
            return [ReplicaStatus(**dict(zip(names, row))) for row in cur.fetchall()]

    def wait_streaming(self, timeout: float = 15) -> list[ReplicaStatus]:
        deadline = time.monotonic() + timeout
        rows: list[ReplicaStatus] = []
        while time.monotonic() < deadline:
            rows = self.replication_status()
            if any(r.state == "streaming" for r in rows):
                return rows
            time.sleep(0.05)
        raise SandboxError(f"the standby is not streaming after {timeout:.0f}s: {rows}")

    def replication_lag(self) -> list[LagSample]:
        """Lag of every standby: time since the last replayed commit, unless it has replayed everything.

        "Everything" is the primary's current WAL position when the primary answers: a standby cut
        off from its primary (blackholed link) has replayed all it received, yet lags. Without a
        primary, the standby's own received position is the best it knows. A standby promoted
        behind this handle's back (a stale state file) no longer lags anything: 0.
        """
        self._reload()
        samples = []
        lag_bytes = {}
        primary_lsn = None
        try:
            lag_bytes = {r.application_name: r.lag_bytes for r in self.replication_status()}
            primary = self._region(self.state.primary_region)
            with psycopg.connect(pg.dsn(primary.db_port, connect_timeout=1), autocommit=True) as conn:
                primary_lsn = str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0])
        except psycopg.Error:
            pass
        for region in self.state.regions.values():
            if region.role != "standby":
                continue
            try:
                with psycopg.connect(pg.dsn(region.db_port, connect_timeout=1), autocommit=True) as conn:
                    # the lag and the instant it held, from one clock reading: a sample stamped
                    # before the connection (busy machine: 170 ms earlier) put the moment the lag
                    # passed a threshold that much too early
                    row = conn.execute(
                        "SELECT CASE WHEN NOT pg_is_in_recovery() "
                        "OR pg_wal_lsn_diff(COALESCE(%s::pg_lsn, pg_last_wal_receive_lsn()), "
                        "pg_last_wal_replay_lsn()) <= 0 THEN 0 "
                        "ELSE EXTRACT(epoch FROM n.at - pg_last_xact_replay_timestamp()) END, "
                        "EXTRACT(epoch FROM n.at) FROM (SELECT clock_timestamp() AS at) AS n",
                        (primary_lsn,)).fetchone()
            except psycopg.Error:
                continue
            samples.append(LagSample(t=float(row[1]), region=region.name, replay_lag_s=float(row[0] or 0.0),
                                     lag_bytes=lag_bytes.get(pg.STANDBY_NAME)))
        if self.state.object_replicator_port is not None:
            try:
                status = self.objects.replication_status()
                samples.append(LagSample(t=status.at or time.time(), region=self.state.object_destination,
                                         replay_lag_s=None, lag_bytes=None,
                                         object_backlog=status.backlog,
                                         object_backlog_age_s=status.oldest_pending_s or 0.0))
            except SandboxError:
                pass
        return samples

    def final_state(self) -> Iterator[tuple[str, str]]:
        """Every record of the serving region's database, checksummed from the payload as stored,
        then every object of its store (keys `obj/<key>`)."""
        self._reload()
        region = self._region(self.audit_source())
        with psycopg.connect(pg.dsn(region.db_port)) as conn:
            with conn.cursor(name="audit") as cur:
                cur.execute("SELECT key, payload FROM records ORDER BY key")
                for key, payload in cur:
                    yield key, hashlib.sha256(payload.encode()).hexdigest()
        if region.s3_port is not None:
            yield from self.objects.final_state(region.name)

    @property
    def objects(self) -> ObjectStorage:
        return ObjectStorage(self.state)

    # -- the state file ---------------------------------------------------------------------

    def _reload(self) -> None:
        """Runbook steps run in other Sandbox handles (chaos providers attach by state file): a
        restore replaces a region's processes and ports, so the file, not memory, is the truth."""
        if self.state_file.is_file():
            self.state = load_state(self.state_file)

    def _save_registry(self) -> None:
        processes.write_registry(Path(self.state.root), self.state.processes)
        self.state.save()

    def _pg_tools(self) -> tuple[pg.PgBinaries, pg.RunAs]:
        return pg.PgBinaries(Path(self.state.pg_bin), self.state.pg_version), pg.RunAs.for_postgres()

    def _primary(self) -> RegionState:
        return self._region(self.state.primary_region)


def _drop_pg_leftovers(root: Path) -> None:
    """The System V segments SIGKILLed postmasters of `root` (a sandbox folder of ours) left."""
    for datadir in root.glob("pg-*"):
        if stat.S_ISDIR(os.lstat(datadir).st_mode):  # a real data directory, never a symlink
            pg.drop_shared_memory(datadir)


def reap(root: Path) -> int:
    """Stop the processes of the verified sandbox folder `root` that are provably its own (mark,
    start time, user), drop its dead postmasters' segments and delete it."""
    stopped = processes.stop_registered(root)
    _drop_pg_leftovers(root)
    shutil.rmtree(root, ignore_errors=True)
    return stopped


def reap_stale(base_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Reap this user's sandboxes whose owning harness is dead (SIGKILLed); never a live drill's."""
    return processes.reap_abandoned(Path(base_dir or tempfile.gettempdir()), SANDBOX_PREFIX, reap)
