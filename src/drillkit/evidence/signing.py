"""Who signed the evidence, and how anyone checks it.

Two kinds of key sign a manifest (drillkit.evidence.manifest) and the register's entries
(drillkit.evidence.register):

- **Ed25519** (`drillkit keys new`): the private key, a PKCS#8 PEM file, signs; the public key,
  a SubjectPublicKeyInfo PEM file, verifies. Whoever verifies cannot forge: hand an auditor the
  `.pub` file only. The signature is hex of the 64-byte Ed25519 signature; the signed object
  carries the raw public key (`public_key`, hex) and its fingerprint, so a folder says which key
  signed it, and an altered signature fails even before anyone names a key they trust.
- **HMAC-SHA256**, a raw shared secret (`DRILLKIT_SIGNING_KEY`, or a key file that is not a PEM
  private key): kept so that folders signed before Ed25519 still verify. Whoever verifies can
  also forge.

The fingerprint of an Ed25519 key is `sha256:` and the hex SHA-256 of its 32 raw public bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from drillkit.errors import InputError

ED25519 = "ed25519"
HMAC_SHA256 = "hmac-sha256"
KEY_ENV = "DRILLKIT_SIGNING_KEY"
KEY_FILE_ENV = "DRILLKIT_SIGNING_KEY_FILE"
PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"
_PEM_PRIVATE = b"-----BEGIN PRIVATE KEY-----"
SIGNATURE_SHAPE = {HMAC_SHA256: re.compile(r"[0-9a-f]{64}"), ED25519: re.compile(r"[0-9a-f]{128}")}
"""What a well-formed signature of each algorithm looks like (hex)."""


def canonical_json(doc: dict) -> bytes:
    """`doc` as canonical JSON: keys sorted, no spaces, UTF-8. How a register line is written."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical(doc: dict) -> bytes:
    """The bytes a signature covers: `doc`'s canonical JSON without its `signature` member."""
    return canonical_json({k: v for k, v in doc.items() if k != "signature"})


def fingerprint(raw_public: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw_public).hexdigest()


def hmac_key_id(secret: bytes) -> str:
    """Tells which shared secret signed, so a wrong key can be told from an edited manifest."""
    return hashlib.sha256(b"drillkit-key-id\0" + secret).hexdigest()[:16]


@dataclass(frozen=True)
class Signer:
    """A configured signing key: `sign(data)` gives the hex signature; `stamp()` the fields a
    signed object carries beside it (algorithm, key id, and for Ed25519 the public key and its
    fingerprint)."""

    algorithm: str
    secret: bytes | None = None
    """HMAC: the shared secret."""
    private: object | None = None
    """Ed25519: a cryptography Ed25519PrivateKey."""

    @property
    def raw_public(self) -> bytes | None:
        if self.private is None:
            return None
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)  # type: ignore[attr-defined]

    @property
    def fingerprint(self) -> str | None:
        raw = self.raw_public
        return None if raw is None else fingerprint(raw)

    @property
    def key_id(self) -> str:
        fp = self.fingerprint
        return fp[len("sha256:"):][:16] if fp else hmac_key_id(self.secret or b"")

    def stamp(self) -> dict[str, str | None]:
        raw = self.raw_public
        return {"signature_algorithm": self.algorithm, "key_id": self.key_id,
                "public_key": raw.hex() if raw else None, "signer": self.fingerprint}

    def sign(self, data: bytes) -> str:
        if self.private is not None:
            return self.private.sign(data).hex()  # type: ignore[attr-defined]
        return hmac.new(self.secret or b"", data, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class TrustedKey:
    """What a verifier trusts: an Ed25519 public key (an auditor's), or a shared HMAC secret."""

    algorithm: str
    raw_public: bytes | None = None
    secret: bytes | None = None

    @property
    def fingerprint(self) -> str | None:
        return None if self.raw_public is None else fingerprint(self.raw_public)


def _read(path: str | os.PathLike[str], field: str) -> bytes:
    try:
        data = Path(path).read_bytes().strip()
    except OSError as exc:
        raise InputError(f"cannot read the key ({exc.strerror or exc})", file=str(path), field=field) from exc
    if not data:
        raise InputError("the key file is empty", file=str(path), field=field)
    return data


def _private_ed25519(data: bytes, path: str, field: str) -> object:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"not a readable unencrypted PEM private key ({exc})", file=path, field=field) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"a {type(key).__name__.removeprefix('_')} key: drillkit signs with Ed25519 keys only "
                         "(drillkit keys new)", file=path, field=field)
    return key


