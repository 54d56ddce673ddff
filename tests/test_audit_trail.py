"""Evidence an auditor verifies without trusting the operator, on two real drills run at once in
one folder: Ed25519 signatures checked with the public key alone, the register's hash chain naming
a drill removed, reordered or altered, the archive round trip, and the formats re-checked by hand
with `cryptography` and `hashlib` only, as docs/evidence.md describes them.

The two drills run at the same time on one machine, so the same run shows that they do not
collide (ports, sandbox folders, evidence) and that the register takes two drills sealing at once.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from drillkit.evidence.manifest import write_manifest

from support.leftovers import Snapshot
from support.scenario_copy import ROOT

pytestmark = pytest.mark.drill  # the module's drills run once, in a module fixture (no no_leftovers: it checks itself)

SCENARIO = "scenarios/ground-truth-outage.yaml"


def clean_env() -> dict[str, str]:
    """The caller's environment, read when the command runs, without a signing key of the developer's."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DRILLKIT_SIGNING_KEY")}


def cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drillkit.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout, env={**clean_env(), **(env or {})})


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    for name in ("one", "two"):
        made = cli("keys", "new", str(folder), "--name", name)
        assert made.returncode == 0, made.stderr
        assert "fingerprint: sha256:" in made.stdout
    return folder


