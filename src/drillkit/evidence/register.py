"""register.jsonl: every drill that ran under one folder, in a hash chain, so a drill cannot
quietly disappear.

A drill appends a `started` entry before it touches the system, and a `sealed` entry (its verdict
and the SHA-256 of its manifest.json) once its folder is sealed; a drill that ended before it was
measured appends `discarded` (with why). A killed drill leaves its `started` entry alone.

Each line is one entry, written as canonical JSON (keys sorted, separators `,` `:`, UTF-8). An
entry's `prev` is the hex SHA-256 of the previous line's bytes (without its newline); the first
entry's is null; `seq` counts from 0. When a signing key is configured the entry is signed
(drillkit.evidence.signing) over the canonical JSON of the entry without `signature`. Removing,
reordering or editing an entry breaks the chain at the next one (or its signature); removing the
last entries leaves a shorter chain that is still whole, which only a head noted elsewhere (the
`head` `drillkit verify --register` prints, a drill's report) can reveal.

One writer (`append`, under an exclusive lock, so two drills may seal at once) and one reader
(`read_register` / `check_register`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drillkit import evidence as ev
from drillkit.errors import EvidenceError, InputError
from drillkit.durations import utc_text
from drillkit.evidence.signing import Signer, TrustedKey, canonical, canonical_json, check

REGISTER = "register.jsonl"
FORMAT = "drillkit-register/1"
STARTED, SEALED, DISCARDED = "started", "sealed", "discarded"
EVENTS = (STARTED, SEALED, DISCARDED)


def _open_for_append(path: Path) -> int:
    """The register, opened for reading and appending without following a link, and only when it
    is a regular file of this user: root's drillkit must not append to a file someone planted."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise InputError(f"cannot open the register ({exc.strerror or exc})", file=str(path)) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
        os.close(fd)
        raise InputError("the register is not a regular file of this user: refusing to write to it",
                         file=str(path))
    return fd


def _last_line(fd: int) -> bytes | None:
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    chunk, pos = b"", size
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        chunk = os.pread(fd, step, pos) + chunk
        body = chunk.rstrip(b"\n")
        if b"\n" in body:
            return body.rsplit(b"\n", 1)[1]
    return chunk.rstrip(b"\n") or None