def signer_from(key_file: str | os.PathLike[str] | None = None) -> Signer | None:
    """The configured signing key: `key_file`, else `$DRILLKIT_SIGNING_KEY` (a shared secret),
    else `$DRILLKIT_SIGNING_KEY_FILE`; None when nothing is configured (written unsigned). A key
    file holding a PEM private key is an Ed25519 key; anything else is an HMAC secret."""
    if key_file is None and os.environ.get(KEY_ENV):
        return Signer(HMAC_SHA256, secret=os.environ[KEY_ENV].encode())
    path = key_file if key_file is not None else os.environ.get(KEY_FILE_ENV)
    if not path:
        return None
    field = "--key-file" if key_file is not None else KEY_FILE_ENV
    data = _read(path, field)
    if data.startswith(_PEM_PRIVATE):
        return Signer(ED25519, private=_private_ed25519(data, str(path), field))
    return Signer(HMAC_SHA256, secret=data)


def trusted_key(public_key: str | os.PathLike[str] | None = None,
                key_file: str | os.PathLike[str] | None = None) -> TrustedKey | None:
    """The key a verifier trusts: `--public-key` (an Ed25519 public key PEM), else the signing key
    configured as for signing (`--key-file` or the environment; an Ed25519 private key stands for
    its public half); None when none is given."""
    if public_key is not None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

        data = _read(public_key, "--public-key")
        try:
            key = load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise InputError(f"not a PEM public key ({exc})", file=str(public_key), field="--public-key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise InputError("not an Ed25519 public key (drillkit keys new writes one)", file=str(public_key),
                             field="--public-key")
        return TrustedKey(ED25519, raw_public=key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    signer = signer_from(key_file)
    if signer is None:
        return None
    if signer.algorithm == ED25519:
        return TrustedKey(ED25519, raw_public=signer.raw_public)
    return TrustedKey(HMAC_SHA256, secret=signer.secret)


def check(signed: dict, data: bytes, trusted: TrustedKey | None) -> str:
    """The state of `signed`'s signature over `data` (its canonical bytes):

    - `stripped`: it claims a signature (`signed`, an algorithm or a key id) and carries none or a
      malformed one; or a key was given and there is none;
    - `unsigned`: no signature, none claimed, no key given;
    - `invalid`: the signature does not match (edited, or an Ed25519 signature that does not match
      the public key the object carries), or a trusted key was given and another key signed;
    - `unchecked`: well formed, and no trusted key was given (Ed25519: it matches the public key
      the object carries, which anyone could have put there);
    - `valid`: made by the trusted key."""
    signature = signed.get("signature")
    algorithm = signed.get("signature_algorithm")
    claimed = signed.get("signed") is True or bool(algorithm or signed.get("key_id"))
    if signature in (None, "") and not claimed:
        return "stripped" if trusted else "unsigned"
    shape = SIGNATURE_SHAPE.get(algorithm or HMAC_SHA256)
    if not (isinstance(signature, str) and shape and shape.fullmatch(signature)):
        return "stripped"
    if algorithm == ED25519:
        carried = signed.get("public_key")
        try:
            raw = bytes.fromhex(carried) if isinstance(carried, str) else b""
        except ValueError:
            raw = b""
        if len(raw) != 32 or not _ed25519_ok(raw, signature, data):
            return "invalid"
        if trusted is None:
            return "unchecked"
        return "valid" if trusted.raw_public is not None and hmac.compare_digest(raw, trusted.raw_public) else "invalid"
    if trusted is None:
        return "unchecked"
    if trusted.secret is None:  # an Ed25519 key cannot check an HMAC signature
        return "invalid"
    good = hmac.new(trusted.secret, data, hashlib.sha256).hexdigest()
    return "valid" if hmac.compare_digest(good, signature) else "invalid"


def _ed25519_ok(raw_public: bytes, signature_hex: str, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(raw_public).verify(bytes.fromhex(signature_hex), data)
    except (InvalidSignature, ValueError):
        return False
    return True


def new_key_pair(folder: str | os.PathLike[str], name: str) -> tuple[Path, Path, str]:
    """Write `folder/name.key` (PKCS#8 PEM, mode 0600, never overwritten) and `folder/name.pub`
    (SubjectPublicKeyInfo PEM); return both paths and the fingerprint."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (Encoding, NoEncryption, PrivateFormat,
                                                              PublicFormat)

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise InputError("a key name is letters, digits, '.', '_' and '-' (at most 64)", field="--name")
    folder = Path(folder)
    private_path, public_path = folder / f"{name}{PRIVATE_SUFFIX}", folder / f"{name}{PUBLIC_SUFFIX}"
    for path in (private_path, public_path):
        if os.path.lexists(path):
            raise InputError("already exists: drillkit never overwrites a key", file=str(path))
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise InputError(f"cannot create the folder ({exc.strerror or exc})", file=str(folder)) from exc
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    pub = key.public_key()
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        fd = os.open(public_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pub.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    except OSError as exc:
        raise InputError(f"cannot write the key ({exc.strerror or exc})", file=str(folder)) from exc
    return private_path, public_path, fingerprint(pub.public_bytes(Encoding.Raw, PublicFormat.Raw))