@pytest.fixture(scope="module")
def signed(tmp_path_factory, keys) -> Path:
    """Two drills at once into one folder, both signed with key one; nothing left behind."""
    before = Snapshot()
    root = tmp_path_factory.mktemp("reports")
    env = {**clean_env(), "DRILLKIT_SIGNING_KEY_FILE": str(keys / "one.key")}
    procs = [subprocess.Popen([sys.executable, "-m", "drillkit.cli", "run", SCENARIO, "--out", str(root / name),
                               "--var", "outage_seconds=0.5", "--quiet"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for name in ("first", "second")]
    try:
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for proc, (stdout, stderr) in zip(procs, results):
        assert proc.returncode == 0, f"{stdout}{stderr}"
        assert "Traceback" not in stderr
    leaks = before.leaks()
    assert not leaks, f"left behind: {leaks}"
    return root


@pytest.fixture
def copy(signed, tmp_path) -> Path:
    return Path(shutil.copytree(signed, tmp_path / "reports"))


def entries(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "register.jsonl").read_text().splitlines()]


def test_two_drills_at_once_both_pass(signed):
    outs = [signed / "first", signed / "second"]
    for out in outs:
        summary = json.loads((out / "summary.json").read_text())
        assert summary["verdict"] == "pass"
        assert summary["measures"]["writes_lost"] == 0 and summary["measures"]["records_unexpected"] == 0
    starts = [[json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()] for out in outs]
    reaped = [e for events in starts for e in events if e["kind"] == "sandbox.reaped"]
    assert not reaped, f"one drill reaped the other's live sandbox: {reaped}"
    keys = [{json.loads(line)["key"] for f in (out / "requests").glob("*.jsonl")
             for line in f.read_text().splitlines() if line} for out in outs]
    final = [{json.loads(line)["key"] for line in (out / "final_state.jsonl").read_text().splitlines() if line}
             for out in outs]
    assert final[0] and final[1]
    assert final[0] <= keys[0] and final[1] <= keys[1], "a drill's database holds the other drill's writes"


def test_a_drill_signed_with_key_one_verifies_only_with_key_ones_public_key(signed, keys):
    fingerprint = "sha256:" + hashlib.sha256(load_pem_public_key((keys / "one.pub").read_bytes()).public_bytes(
        Encoding.Raw, PublicFormat.Raw)).hexdigest()
    for name in ("first", "second"):
        good = cli("verify", str(signed / name), "--public-key", str(keys / "one.pub"))
        assert good.returncode == 0, good.stdout + good.stderr
        assert f"signature valid (ed25519, {fingerprint})" in good.stdout
        other = cli("verify", str(signed / name), "--public-key", str(keys / "two.pub"))
        assert other.returncode == 1 and "bad-sig" in other.stdout and fingerprint in other.stdout
        unchecked = cli("verify", str(signed / name))
        assert unchecked.returncode == 4 and "NOT checked" in unchecked.stdout
        manifest = json.loads((signed / name / "manifest.json").read_text())
        assert manifest["signer"] == fingerprint and manifest["signature_algorithm"] == "ed25519"
        report = (signed / name / "report.html").read_text()
        assert fingerprint in report, "the report names the key that signs the drill"


@pytest.mark.parametrize("damage", ["stripped", "altered", "forged"])
def test_a_stripped_altered_or_forged_signature_fails_with_and_without_a_key(copy, keys, damage):
    folder = copy / "first"
    manifest = json.loads((folder / "manifest.json").read_text())
    if damage == "stripped":
        manifest["signature"] = None
    elif damage == "altered":
        sig = manifest["signature"]
        manifest["signature"] = ("0" if sig[0] != "0" else "1") + sig[1:]
    else:  # a summary edited, its hash updated, the signature left: the canonical bytes changed
        (folder / "summary.json").write_text((folder / "summary.json").read_text().replace('"pass"', '"fail"', 1))
        entry = next(f for f in manifest["files"] if f["path"] == "summary.json")
        entry["sha256"] = hashlib.sha256((folder / "summary.json").read_bytes()).hexdigest()
        entry["size"] = (folder / "summary.json").stat().st_size
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    for args in ((), ("--public-key", str(keys / "one.pub"))):
        run = cli("verify", str(folder), *args)
        assert run.returncode == 1, (damage, args, run.stdout, run.stderr)


def test_the_register_chains_both_drills_and_verifies(signed, keys):
    got = entries(signed)
    assert [e["seq"] for e in got] == [0, 1, 2, 3]
    assert sorted(e["event"] for e in got) == ["sealed", "sealed", "started", "started"]
    assert {e["drill"] for e in got} == {"first", "second"}
    # a drill registers before it starts anything: both started entries come before either seal
    assert [e["event"] for e in got][:2] == ["started", "started"]
    for e in got:
        if e["event"] == "sealed":
            manifest = (signed / e["drill"] / "manifest.json").read_bytes()
            assert e["manifest_sha256"] == hashlib.sha256(manifest).hexdigest() and e["verdict"] == "pass"
    run = cli("verify", "--register", str(signed), "--public-key", str(keys / "one.pub"))
    assert run.returncode == 0, run.stdout + run.stderr
    head = hashlib.sha256((signed / "register.jsonl").read_bytes().splitlines()[-1]).hexdigest()
    assert f"head {head}" in run.stdout
    assert cli("verify", "--register", str(signed), "--public-key", str(keys / "two.pub")).returncode == 1


def test_a_deleted_drill_is_named_by_verify_and_shown_missing_by_history(copy, keys):
    shutil.rmtree(copy / "second")
    run = cli("verify", "--register", str(copy), "--public-key", str(keys / "one.pub"))
    assert run.returncode == 1
    assert any(line.startswith("missing") and "second" in line for line in run.stdout.splitlines()), run.stdout
    history = cli("history", str(copy))
    assert history.returncode == 0, history.stderr
    assert "MISSING (registered PASS)" in history.stdout and "second" in history.stdout
    assert "MISSING (registered PASS)" in (copy / "history.html").read_text()


@pytest.mark.parametrize("tamper", ["removed", "reordered", "edited"])
def test_an_entry_removed_reordered_or_edited_is_caught_and_named(copy, keys, tamper):
    path = copy / "register.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    if tamper == "removed":  # the first drill's seal, with its folder: a failure hidden
        sealed = next(i for i, line in enumerate(lines) if b'"event":"sealed"' in line)
        drill = json.loads(lines[sealed])["drill"]
        del lines[sealed]
        shutil.rmtree(copy / drill)
    elif tamper == "reordered":
        lines[1], lines[2] = lines[2], lines[1]
    else:  # a verdict rewritten in place
        lines[2] = lines[2].replace(b'"verdict":"pass"', b'"verdict":"fail"') if b'"verdict"' in lines[2] else \
            lines[2].replace(b'"event":"started"', b'"event":"sealed"')
    path.write_bytes(b"".join(lines))
    run = cli("verify", "--register", str(copy), "--public-key", str(keys / "one.pub"))
    assert run.returncode == 1, run.stdout
    findings = [line.split()[0] for line in run.stdout.splitlines()]
    assert {"broken", "bad-sig"} & set(findings), run.stdout


def test_pack_then_verify_round_trips_and_a_changed_byte_fails(copy, keys, tmp_path):
    packed = cli("pack", str(copy / "first"), "--out", str(tmp_path / "first.tar.gz"))
    assert packed.returncode == 0, packed.stderr
    archive = tmp_path / "first.tar.gz"
    run = cli("verify", str(archive), "--public-key", str(keys / "one.pub"))
    assert run.returncode == 0 and "signature valid" in run.stdout, run.stdout + run.stderr
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert "first/manifest.json" in names and "first.register.jsonl" in names
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    changed = tmp_path / "changed.tar.gz"
    with tarfile.open(changed, "w:gz") as tar:
        for member, data in members:
            if member.name == "first/summary.json":
                data = data.replace(b"pass", b"fail", 1)
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
    run = cli("verify", str(changed), "--public-key", str(keys / "one.pub"))
    assert run.returncode == 1 and "altered  summary.json" in run.stdout, run.stdout + run.stderr
    # resealed without any key, so the folder alone looks intact: the packed register entry says otherwise
    resealed = tmp_path / "resealed"
    with tarfile.open(changed) as tar:
        tar.extractall(resealed, filter="data")
    write_manifest(resealed / "first", key=None)
    with tarfile.open(tmp_path / "resealed.tar.gz", "w:gz") as tar:
        for path in sorted(resealed.iterdir()):
            tar.add(path, arcname=path.name)
    run = cli("verify", str(tmp_path / "resealed.tar.gz"))
    assert run.returncode == 1 and "manifest.json is not the one registered" in run.stdout, run.stdout + run.stderr
    assert not list(Path(tempfile.gettempdir()).glob("drillkit-verify-*")), "verify left its extracted copy behind"


def test_the_formats_verify_by_hand_with_cryptography_and_hashlib_alone(signed, keys):
    """docs/evidence.md, "Verifying without drillkit", step by step."""
    trusted = load_pem_public_key((keys / "one.pub").read_bytes())
    trusted_raw = trusted.public_bytes(Encoding.Raw, PublicFormat.Raw)

    def canonical(obj: dict) -> bytes:
        return json.dumps({k: v for k, v in obj.items() if k != "signature"}, sort_keys=True,
                          separators=(",", ":"), ensure_ascii=False).encode()

    for name in ("first", "second"):
        folder = signed / name
        manifest = json.loads((folder / "manifest.json").read_text())
        for f in manifest["files"]:
            assert hashlib.sha256((folder / f["path"]).read_bytes()).hexdigest() == f["sha256"]
        listed = {f["path"] for f in manifest["files"]}
        on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"manifest.json"}
        assert listed == on_disk
        assert bytes.fromhex(manifest["public_key"]) == trusted_raw
        Ed25519PublicKey.from_public_bytes(trusted_raw).verify(bytes.fromhex(manifest["signature"]), canonical(manifest))
    prev = None
    for i, line in enumerate((signed / "register.jsonl").read_bytes().splitlines()):
        entry = json.loads(line)
        assert entry["seq"] == i and entry["prev"] == (hashlib.sha256(prev).hexdigest() if prev else None)
        assert bytes.fromhex(entry["public_key"]) == trusted_raw
        trusted.verify(bytes.fromhex(entry["signature"]), canonical(entry))
        prev = line


