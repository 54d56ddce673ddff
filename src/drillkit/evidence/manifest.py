"""manifest.json: the SHA-256 of every file of an evidence folder, optionally signed, so that an
auditor can tell months later whether the folder is the one the drill wrote.

Signature (drillkit.evidence.signing): Ed25519 or HMAC-SHA256 over the canonical JSON (keys
sorted, separators ``,`` and ``:``, UTF-8) of the manifest without its ``signature`` member, so the
file list, the creation time, the algorithms and the signer's public key are all covered. The key
comes from ``DRILLKIT_SIGNING_KEY_FILE`` (an Ed25519 private key from ``drillkit keys new``, or a
shared secret), ``DRILLKIT_SIGNING_KEY`` (a shared secret) or a ``--key-file``. Without a key the
manifest is written unsigned and says so: it then detects accidental change only, since anyone can
rewrite the hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import drillkit
from drillkit import evidence as ev
from drillkit.durations import utc_text
from drillkit.errors import EvidenceError, InputError
from drillkit.evidence.signing import (KEY_ENV, KEY_FILE_ENV, Signer, TrustedKey, canonical, check, signer_from,
                                       trusted_key)

FORMAT = "drillkit-manifest/1"
HASH = "sha256"
CANONICAL = "JSON of this object without 'signature': keys sorted, separators ',' ':', UTF-8"

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
    algorithm: str | None = None
    signer: str | None = None
    """The Ed25519 public key's fingerprint the manifest names (None for HMAC or unsigned)."""
    signature: str = "unsigned"
    """drillkit.evidence.signing.check's answer: valid · invalid · unsigned · stripped · unchecked
    (signed, but no trusted key was given; `drillkit verify` exits 4)"""

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
            by = f" (it names {self.signer})" if self.signer else ""
            out.append(f"{'bad-sig':<8} {ev.MANIFEST}: the signature does not match: another key signed{by}, "
                       "or the manifest or its signature was edited")
        elif self.signature == "stripped":
            out.append(f"{'stripped':<8} {ev.MANIFEST}: no valid signature (the manifest claims one, "
                       "or a key was given), but none or a malformed one is there")
        return out

    def status(self) -> str:
        by = f", {self.signer}" if self.signer else ""
        sig = {"valid": f"signature valid ({self.algorithm}{by})",
               "unsigned": "unsigned: hashes only, no signature to check",
               "unchecked": f"signed ({self.algorithm}{by}), but NOT checked against a key you trust: give "
                            f"--public-key (Ed25519) or --key-file, {KEY_ENV} or {KEY_FILE_ENV}"}.get(self.signature, "")
        return f"OK  {self.files} files match {ev.MANIFEST}; {sig}"


def signing_key(key_file: str | os.PathLike[str] | None = None) -> Signer | None:
    """The configured signing key: `key_file`, else the environment, else None (write unsigned)."""
    return signer_from(key_file)


def _signer(key: Any) -> Signer | None:
    if key is CONFIGURED:
        return signer_from()
    return key


def _trusted(key: Any) -> TrustedKey | None:
    if key is CONFIGURED:
        return trusted_key()
    if isinstance(key, Signer):
        return TrustedKey(key.algorithm, raw_public=key.raw_public, secret=key.secret)
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


def write_manifest(folder: str | os.PathLike[str], key: Any = CONFIGURED) -> Path:
    """Hash every file of the folder into manifest.json, signed when a key is configured.
    The last thing a drill writes: anything written after it shows up as altered or extra."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvidenceError(f"{folder}: not a folder")
    signer = _signer(key)
    files = [{"path": rel, HASH: _sha256(p), "size": p.stat().st_size}
             for rel, p in _evidence_files(folder).items()]
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "drillkit": drillkit.__version__,
        "created_utc": utc_text(),
        "algorithm": HASH,
        "signed": signer is not None,
        **(signer.stamp() if signer else {"signature_algorithm": None, "key_id": None}),
        "canonical": CANONICAL,
        "files": files,
    }
    manifest["signature"] = signer.sign(canonical(manifest)) if signer else None
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
    return _compare(folder, manifest, _trusted(key))


def _compare(folder: Path, manifest: dict[str, Any], key: TrustedKey | None) -> VerifyResult:
    """The folder's files and the manifest's signature against a manifest already read."""
    recorded = {f["path"]: f[HASH] for f in manifest["files"]}
    actual = _evidence_files(folder)
    result = VerifyResult(folder, len(recorded), manifest.get("created_utc"))
    result.missing = sorted(set(recorded) - set(actual))
    result.extra = sorted(set(actual) - set(recorded))
    result.altered = sorted(rel for rel in set(recorded) & set(actual)
                            if not hmac.compare_digest(_sha256(actual[rel]), recorded[rel]))
    result.signature = check(manifest, canonical(manifest), key)
    result.algorithm = manifest.get("signature_algorithm")
    result.signer = manifest.get("signer")
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
    key = signer_from(key_file) if manifest.get("signature") else None
    if manifest.get("signature") and not key:
        raise InputError(f"{ev.MANIFEST} is signed: give its key (--key-file, {KEY_ENV} or "
                         f"{KEY_FILE_ENV}) so the folder can be signed again after re-rendering",
                         file=str(folder))
    result = _compare(folder, manifest, _trusted(key))
    if not result.ok:
        raise ManifestMismatch(result)
    out = change()
    write_manifest(folder, key)
    return out