def append(folder: str | os.PathLike[str], event: str, fields: dict[str, Any],
           signer: Signer | None) -> dict[str, Any]:
    """Append one entry to `folder/register.jsonl`, chained to the last, signed when `signer` is
    given; returns the entry as written."""
    if event not in EVENTS:
        raise ValueError(f"unknown register event {event!r}")
    path = Path(folder) / REGISTER
    fd = _open_for_append(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        last = _last_line(fd)
        try:
            seq = int(json.loads(last)["seq"]) + 1 if last else 0
        except (ValueError, KeyError, TypeError):
            raise EvidenceError(f"{path}: its last line is not a register entry; see drillkit verify "
                                "--register") from None
        entry: dict[str, Any] = {"format": FORMAT, "seq": seq, "prev": hashlib.sha256(last).hexdigest() if last else None,
                                 "event": event, "utc": utc_text(), **fields, "signed": signer is not None}
        if signer is not None:
            entry.update(signer.stamp())
            entry["signature"] = signer.sign(canonical(entry))
        else:
            entry["signature"] = None
        os.write(fd, canonical_json(entry) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return entry


@dataclass
class Finding:
    seq: int | None
    kind: str
    """broken (the chain or an entry's shape) · bad-sig · stripped · missing (a sealed drill's
    folder) · altered (the folder's manifest or files) · unregistered (a sealed folder with no
    entry) · predates (a sealed folder with no entry, sealed before the register's first entry) ·
    unsealed (started, never sealed nor discarded: killed, or still running); the last two do not
    fail the check"""
    message: str

    FAILING = frozenset({"broken", "bad-sig", "stripped", "missing", "altered", "unregistered"})

    @property
    def fails(self) -> bool:
        return self.kind in self.FAILING

    def line(self) -> str:
        where = f"entry {self.seq}" if self.seq is not None else REGISTER
        return f"{self.kind:<12} {where}: {self.message}"


@dataclass
class RegisterCheck:
    folder: Path
    entries: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    unchecked: bool = False
    """Signed entries, and no trusted key was given."""
    head: str | None = None
    """The SHA-256 of the last line: note it, and a register cut short later is caught."""

    @property
    def ok(self) -> bool:
        return not any(f.fails for f in self.findings)


def read_register(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The entries as written (lines that are not JSON objects are left out; check_register names them)."""
    path = Path(folder) / REGISTER
    if not path.is_file():
        return []
    out = []
    for raw in path.read_bytes().split(b"\n"):
        try:
            entry = json.loads(raw) if raw.strip() else None
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def check_register(folder: str | os.PathLike[str], trusted: TrustedKey | None) -> RegisterCheck:
    """The chain, every entry's signature, and every registered folder against its manifest."""
    from drillkit.evidence.manifest import verify_manifest

    folder = Path(folder)
    path = folder / REGISTER
    if not path.is_file():
        raise EvidenceError(f"{folder}: no {REGISTER} here")
    result = RegisterCheck(folder)
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    prev: bytes | None = None
    ended: set[str] = set()
    started: dict[str, dict[str, Any]] = {}
    for i, raw in enumerate(lines):
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError:
            result.findings.append(Finding(i, "broken", f"line {i + 1} is not a JSON object"))
            prev = raw
            continue
        result.entries.append(entry)
        seq = entry.get("seq")
        expect_prev = hashlib.sha256(prev).hexdigest() if prev is not None else None
        if entry.get("format") != FORMAT or entry.get("event") not in EVENTS:
            result.findings.append(Finding(seq, "broken", f"line {i + 1}: not a {FORMAT} entry"))
        elif seq != i or entry.get("prev") != expect_prev:
            result.findings.append(Finding(seq if isinstance(seq, int) else i, "broken",
                                           f"line {i + 1} does not follow line {i} (seq {seq!r}, expected {i}; prev "
                                           f"{'matches' if entry.get('prev') == expect_prev else 'differs'}): an entry "
                                           "before it was removed, reordered or edited"))
        elif canonical_json(entry) != raw:
            result.findings.append(Finding(seq, "broken", f"line {i + 1} is not written canonically: edited"))
        state = check(entry, canonical(entry), trusted)
        if state == "invalid":
            result.findings.append(Finding(seq, "bad-sig", f"the signature does not match ({entry.get('drill')})"))
        elif state == "stripped":
            result.findings.append(Finding(seq, "stripped", f"no valid signature ({entry.get('drill')})"))
        elif state == "unchecked":
            result.unchecked = True
        prev = raw
        run, name = str(entry.get("run_id")), entry.get("drill")
        if entry.get("event") == STARTED:
            started[run] = entry
        elif entry.get("event") in (SEALED, DISCARDED):
            ended.add(run)
        if entry.get("event") == SEALED and isinstance(name, str):
            _check_sealed(result, folder, entry, verify_manifest, trusted)
    result.head = hashlib.sha256(prev).hexdigest() if prev is not None else None
    for run, entry in started.items():
        if run not in ended:
            name, i = str(entry.get("drill")), entry.get("seq")
            if (folder / name).is_dir():
                result.findings.append(Finding(i, "unsealed", f"{name}: started, never sealed (killed, or still "
                                                              "running)"))
            else:  # a killed drill keeps its folder; one that never started says so (discarded)
                result.findings.append(Finding(i, "missing", f"{name}: started, never sealed, and the folder is "
                                                             "gone (or its later entries were cut off)"))
    sealed_names = {e.get("drill") for e in result.entries if e.get("event") == SEALED}
    first_utc = str(result.entries[0].get("utc") or "") if result.entries else ""
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (sub / ev.MANIFEST).is_file() and sub.name not in sealed_names:
            result.findings.append(_unregistered(sub, first_utc))
    return result


def _unregistered(sub: Path, first_utc: str) -> Finding:
    """A sealed folder no entry names: sealed before the register began (its manifest says so, and
    a signed manifest cannot be back-dated), or one that should be there and is not."""
    try:
        created = str(json.loads((sub / ev.MANIFEST).read_text(encoding="utf-8")).get("created_utc") or "")
    except (OSError, ValueError, AttributeError):
        created = ""
    if created and first_utc and created < first_utc:
        return Finding(None, "predates", f"{sub.name}: sealed {created}, before the register's first entry")
    return Finding(None, "unregistered", f"{sub.name}: a sealed folder with no entry")


def _check_sealed(result: RegisterCheck, folder: Path, entry: dict[str, Any], verify_manifest: Any,
                  trusted: TrustedKey | None) -> None:
    name, seq = entry["drill"], entry.get("seq")
    drill = folder / name
    if "/" in name or name in ("", ".", "..") or not drill.is_dir():
        result.findings.append(Finding(seq, "missing", f"{name}: the folder is gone"))
        return
    try:
        digest = hashlib.sha256((drill / ev.MANIFEST).read_bytes()).hexdigest()
    except OSError:
        result.findings.append(Finding(seq, "altered", f"{name}: its {ev.MANIFEST} is gone"))
        return
    if digest != entry.get("manifest_sha256"):
        result.findings.append(Finding(seq, "altered", f"{name}: its {ev.MANIFEST} is not the one registered"))
        return
    verified = verify_manifest(drill, trusted)
    if not verified.ok:
        result.findings.append(Finding(seq, "altered", f"{name}: {verified.counts()}"))


def check_copied_entries(folder: Path, copied: Path, trusted: TrustedKey | None) -> list[Finding]:
    """The register entries `drillkit pack` copied beside a folder: each one's signature, and the
    sealed one's manifest hash against the folder's manifest.json (the chain itself is checked
    only on the whole register)."""
    findings = []
    digest = hashlib.sha256((folder / ev.MANIFEST).read_bytes()).hexdigest()
    sealed = False
    for raw in copied.read_bytes().splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            findings.append(Finding(None, "broken", f"{copied.name}: a line is not JSON"))
            continue
        seq = entry.get("seq") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or canonical_json(entry) != raw:
            findings.append(Finding(seq, "broken", f"{copied.name}: an entry is not written canonically: edited"))
            continue
        state = check(entry, canonical(entry), trusted)
        if state in ("invalid", "stripped"):
            findings.append(Finding(seq, "bad-sig" if state == "invalid" else "stripped",
                                    f"{copied.name}: the entry's signature does not hold"))
        if entry.get("event") == SEALED:
            sealed = True
            if entry.get("manifest_sha256") != digest:
                findings.append(Finding(seq, "altered", f"{folder.name}: its {ev.MANIFEST} is not the one registered"))
    if not sealed:
        findings.append(Finding(None, "unsealed", f"{copied.name}: no sealed entry for {folder.name}"))
    return findings
