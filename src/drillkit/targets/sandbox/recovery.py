"""Corruption and point-in-time recovery on the sandbox: base backups, logical corruption, checksum
scans, and PITR into a new cluster that takes the region over. A mixin of Sandbox."""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from drillkit.errors import FaultError, SandboxError, ServiceError
from drillkit.targets import processes
from drillkit.targets.capabilities import Backup, Corruption, Restore, RestoreTest, TableDrop
from drillkit.targets.sandbox import postgres as pg
from drillkit.targets.sandbox.backup_copy import BASE_PREFIX, MANIFEST, WAL_DIR
from drillkit.net import free_port


class Recovery:
    """Operations of `Sandbox` (which supplies state, _region, _primary, _pg_tools, adopt, link...)."""

    @property
    def base_backup_dir(self) -> Path:
        return Path(self.state.root) / "base-backup"

    def corrupt_records(self, count: int, region: str | None = None) -> Corruption:
        """Logical corruption: rewrite the payload of `count` random records on the primary but keep
        their checksums, in one transaction, so it replicates like any good write. `t` is the commit."""
        target = self._region(region or self.state.primary_region)
        if target.role != "primary":
            raise FaultError(f"region {target.name} is {target.role}: corruption must be written on the primary")
        with psycopg.connect(pg.dsn(target.db_port)) as conn:
            rows = conn.execute(
                "UPDATE records SET payload = 'corrupted-' || md5(random()::text) "
                "WHERE key IN (SELECT key FROM records ORDER BY random() LIMIT %s) RETURNING key",
                (int(count),)).fetchall()
            conn.commit()
            t = time.time()
        if not rows:
            raise FaultError(f"no records in region {target.name} to corrupt")
        return Corruption(target.name, t, tuple(sorted(r[0] for r in rows)))

    def drop_table(self, region: str | None = None) -> TableDrop:
        """The accidental `DROP TABLE records` on the primary: it replicates to the standby like
        any statement, and every read and write of the app fails from its commit (`t`) on."""
        target = self._region(region or self.state.primary_region)
        if target.role != "primary":
            raise FaultError(f"region {target.name} is {target.role}: a table is dropped on the primary")
        with psycopg.connect(pg.dsn(target.db_port)) as conn:
            rows = conn.execute("SELECT count(*) FROM records").fetchone()[0]
            conn.execute("DROP TABLE records")
            conn.commit()
            t = time.time()
        return TableDrop(target.name, t, "records", int(rows))

    def scan_checksums(self, region: str | None = None) -> int:
        """Records whose payload no longer matches the checksum the app stored when it wrote them."""
        target = self._region(region or self.serving_region())
        with psycopg.connect(pg.dsn(target.db_port, connect_timeout=1), autocommit=True) as conn:
            return int(conn.execute(
                "SELECT count(*) FROM records "
                "WHERE encode(sha256(convert_to(payload, 'UTF8')), 'hex') <> checksum").fetchone()[0])

    def _switch_wal_and_wait_archived(self, port: int, timeout: float = 30) -> str:
        """Close the current WAL segment and wait until the archive holds it: WAL still in the
        primary's pg_wal is out of reach of a restore."""
        with psycopg.connect(pg.dsn(port), autocommit=True) as conn:
            segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        _wait_for_file(Path(self.state.archive_dir) / segment, timeout, f"archived WAL segment {segment}")
        return segment

    def take_base_backup(self) -> Backup:
        """The nightly backup a PITR starts from: pg_basebackup of the primary, then a WAL switch
        so the archive continues exactly where the backup ends."""
        bins, run_as = self._pg_tools()
        primary = self._primary()
        target = self.base_backup_dir
        t0 = time.time()
        pg.take_base_backup(bins, run_as, primary.db_port, target, Path(self.state.root) / "base-backup.log")
        segment = self._switch_wal_and_wait_archived(primary.db_port)
        return Backup(str(target), t0, time.time() - t0, segment)

    def restore_to_point_in_time(self, restore_point: float, region: str | None = None,
                                 timeout: float = 60) -> Restore:
        """PITR into a new cluster that then serves the region: base backup + archived WAL replayed
        up to `restore_point` (epoch seconds), promoted, a new app over it; then the cutover: the old
        app stops (`cutover_at`: no write is acknowledged from the old data after it), the client
        link moves to the new app, and the old database stops."""
        name = region or self.state.primary_region
        old = self._region(name)
        if not (self.base_backup_dir / "backup_label").is_file():
            raise FaultError("no base backup to restore from: take one (take_base_backup) before the fault")
        bins, run_as = self._pg_tools()
        root = Path(self.state.root)
        t0 = time.time()
        if old.role == "primary":
            self._switch_wal_and_wait_archived(old.db_port)

        n = 1
        while (root / f"pg-{name}-restored-{n}").exists():
            n += 1
        tag = f"{name}-restored-{n}"
        datadir = root / f"pg-{tag}"
        target_time = _pg_timestamp(restore_point)
        server, newest = pg.recover_cluster(
            bins, run_as, pg.PgServer(tag, datadir, free_port()), self.base_backup_dir, root / f"pg-{tag}.log",
            {"restore_command": f'cp "{self.state.archive_dir}/%f" "%p"', "recovery_target_time": target_time},
            timeout, on_spawn=lambda pid: self.adopt(f"postgres-{tag}", pid, name))
        db_port = server.port
        pg.write_conf(datadir, {"recovery_target_time": ""})  # a standby cloned from it must not stop there

        apps = self.start_app_instances(name, db_port, max(1, len(old.apps)), prefix=f"app-{tag}")

        keep = {f"postgres-{tag}", *apps}
        retired = [p for p in self._processes_of(name) if p.name not in keep and not p.name.startswith("s3")]
        old_apps = [p for p in retired if not p.name.startswith("postgres")]
        # a SIGTERMed app stops accepting but serves its keep-alive clients until they leave: cut them
        processes.stop_all(old_apps, grace=0.0)
        cutover = time.time()
        old.apps = apps
        self.balance_app_tier(name)
        processes.stop_all([p for p in retired if p not in old_apps])
        self.state.processes = [p for p in self.state.processes if p not in retired]
        old.db_port, old.datadir, old.role = db_port, str(datadir), "primary"
        self.state.primary_region = name
        self._save_registry()
        return Restore(region=name, restore_point=restore_point, recovery_target_time=target_time,
                       newest_record_at=newest, cutover_at=cutover, took_s=time.time() - t0, db_port=db_port,
                       retired=tuple(p.name for p in retired))


