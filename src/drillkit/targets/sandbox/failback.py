"""Failback on the sandbox: the lost region rebuilt as a standby of the new primary, reads shifted
to it in steps, then a planned switchover that loses nothing. A mixin of Sandbox."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg

from drillkit.errors import FaultError, SandboxError
from drillkit.targets import processes
from drillkit.targets.capabilities import CatchUp, Rebuild, RoutingStatus, Switchover
from drillkit.targets.sandbox import postgres as pg
from drillkit.targets.sandbox.linkproxy import command as link_command
from drillkit.net import http_json
from drillkit.targets.sandbox.router import routing_status
from drillkit.targets.sandbox.s3_service import replicator_command
from drillkit.targets.sandbox.state import LinkState


class FailbackSteps:
    """Operations of `Sandbox` (which supplies state, _region, _primary, _pg_tools, adopt, link...)."""

    def rebuild_as_standby(self, region: str, timeout: float = 60) -> Rebuild:
        """Failback, first step: the lost region returns as a hot standby of the current primary, from
        a fresh base backup (its old data may hold writes the primary never saw: discarded, not
        rewound), streaming through its own replication link so link faults reach it; a new app over
        it takes the region's client link. The router's failover record is pinned to the primary
        first: a Route 53-style check would otherwise send writes to the standby once it answers."""
        self._reload()
        target = self._region(region)
        if region == self.state.primary_region:
            raise FaultError(f"region {region} holds the primary: nothing to rebuild it from")
        source = self._primary()
        bins, run_as = self._pg_tools()
        root = Path(self.state.root)
        t0 = time.time()
        self.switch_routing(source.name, reason=f"failback: {source.name} stays primary while {region} is rebuilt")

        retired = [p for p in self._processes_of(region) if p.name.startswith(("postgres", "app", "s3"))]
        processes.continue_all(retired)
        processes.stop_all(retired, grace=1.0)
        self.state.processes = [p for p in self.state.processes
                                if p not in retired and (p.region != region or processes.is_ours(p))]
        self._save_registry()

        link = self._replication_link(source.name, region)
        n = 1
        while (root / f"pg-{region}-rebuilt-{n}").exists():
            n += 1
        datadir = root / f"pg-{region}-rebuilt-{n}"
        log = Path(f"{datadir}.log")
        server = pg.init_standby(bins, run_as, datadir, link.port, Path(self.state.archive_dir), log)
        pg.write_conf(datadir, {"archive_mode": "on"})  # archives again once the switchover promotes it
        pg.start(bins, run_as, server, log, timeout=timeout,
                 on_spawn=lambda pid: self.adopt(f"postgres-{region}", pid, region))

        if target.s3_port is not None:
            target.s3_port = self._start_object_store(region)
            self._replicate_objects(source.name, region, after=0)
        target.apps = self.start_app_instances(region, server.port, max(1, len(target.apps)))
        self.balance_app_tier(region)
        target.db_port, target.datadir, target.role = server.port, str(datadir), "standby"
        self.state.save()
        return Rebuild(region=region, source=source.name, datadir=str(datadir), db_port=server.port,
                       link=link.name, retired=tuple(p.name for p in retired), t=t0, took_s=time.time() - t0)

    def _start_object_store(self, region: str) -> int:
        """A new, empty store for a rebuilt region: the lost one died with its region's data."""
        proc, ready = processes.spawn_service("drillkit.targets.sandbox.s3_service", ["store"], Path(self.state.root),
                                              f"s3-{region}")
        self.adopt(f"s3-{region}", proc.pid, region)
        return processes.wait_ready(proc, ready, f"s3-{region}")["port"]

    def _replicate_objects(self, source: str, destination: str, after: int) -> None:
        """Object replication from `source` to `destination` from the source's change `after` on
        (0: its whole history, which rebuilds an empty store); a new replicator replaces the old
        one, with the same delay and delete-marker setting, through link `objrepl-<source>-<dest>`."""
        settings = self.objects.replication_status()
        link = self._link(f"objrepl-{source}-{destination}", self._region(source).s3_port)
        old = [p for p in self.state.processes if p.name == "object-replicator"]
        processes.stop_all(old)
        self.state.processes = [p for p in self.state.processes if p not in old]
        proc, ready = processes.spawn_service(
            "drillkit.targets.sandbox.s3_service",
            replicator_command(link.port, self._region(destination).s3_port, settings.delay,
                               settings.delete_markers, after),
            Path(self.state.root), "object-replicator")
        self.adopt("object-replicator", proc.pid)
        self.state.object_replicator_port = processes.wait_ready(proc, ready, "object-replicator")["port"]
        self.state.object_source, self.state.object_destination = source, destination
        self.state.save()

    def _replication_link(self, source: str, to: str) -> LinkState:
        """The link `to` streams from `source` through (`repl-<source>-<to>`)."""
        return self._link(f"repl-{source}-{to}", self._region(source).db_port)

    def _link(self, name: str, port: int) -> LinkState:
        """A link to 127.0.0.1:`port`, started on first use, else pointed there."""
        upstream = f"127.0.0.1:{port}"
        if name in self.state.links:
            self.link(name).retarget("127.0.0.1", port)
            self.state.links[name].upstream = upstream
        else:
            root = Path(self.state.root)
            proc, ready = processes.spawn_service(
                "drillkit.targets.sandbox.linkproxy", link_command(name, port, self.state.events_file), root, name)
            self.adopt(name, proc.pid)
            info = processes.wait_ready(proc, ready, name)
            self.state.links[name] = LinkState(name=name, port=info["port"], control_port=info["control_port"],
                                               upstream=upstream)
        self.state.save()
        return self.state.links[name]

    def wait_caught_up(self, region: str, timeout: float = 60) -> CatchUp:
        """The standby streams and has replayed the primary's WAL up to where it stood at the call:
        the point where it may take reads, and a switchover to it loses nothing."""
        self._reload()
        standby = self._standby(region)
        primary = self._primary()
        try:
            with psycopg.connect(pg.dsn(primary.db_port, connect_timeout=1), autocommit=True) as conn:
                goal = str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0])
        except psycopg.OperationalError as exc:
            raise SandboxError(f"the primary in region {primary.name} does not answer: {exc}") from None
        t0 = time.time()
        deadline = time.monotonic() + timeout
        seen: tuple | None = None
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(pg.dsn(standby.db_port, connect_timeout=1), autocommit=True) as conn:
                    seen = conn.execute(
                        "SELECT (SELECT status FROM pg_stat_wal_receiver), pg_last_wal_replay_lsn()::text, "
                        "pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn) >= 0", (goal,)).fetchone()
            except psycopg.OperationalError:
                seen = None
            if seen and seen[0] == "streaming" and seen[2]:
                objects = self._objects_caught_up(region, deadline - time.monotonic())
                return CatchUp(region=region, lsn=goal, replayed=seen[1], t=time.time(),
                               took_s=time.time() - t0, objects_seen=objects)
            time.sleep(0.05)
        raise SandboxError(f"region {region} has not replayed up to {goal} after {timeout:.0f}s "
                           f"(receiver, replayed: {seen and seen[:2]})")

    def _objects_caught_up(self, region: str, timeout: float) -> int | None:
        """The region's store holds every object change its replication source acknowledged so far."""
        if self.state.object_replicator_port is None or self.state.object_destination != region:
            return None
        return self.objects.wait_replicated(max(timeout, 1.0)).seen

    def shift_reads(self, region: str, percent: float) -> RoutingStatus:
        """Send `percent` % of the endpoint's reads to `region` (writes stay with the routing answer)."""
        target = self._region(region)
        if percent and target.role == "down":
            raise FaultError(f"region {region} is down: it cannot take reads")
        status, body = http_json(f"{self.endpoint}/_drillkit/router/reads", "POST",
                                  {"region": region, "percent": percent})
        if status != 200:
            raise FaultError(f"router refused to send {percent}% of the reads to {region}: {body.get('error', status)}")
        return routing_status(body)

    def _wait_healthy(self, region: str, deadline: float) -> None:
        """Until the region's app answers again: its pooled connections to a restarted database
        fail once each before it does."""
        health: dict = {}
        while time.monotonic() < deadline:
            health = self.region_health(region, timeout=0.5)
            if health.healthy:
                return
            time.sleep(0.05)
        raise SandboxError(f"region {region} does not answer after its database restarted: {health}")

    def switchover(self, to: str, timeout: float = 60) -> Switchover:
        """Planned move of the primary to the standby `to`, losing nothing: the primary stops cleanly
        (writes fail from `stopping_at`), `to` replays its shutdown checkpoint and is promoted, the
        endpoint moves to it with every read, then the old primary restarts as its standby."""
        t0 = time.time()
        self.wait_caught_up(to, timeout)  # the write outage then lasts only the tail
        new, old = self._standby(to), self._primary()
        bins, run_as = self._pg_tools()

        old_db = [p for p in self._processes_of(old.name) if p.name.startswith("postgres")]
        old_log = Path(f"{old.datadir}.log")
        stopping_at = time.time()
        pg.stop_fast(bins, run_as, Path(old.datadir), old_log, timeout)
        stopped_at = time.time()
        processes.wait_gone(old_db, 5.0)
        control = pg.control_data(bins, run_as, Path(old.datadir))
        if control.get("Database cluster state") != "shut down":
            raise SandboxError(f"region {old.name} did not shut down cleanly: {control.get('Database cluster state')}")
        checkpoint = control["Latest checkpoint location"]
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(pg.dsn(new.db_port, connect_timeout=1), autocommit=True) as conn:
                    if conn.execute("SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn) > 0",
                                    (checkpoint,)).fetchone()[0]:
                        break
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise SandboxError(f"region {to} never replayed {old.name}'s shutdown checkpoint {checkpoint}")
            time.sleep(0.02)
        replayed_at = time.time()
        self._objects_caught_up(to, deadline - time.monotonic())  # no object write since the stop
        promote_s = pg.promote(new.db_port)
        promoted_at = time.time()
        new.role, old.role, self.state.primary_region = "primary", "standby", to
        self.state.processes = [p for p in self.state.processes if p not in old_db]
        self._save_registry()
        if self.state.object_replicator_port is not None:
            self._replicate_objects(to, old.name, after=self.objects.feed_head(to))
        self.switch_routing(to, reason=f"switchover: {old.name} → {to}")
        for region in self.routing().read_shares:
            self.shift_reads(region, 0)
        routed_at = time.time()

        link = self._replication_link(to, old.name)
        pg.make_standby(run_as, Path(old.datadir), link.port)
        restarted = pg.start(bins, run_as, pg.PgServer(f"standby-{old.name}", Path(old.datadir), old.db_port),
                             old_log, timeout=timeout,
                             on_spawn=lambda pid: self.adopt(f"postgres-{old.name}", pid, old.name))
        old.db_port = restarted.port
        self.state.save()
        self.wait_streaming(timeout)
        if self.state.replication_mode == "sync":
            pg.require_synchronous_standby(new.db_port)
        self._wait_healthy(old.name, deadline=time.monotonic() + timeout)
        return Switchover(old=old.name, to=to, checkpoint=checkpoint, stopping_at=stopping_at,
                          stopped_at=stopped_at, replayed_at=replayed_at, promoted_at=promoted_at,
                          promote_s=promote_s, routed_at=routed_at, no_primary_s=promoted_at - stopping_at,
                          t=t0, took_s=time.time() - t0)
