"""`drillkit report DIR --pdf`: the sealed report printed through headless Chromium, headed by
its seal (the manifest's SHA-256 and the signer's fingerprint), the evidence folder untouched."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest
from PIL import Image, ImageStat

from drillkit.evidence.manifest import verify_manifest, write_manifest
from drillkit.evidence.signing import new_key_pair, signer_from
from drillkit.report import render_report

from support.sample_evidence import make_drill


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    root = tmp_path_factory.mktemp("pdf")
    _, public, fingerprint = new_key_pair(root / "keys", "auditor")
    folder = make_drill(root / "reports" / "drill", n_ops=2000)
    render_report(folder)
    write_manifest(folder, key=signer_from(root / "keys" / "auditor.key"))
    return folder, fingerprint


def test_the_pdf_renders_and_states_the_manifest_hash_and_the_signer(sealed, drillkit_cli, tmp_path):
    if not shutil.which("pdftoppm"):
        pytest.fail("pdftoppm is not installed (.ci/run installs poppler-utils)", pytrace=False)
    folder, fingerprint = sealed
    run = drillkit_cli("report", str(folder), "--pdf", str(tmp_path / "drill.pdf"))
    assert run.returncode == 0, run.stderr
    pdf = tmp_path / "drill.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "page")], check=True)
    page = Image.open(next(tmp_path.glob("page*.png"))).convert("L")
    assert ImageStat.Stat(page).stddev[0] > 10, "page 1 is blank"
    text = subprocess.run(["pdftotext", "-l", "1", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    digest = hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    assert digest in text.replace("\n", "") and fingerprint in text.replace("\n", "")
    assert "matches its manifest" in text
    assert verify_manifest(folder, None).ok, "printing touched the sealed folder"


def test_the_default_pdf_lands_beside_the_folder_never_inside(sealed, drillkit_cli):
    folder, _ = sealed
    inside = drillkit_cli("report", str(folder), "--pdf", str(folder / "report.pdf"))
    assert inside.returncode == 2 and "inside the sealed folder" in inside.stderr
    run = drillkit_cli("report", str(folder), "--pdf")
    assert run.returncode == 0, run.stderr
    assert (folder.parent / "drill.pdf").is_file() and run.stdout.strip().endswith("drill.pdf")
    assert verify_manifest(folder, None).ok
    (folder.parent / "drill.pdf").unlink()


def test_without_chromium_one_clear_line(sealed, drillkit_cli, tmp_path):
    folder, _ = sealed
    run = drillkit_cli("report", str(folder), "--pdf", str(tmp_path / "x.pdf"),
                       env={"PATH": "/nonexistent", "DRILLKIT_CHROMIUM": ""})
    assert run.returncode == 2 and "no headless Chromium" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.pdf").exists()
