"""The cross-region backup copy job of backup-and-restore: region A's base backups and archived WAL
segments, copied to region B's archive `--delay` seconds after each was written.

It runs in region A (a region loss kills it), so what had not been copied when A was lost is lost:
that is backup-and-restore's RPO. A base backup is copied whole, once its `backup_manifest` exists
(pg_basebackup writes it last); a WAL segment once the archiver has written it. Each copy lands
under a temporary name and is renamed into place, so B's archive never holds half a file, and each
is recorded as `backup.copied` with when it was written and when it arrived. Run as
``python -m drillkit.targets.sandbox.backup_copy``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import threading
import time
from pathlib import Path

from drillkit.evidence import BACKUP_COPIED
from drillkit.net import add_service_arguments, record_event, start_service, write_ready_file

MANIFEST = "backup_manifest"
BASE_PREFIX = "base-"
WAL_DIR = "wal"


def pending(bases: Path, wal: Path, dest: Path) -> list[tuple[float, Path, Path]]:
    """(written_at, source, destination) of every finished backup file not yet in `dest`."""
    out = []
    for base in sorted(bases.glob(f"{BASE_PREFIX}*")):
        manifest = base / MANIFEST
        if base.is_dir() and manifest.is_file() and not (dest / base.name).exists():
            out.append((manifest.stat().st_mtime, base, dest / base.name))
    for segment in sorted(wal.iterdir()) if wal.is_dir() else []:
        target = dest / WAL_DIR / segment.name
        if segment.is_file() and not segment.name.startswith(".") and not target.exists():
            out.append((segment.stat().st_mtime, segment, target))
    return out


def copy(source: Path, target: Path, owner: tuple[int, int] | None) -> None:
    tmp = target.parent / f".{target.name}.copying"
    shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    if source.is_dir():
        shutil.copytree(source, tmp)
    else:
        shutil.copy2(source, tmp)
    if owner is not None:
        for path in [tmp, *tmp.rglob("*")] if tmp.is_dir() else [tmp]:
            os.chown(path, *owner)
    os.replace(tmp, target)


def run(args: argparse.Namespace, stop: threading.Event) -> None:
    dest = Path(args.dest)
    (dest / WAL_DIR).mkdir(parents=True, exist_ok=True)
    owner = tuple(int(x) for x in args.owner.split(":")) if args.owner else None
    if owner is not None:
        for d in (dest, dest / WAL_DIR):
            os.chown(d, *owner)
    while not stop.is_set():
        now = time.time()
        for written, source, target in pending(Path(args.bases), Path(args.wal), dest):
            if written + args.delay > now:
                continue
            copy(source, target, owner)
            record_event(args.events, BACKUP_COPIED, file=source.name,
                         what="base backup" if source.is_dir() else "wal segment",
                         written_at=round(written, 6), region=args.region)
        stop.wait(args.poll)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drillkit.targets.sandbox.backup_copy",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--bases", required=True, help="folder holding region A's base backups (base-*)")
    parser.add_argument("--wal", required=True, help="region A's WAL archive")
    parser.add_argument("--dest", required=True, help="region B's archive")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds between a file's writing and its copy")
    parser.add_argument("--poll", type=float, default=0.05)
    parser.add_argument("--owner", help="UID:GID the copies belong to (the PostgreSQL user that restores them)")
    parser.add_argument("--region", default="B", help="the region the copies land in")
    parser.add_argument("--events", required=True, help="the drill's events.jsonl (absolute path)")
    add_service_arguments(parser)
    args = parser.parse_args(argv)
    if args.delay < 0 or args.poll <= 0:
        parser.error("--delay must be >= 0 and --poll > 0")
    start_service("backup-copy", args, parser)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = threading.Thread(target=run, args=(args, stop), name="backup-copy", daemon=True)
    worker.start()
    if args.ready_file:
        write_ready_file(args.ready_file, 0)
    while worker.is_alive() and not stop.wait(0.5):
        pass
    stop.set()
    worker.join(5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
