"""manifest.json: the SHA-256 of every file of an evidence folder, optionally signed, so that an
auditor can tell months later whether the folder is the one the drill wrote.

Signature: HMAC-SHA256 over the canonical JSON (keys sorted, separators ``,`` and ``:``, UTF-8)
of the manifest without its ``signature`` member, so the file list, the creation time and the
algorithms are all covered. The key comes from ``DRILLKIT_SIGNING_KEY`` (the key itself),
``DRILLKIT_SIGNING_KEY_FILE`` or a ``--key-file``. Without a key the manifest is written unsigned
and says so: it then detects accidental change only, since anyone can rewrite the hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, TypeVar

import drillkit
from drillkit import evidence as ev
from drillkit.errors import EvidenceError, InputError

FORMAT = "drillkit-manifest/1"
HASH = "sha256"
SIGNATURE = "hmac-sha256"
CANONICAL = "JSON of this object without 'signature': keys sorted, separators ',' ':', UTF-8"
KEY_ENV = "DRILLKIT_SIGNING_KEY"
KEY_FILE_ENV = "DRILLKIT_SIGNING_KEY_FILE"

T = TypeVar("T")


class _Configured:
    """Default of `key`: whatever the environment configures (possibly nothing)."""

    def __repr__(self) -> str:
        return "CONFIGURED"


CONFIGURED: Any = _Configured()


class ManifestMismatch(EvidenceError):
    """The folder no longer matches its manifest (exit 1, not a usage error)."""

    def __init__(self, result: VerifyResult):
        self.result = result
        super().__init__(f"{result.folder}: evidence does not match {ev.MANIFEST} ({result.counts()})")


@dataclass
class VerifyResult:
    folder: Path
    files: int
    created_utc: str | None
    altered: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    signature: str = "unsigned"
    """valid · invalid · unsigned · stripped (the manifest claims a signature and carries none or a
    malformed one, or a key was given and it carries none) · unchecked (signed, but no key was
    given: hashes only; `drillkit verify` exits 4)"""

    @property
    def ok(self) -> bool:
        return not (self.altered or self.missing or self.extra) and self.signature in (
            "valid", "unsigned", "unchecked")

    def counts(self) -> str:
        parts = [f"{len(v)} {k}" for k, v in
                 (("altered", self.altered), ("missing", self.missing), ("extra", self.extra)) if v]
        if self.signature in ("invalid", "stripped"):
            parts.append(f"signature {self.signature}")
        return ", ".join(parts) or "intact"

    def lines(self) -> list[str]:
        """One line per finding, file names last so that `cut`/`awk` can take them."""
        out = [f"{kind:<8} {name}" for kind, names in
               (("altered", self.altered), ("missing", self.missing), ("extra", self.extra))
               for name in names]
        if self.signature == "invalid":
            out.append(f"{'bad-sig':<8} {ev.MANIFEST}: the signature does not match (wrong key, "
                       "or the manifest was edited)")
        elif self.signature == "stripped":
            out.append(f"{'stripped':<8} {ev.MANIFEST}: no valid signature (the manifest claims one, "
                       "or a key was given), but none or a malformed one is there")
        return out

    def status(self) -> str:
        sig = {"valid": f"signature valid ({SIGNATURE})",
               "unsigned": "unsigned: hashes only, no signature to check",
               "unchecked": "signed, but signature NOT checked: no key given "
                            f"(--key-file, {KEY_ENV} or {KEY_FILE_ENV})"}.get(self.signature, "")
        return f"OK  {self.files} files match {ev.MANIFEST}; {sig}"


def signing_key(key_file: str | os.PathLike[str] | None = None) -> bytes | None:
    """The configured key: `key_file`, else the environment, else None (write unsigned)."""
    if key_file is None and os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV].encode()
    path = key_file if key_file is not None else os.environ.get(KEY_FILE_ENV)
    if not path:
        return None
    field_name = "--key-file" if key_file is not None else KEY_FILE_ENV
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise InputError(f"cannot read the signing key ({exc.strerror or exc})", file=str(path),
                         field=field_name) from exc
    if not key:
        raise InputError("the signing key file is empty", file=str(path), field=field_name)
    return key


def _resolve(key: Any) -> bytes | None:
    if key is CONFIGURED:
        return signing_key()
    if isinstance(key, str):
        return key.encode()
    return key


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, HASH).hexdigest()


def _evidence_files(folder: Path) -> dict[str, Path]:
    """Every file under `folder` by relative posix path, the manifest itself excepted.
    Walks the tree (never follows the manifest's paths), so a crafted path cannot escape it."""
    out = {}
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in names:
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            if rel != ev.MANIFEST and path.is_file():
                out[rel] = path
    return dict(sorted(out.items()))


def canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _sign(key: bytes, manifest: dict[str, Any]) -> str:
    return hmac.new(key, canonical(manifest), hashlib.sha256).hexdigest()


def _key_id(key: bytes) -> str:
    """Tells which key signed, so a wrong key can be told from an edited manifest."""
    return hashlib.sha256(b"drillkit-key-id\0" + key).hexdigest()[:16]


def write_manifest(folder: str | os.PathLike[str], key: Any = CONFIGURED) -> Path:
    """Hash every file of the folder into manifest.json, signed when a key is configured.
    The last thing a drill writes: anything written after it shows up as altered or extra."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvidenceError(f"{folder}: not a folder")
    key = _resolve(key)
    files = [{"path": rel, HASH: _sha256(p), "size": p.stat().st_size}
             for rel, p in _evidence_files(folder).items()]
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "drillkit": drillkit.__version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "algorithm": HASH,
        "signature_algorithm": SIGNATURE if key else None,
        "signed": bool(key),
        "key_id": _key_id(key) if key else None,
        "canonical": CANONICAL,
        "files": files,
    }
    manifest["signature"] = _sign(key, manifest) if key else None
    return ev.write_atomic(folder / ev.MANIFEST, json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest, checked for shape. A missing one is EvidenceError (not a sealed drill);
    an unreadable one is a mismatch: someone changed the manifest itself."""
    folder = Path(folder)
    path = folder / ev.MANIFEST
    if not folder.is_dir():
        raise EvidenceError(f"{folder}: no such folder")
    if not path.is_file():
        raise EvidenceError(f"{folder}: no {ev.MANIFEST}; not a sealed drill evidence folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = data["files"]
        if data.get("algorithm") != HASH or not all(
                isinstance(f["path"], str) and isinstance(f[HASH], str) for f in files):
            raise ValueError(f"unknown algorithm {data.get('algorithm')!r} or malformed file list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        result = VerifyResult(folder, 0, None, altered=[ev.MANIFEST])
        raise ManifestMismatch(result) from exc
    return data


def verify_manifest(folder: str | os.PathLike[str], key: Any = CONFIGURED) -> VerifyResult:
    """Compare the folder with its manifest. `key` defaults to the configured one; pass None to
    check hashes only. Raises EvidenceError when there is no manifest at all."""
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except ManifestMismatch as exc:
        return exc.result
    return _compare(folder, manifest, _resolve(key))


_SIGNATURE_SHAPE = re.compile(r"[0-9a-f]{64}")
"""A hex HMAC-SHA256, as write_manifest writes it."""


def _compare(folder: Path, manifest: dict[str, Any], key: bytes | None) -> VerifyResult:
    """The folder's files and the manifest's signature against a manifest already read."""
    recorded = {f["path"]: f[HASH] for f in manifest["files"]}
    actual = _evidence_files(folder)
    result = VerifyResult(folder, len(recorded), manifest.get("created_utc"))
    result.missing = sorted(set(recorded) - set(actual))
    result.extra = sorted(set(actual) - set(recorded))
    result.altered = sorted(rel for rel in set(recorded) & set(actual)
                            if not hmac.compare_digest(_sha256(actual[rel]), recorded[rel]))
    signature = manifest.get("signature")
    claimed = manifest.get("signed") is True or bool(manifest.get("signature_algorithm") or manifest.get("key_id"))
    if signature in (None, "") and not claimed:
        result.signature = "stripped" if key else "unsigned"
    elif not (isinstance(signature, str) and _SIGNATURE_SHAPE.fullmatch(signature)):
        result.signature = "stripped"  # claims a signature, has none or a malformed one: with or without a key
    elif not key:
        result.signature = "unchecked"
    else:
        good = isinstance(signature, str) and hmac.compare_digest(_sign(key, manifest), signature)
        result.signature = "valid" if good else "invalid"
    return result


def refresh_manifest(folder: str | os.PathLike[str], change: Callable[[], T],
                     key_file: str | os.PathLike[str] | None = None) -> T:
    """Run `change` (a re-render) and re-seal the folder, but only if it was intact before:
    a tampered folder must never get a fresh, valid manifest. Without a manifest, just run it.
    A signed manifest needs its key to be re-signed; an unsigned one stays unsigned."""
    folder = Path(folder)
    if not (folder / ev.MANIFEST).is_file():
        return change()
    manifest = read_manifest(folder)
    key = signing_key(key_file) if manifest.get("signature") else None
    if manifest.get("signature") and not key:
        raise InputError(f"{ev.MANIFEST} is signed: give its key (--key-file, {KEY_ENV} or "
                         f"{KEY_FILE_ENV}) so the folder can be signed again after re-rendering",
                         file=str(folder))
    result = _compare(folder, manifest, key)
    if not result.ok:
        raise ManifestMismatch(result)
    out = change()
    write_manifest(folder, key)
    return out
