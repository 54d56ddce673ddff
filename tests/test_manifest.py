"""manifest.json and `drillkit verify`: any change to any evidence file is caught and named."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
from pathlib import Path

import pytest

from drillkit.errors import EvidenceError, InputError
from drillkit.evidence.manifest import (
    KEY_ENV,
    KEY_FILE_ENV,
    read_manifest,
    signing_key,
    verify_manifest,
    write_manifest,
)
from drillkit.evidence.signing import HMAC_SHA256, Signer
from drillkit.report import render_report

from support.sample_evidence import make_drill

SECRET = b"auditor-shared-secret-0123456789"
KEY = Signer(HMAC_SHA256, secret=SECRET)


@pytest.fixture(autouse=True)
def no_configured_key(monkeypatch):
    """The developer's own key must not decide what these tests see (subprocesses included)."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    folder = make_drill(tmp_path_factory.mktemp("ev") / "drill", n_ops=3000)
    render_report(folder)
    (folder / "junit.xml").write_text("<testsuite/>\n")
    return folder


@pytest.fixture
def drill(pristine, tmp_path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "drill"))


@pytest.fixture
def key_file(tmp_path) -> Path:
    path = tmp_path / "signing.key"
    path.write_bytes(SECRET + b"\n")
    return path


def evidence_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != "manifest.json")


def test_manifest_lists_every_file_with_its_sha256(drill):
    write_manifest(drill, key=None)
    m = read_manifest(drill)
    paths = [f["path"] for f in m["files"]]
    assert paths == evidence_files(drill) and len(paths) >= 10
    assert "requests/worker-0.jsonl" in paths and "report.html" in paths
    for f in m["files"]:
        data = (drill / f["path"]).read_bytes()
        assert f["sha256"] == hashlib.sha256(data).hexdigest() and f["size"] == len(data)
    assert m["algorithm"] == "sha256" and m["drillkit"] and m["created_utc"].endswith("Z")
    assert m["signed"] is False and m["signature"] is None and m["signature_algorithm"] is None


def test_untouched_folder_verifies(drill):
    write_manifest(drill, key=KEY)
    result = verify_manifest(drill, KEY)
    assert result.ok and result.signature == "valid"
    assert (result.altered, result.missing, result.extra) == ([], [], [])
    assert result.status().startswith(f"OK  {len(evidence_files(drill))} files match manifest.json")