DIGEST = ("SELECT count(*), coalesce(md5(string_agg(key || ':' || checksum || ':' || md5(payload), ',' "
          "ORDER BY key)), '') FROM records")
"""Every record as the app wrote it (key, stored checksum, payload), as one digest."""
CORRUPT = "SELECT count(*) FROM records WHERE encode(sha256(convert_to(payload, 'UTF8')), 'hex') <> checksum"


class RestoreTests:
    """The monthly restore test. A mixin of Sandbox (state, _primary, _pg_tools, adopt…)."""

    def _latest_backup(self) -> tuple[Path, Path]:
        """The newest base backup a restore can start from and the WAL archive that continues it:
        region B's copies under backup-restore, else the nightly base backup and the WAL archive."""
        if self.state.backup_archive is not None:
            archive = Path(self.state.backup_archive)
            bases = sorted((b for b in archive.glob(f"{BASE_PREFIX}*") if (b / MANIFEST).is_file()),
                           key=lambda b: (b / MANIFEST).stat().st_mtime)
            if bases:
                return bases[-1], archive / WAL_DIR
        elif (self.base_backup_dir / MANIFEST).is_file():
            return self.base_backup_dir, Path(self.state.archive_dir)
        raise FaultError("no base backup to test: take one (take_base_backup) first")

    def restore_test(self, timeout: float = 120) -> RestoreTest:
        """Restore the latest backup into a scratch cluster while production runs, and prove it.

        On the primary, in one transaction that holds writes off (SHARE lock: reads go on), every
        record is counted and digested and a named restore point is written; its WAL segment is
        closed and archived (and, under backup-restore, copied to region B). The scratch cluster
        replays the backup's archive to that restore point, is promoted with archiving off (it
        must never write into production's archive), and must hold exactly those records, none
        corrupt. Then it is stopped and deleted, whatever the outcome."""
        self._reload()
        primary = self._primary()
        base, wal_dir = self._latest_backup()
        taken_at = (base / MANIFEST).stat().st_mtime
        bins, run_as = self._pg_tools()
        root = Path(self.state.root)
        n = 1
        while (root / f"pg-restore-test-{n}").exists() or (root / f"pg-restore-test-{n}.log").exists():
            n += 1
        tag, point = f"restore-test-{n}", f"drillkit-restore-test-{n}"
        t0 = time.time()
        with psycopg.connect(pg.dsn(primary.db_port)) as conn:
            conn.execute("LOCK TABLE records IN SHARE MODE")
            held_from = time.time()
            rows, digest = conn.execute(DIGEST).fetchone()
            conn.execute("SELECT pg_create_restore_point(%s)", (point,))
            conn.commit()
            point_at = time.time()
        segment = self._switch_wal_and_wait_archived(primary.db_port)
        _wait_for_file(wal_dir / segment, timeout, f"WAL segment {segment} in {wal_dir}")
        datadir, name = root / f"pg-{tag}", f"postgres-{tag}"
        got_rows, got_digest, corrupt, error, restored_at = 0, "", 0, None, None
        try:
            server, _ = pg.recover_cluster(
                bins, run_as, pg.PgServer(tag, datadir, free_port()), base, root / f"pg-{tag}.log",
                {"restore_command": f'cp "{wal_dir}/%f" "%p"', "recovery_target_name": point,
                 "archive_mode": "off"}, timeout, on_spawn=lambda pid: self.adopt(name, pid))
            restored_at = time.time()
            with psycopg.connect(pg.dsn(server.port), autocommit=True) as conn:
                got_rows, got_digest = conn.execute(DIGEST).fetchone()
                corrupt = int(conn.execute(CORRUPT).fetchone()[0])
        except ServiceError as exc:   # the backup did not restore to the point: what the test is for
            error = f"{exc} (see {root / f'pg-{tag}.log'})"
        finally:
            scratch = [p for p in self.state.processes if p.name == name]
            processes.stop_all(scratch)
            self.state.processes = [p for p in self.state.processes if p not in scratch]
            self._save_registry()
            pg.drop_shared_memory(datadir)
            shutil.rmtree(datadir, ignore_errors=True)
        segments = sum(1 for p in wal_dir.iterdir() if len(p.name) == 24)
        t = time.time()
        return RestoreTest(
            base_backup=base.name, backup_taken_at=taken_at, backup_age_s=point_at - taken_at, restore_point=point,
            point_at=point_at, wal_segments=segments, rows_expected=int(rows), rows_restored=int(got_rows),
            digest_expected=digest, digest_restored=got_digest, corrupt_restored=corrupt,
            writes_held_s=point_at - held_from, restore_s=(restored_at or time.time()) - point_at, took_s=t - t0, t=t,
            torn_down=not datadir.exists(), error=error)


def _wait_for_file(path: Path, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SandboxError(f"{what} not there after {timeout:.0f}s")
        time.sleep(0.02)


def _pg_timestamp(t: float) -> str:
    """An epoch time as PostgreSQL parses it, in UTC to the microsecond."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")
