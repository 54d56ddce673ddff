"""One archive of a sealed evidence folder, for an auditor to keep and verify offline.

`pack(folder)` writes `<folder>.tar.gz`: the folder as it is on disk, under its own name, with the
register's entries for this drill beside it (`<name>.register.jsonl`, copies: the register stays
the one beside the folders). `unpacked(archive)` opens one into a temporary folder, refusing links,
devices, absolute or escaping paths (tarfile's `data` filter) and more bytes than the disk holds;
`drillkit verify ARCHIVE` checks that folder against its manifest and removes it.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from drillkit import evidence as ev
from drillkit.errors import EvidenceError, InputError
from drillkit.evidence.register import REGISTER, read_register
from drillkit.evidence.signing import canonical_json

SUFFIX = ".tar.gz"


def pack(folder: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    folder = Path(folder)
    if not (folder / ev.MANIFEST).is_file():
        raise InputError(f"no {ev.MANIFEST}: only a sealed evidence folder is packed", file=str(folder))
    name = folder.resolve().name
    target = Path(out) if out is not None else folder.resolve().parent / f"{name}{SUFFIX}"
    if os.path.lexists(target):
        raise InputError("already exists: drillkit never overwrites an archive", file=str(target), field="--out")
    entries = [e for e in read_register(folder.resolve().parent) if e.get("drill") == name]
    with tempfile.TemporaryDirectory(prefix="drillkit-pack-") as tmp:
        part = Path(tmp) / target.name
        with tarfile.open(part, "w:gz") as tar:
            tar.add(folder, arcname=name, filter=_plain)
            if entries:
                extra = Path(tmp) / f"{name}.{REGISTER}"
                extra.write_bytes(b"".join(canonical_json(e) + b"\n" for e in entries))
                tar.add(extra, arcname=extra.name, filter=_plain)
        try:
            shutil.move(part, target)
        except OSError as exc:
            raise InputError(f"cannot write the archive ({exc.strerror or exc})", file=str(target)) from exc
    return target


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Regular files and folders only, owned by nobody in particular."""
    if not (info.isfile() or info.isdir()):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


@contextmanager
def unpacked(archive: str | os.PathLike[str]) -> Iterator[Path]:
    """The evidence folder inside `archive`, extracted into a temporary folder removed afterwards."""
    archive = Path(archive)
    tmp = Path(tempfile.mkdtemp(prefix="drillkit-verify-"))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                size = sum(m.size for m in members)
                if size > shutil.disk_usage(tmp).free:
                    raise EvidenceError(f"{archive}: holds {size} bytes, more than the disk has free")
                tops = {m.name.split("/", 1)[0] for m in members if not m.name.endswith(f".{REGISTER}")}
                if len(tops) != 1:
                    raise EvidenceError(f"{archive}: not one evidence folder (top level: {sorted(tops)[:5]})")
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            raise EvidenceError(f"{archive}: not a readable drill archive ({exc})") from exc
        folder = tmp / tops.pop()
        if not folder.is_dir():
            raise EvidenceError(f"{archive}: not one evidence folder")
        yield folder
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