def test_a_drill_that_cannot_register_does_not_start(tmp_path, no_leftovers):
    (tmp_path / "register.jsonl").symlink_to("/etc/hostname")
    run = cli("run", SCENARIO, "--out", str(tmp_path / "drill"), "--quiet")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "register.jsonl" in run.stderr and "did not start" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "drill").exists()


def test_a_sealed_folder_the_register_does_not_name_fails_unless_it_predates_the_register(copy, keys):
    old = shutil.copytree(copy / "first", copy / "older")
    manifest = json.loads((old / "manifest.json").read_text())
    manifest.update(created_utc="2020-01-01T00:00:00.000Z", signed=False, signature=None, signature_algorithm=None,
                    key_id=None, public_key=None, signer=None)
    (old / "manifest.json").write_text(json.dumps(manifest))
    run = cli("verify", "--register", str(copy), "--public-key", str(keys / "one.pub"))
    assert run.returncode == 0 and "predates     register.jsonl: older: sealed 2020-01-01" in run.stdout, run.stdout
    shutil.copytree(copy / "first", copy / "smuggled")
    run = cli("verify", "--register", str(copy), "--public-key", str(keys / "one.pub"))
    assert run.returncode == 1 and "unregistered register.jsonl: smuggled" in run.stdout, run.stdout