@pytest.mark.parametrize("key", [KEY, None], ids=["signed", "unsigned"])
def test_changing_any_byte_of_each_file_names_that_file(drill, key):
    write_manifest(drill, key=key)
    files = evidence_files(drill)
    for rel in files:
        path = drill / rel
        original = path.read_bytes()
        for pos in sorted({0, len(original) // 2, len(original) - 1}):
            changed = bytearray(original)
            changed[pos] ^= 0x01
            path.write_bytes(bytes(changed))
            result = verify_manifest(drill, key)
            assert not result.ok, f"{rel} byte {pos} changed, yet the folder verified"
            assert result.altered == [rel] and not result.missing and not result.extra
            assert f"altered  {rel}" in result.lines()
        path.write_bytes(original + b"\n")
        assert verify_manifest(drill, key).altered == [rel]
        path.write_bytes(original)
    assert verify_manifest(drill, key).ok


def test_deleted_and_extra_files_are_named(drill):
    write_manifest(drill, key=KEY)
    (drill / "lag.csv").unlink()
    (drill / "requests" / "worker-1.jsonl").unlink()
    (drill / "notes.txt").write_text("added later")
    (drill / "requests" / "worker-9.jsonl").write_text("{}\n")
    result = verify_manifest(drill, KEY)
    assert not result.ok and result.signature == "valid"
    assert result.missing == ["lag.csv", "requests/worker-1.jsonl"]
    assert result.extra == ["notes.txt", "requests/worker-9.jsonl"]
    assert result.altered == []
    assert result.counts() == "2 missing, 2 extra"


def test_wrong_key_is_a_bad_signature(drill):
    write_manifest(drill, key=KEY)
    result = verify_manifest(drill, Signer(HMAC_SHA256, secret=b"some other key"))
    assert not result.ok and result.signature == "invalid" and result.altered == []
    assert any(line.startswith("bad-sig") for line in result.lines())


def test_rehashing_an_edited_file_without_the_key_breaks_the_signature(drill):
    """What an unsigned manifest cannot catch and a signed one does."""
    write_manifest(drill, key=KEY)
    summary = json.loads((drill / "summary.json").read_text())
    summary["measures"]["writes_lost"] = 0
    summary["measures"]["rto_s"] = 0.5
    (drill / "summary.json").write_text(json.dumps(summary))
    assert verify_manifest(drill, KEY).altered == ["summary.json"]
    m = json.loads((drill / "manifest.json").read_text())
    for f in m["files"]:
        if f["path"] == "summary.json":
            f["sha256"] = hashlib.sha256((drill / "summary.json").read_bytes()).hexdigest()
    (drill / "manifest.json").write_text(json.dumps(m))
    result = verify_manifest(drill, KEY)
    assert result.altered == [] and result.signature == "invalid" and not result.ok
    m.update(signed=False, signature=None, signature_algorithm=None, key_id=None)
    (drill / "manifest.json").write_text(json.dumps(m))
    assert verify_manifest(drill, KEY).signature == "stripped"
    assert not verify_manifest(drill, KEY).ok
    assert verify_manifest(drill, None).ok, "unsigned: only accidental change is detectable"


def test_signature_covers_the_metadata_too(drill):
    write_manifest(drill, key=KEY)
    m = json.loads((drill / "manifest.json").read_text())
    m["created_utc"] = "2020-01-01T00:00:00.000Z"
    (drill / "manifest.json").write_text(json.dumps(m))
    assert verify_manifest(drill, KEY).signature == "invalid"


def test_an_auditor_can_recompute_the_signature_by_hand(drill):
    write_manifest(drill, key=KEY)
    m = json.loads((drill / "manifest.json").read_text())
    body = {k: v for k, v in m.items() if k != "signature"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert hmac.new(SECRET, canonical, hashlib.sha256).hexdigest() == m["signature"]


def test_signed_manifest_without_a_key_checks_hashes_only(drill):
    write_manifest(drill, key=KEY)
    result = verify_manifest(drill, None)
    assert result.ok and result.signature == "unchecked" and "NOT checked" in result.status()


def test_unreadable_manifest_is_a_mismatch_naming_it(drill):
    write_manifest(drill, key=None)
    (drill / "manifest.json").write_text("{ not json")
    result = verify_manifest(drill, None)
    assert not result.ok and result.altered == ["manifest.json"]


def test_folder_without_manifest_is_one_clear_error(drill, tmp_path):
    with pytest.raises(EvidenceError, match=r"no manifest\.json; not a sealed drill") as info:
        verify_manifest(drill)
    assert "\n" not in str(info.value)
    with pytest.raises(EvidenceError, match="no such folder"):
        verify_manifest(tmp_path / "absent")


def test_key_comes_from_env_or_key_file(drill, key_file, monkeypatch, tmp_path):
    assert signing_key() is None
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    assert signing_key().secret == SECRET, "a trailing newline in a key file is not part of the key"
    write_manifest(drill)
    assert read_manifest(drill)["signed"] is True and verify_manifest(drill).signature == "valid"
    monkeypatch.setenv(KEY_ENV, "from-env")
    assert signing_key().secret == b"from-env" and signing_key(key_file).secret == SECRET
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "nope.key"))
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(InputError, match=r"nope\.key: DRILLKIT_SIGNING_KEY_FILE: cannot read"):
        signing_key()
    (tmp_path / "empty.key").write_text("\n")
    with pytest.raises(InputError, match=r"--key-file: the key file is empty"):
        signing_key(tmp_path / "empty.key")


def test_cli_verify_exit_codes(drill, key_file, drillkit_cli, tmp_path):
    write_manifest(drill, key=KEY)
    ok = drillkit_cli("verify", str(drill), "--key-file", str(key_file))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK  ") and "signature valid" in ok.stdout
    unchecked = drillkit_cli("verify", str(drill))
    assert unchecked.returncode == 4 and "NOT checked" in unchecked.stdout

    (tmp_path / "other.key").write_text("wrong")
    bad = drillkit_cli("verify", str(drill), "--key-file", str(tmp_path / "other.key"))
    assert bad.returncode == 1 and bad.stdout.startswith("bad-sig  manifest.json")

    (drill / "events.jsonl").write_bytes((drill / "events.jsonl").read_bytes().replace(b"a", b"b", 1))
    (drill / "lag.csv").unlink()
    (drill / "extra.bin").write_bytes(b"\0")
    altered = drillkit_cli("verify", str(drill), "--key-file", str(key_file))
    assert altered.returncode == 1
    assert altered.stdout.splitlines() == ["altered  events.jsonl", "missing  lag.csv", "extra    extra.bin"]
    assert altered.stderr.strip().endswith("(1 altered, 1 missing, 1 extra)")
    assert "Traceback" not in altered.stderr

    for args in (["verify", str(tmp_path)], ["verify", str(tmp_path / "absent")],
                 ["verify", str(drill), "--key-file", str(tmp_path / "absent.key")]):
        r = drillkit_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("drillkit: ")


def test_cli_report_reseals_an_intact_folder_and_refuses_a_tampered_one(drill, drillkit_cli):
    write_manifest(drill, key=None)
    before = read_manifest(drill)
    r = drillkit_cli("report", str(drill))
    assert r.returncode == 0, r.stderr
    assert "Warning" not in r.stdout + r.stderr and "Traceback" not in r.stdout + r.stderr
    after = read_manifest(drill)
    assert after["created_utc"] >= before["created_utc"] and after["signed"] is False
    assert verify_manifest(drill, None).ok, "re-rendering must not break verification"

    report = (drill / "report.html").read_bytes()
    (drill / "journal.json").write_text("{}")
    r = drillkit_cli("report", str(drill))
    assert r.returncode == 1
    assert r.stdout.splitlines() == ["altered  journal.json"]
    assert "not re-rendered" in r.stderr
    assert (drill / "report.html").read_bytes() == report
    assert verify_manifest(drill, None).altered == ["journal.json"], "a tampered folder stays flagged"


def test_cli_report_resigns_only_with_the_key(drill, key_file, drillkit_cli):
    write_manifest(drill, key=KEY)
    r = drillkit_cli("report", str(drill))
    assert r.returncode == 2 and "manifest.json is signed: give its key" in r.stderr
    assert verify_manifest(drill, KEY).ok
    r = drillkit_cli("report", str(drill), "--key-file", str(key_file))
    assert r.returncode == 0, r.stderr
    result = verify_manifest(drill, KEY)
    assert result.ok and result.signature == "valid"


def test_cli_report_without_manifest_still_just_renders(drill, drillkit_cli):
    r = drillkit_cli("report", str(drill))
    assert r.returncode == 0, r.stderr
    assert not (drill / "manifest.json").exists()
