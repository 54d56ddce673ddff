"""The report as a PDF an auditor files: the sealed report.html, printed by headless Chromium,
headed by its seal (the SHA-256 of manifest.json, the signer's fingerprint, the file count and
whether the folder matched its manifest when it was printed).

report.html cannot state the hash of the manifest that covers it; the PDF is made after the seal,
so it can. The printed page is a copy of report.html with that heading added, in a temporary
folder; the evidence folder is not touched.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from drillkit import evidence as ev
from drillkit.errors import EnvironmentProblem, EvidenceError, InputError
from drillkit.evidence.manifest import read_manifest, verify_manifest

CHROMIUM_ENV = "DRILLKIT_CHROMIUM"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 120.0


def chromium() -> str:
    """The browser that prints: $DRILLKIT_CHROMIUM, else the first of BROWSERS on PATH."""
    found = os.environ.get(CHROMIUM_ENV) or next((p for b in BROWSERS if (p := shutil.which(b))), None)
    if not found:
        raise EnvironmentProblem("no headless Chromium to print with: install Debian's `chromium` "
                                 f"or set {CHROMIUM_ENV}", field="--pdf")
    return found


def run_browser(args: list[str], timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run a headless browser (`args`, the executable first); its whole process group is killed
    whatever happens, so no renderer or GPU helper outlives it. A browser that does not finish in
    `timeout` seconds gets returncode None and says so in `stderr`."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        out, err, code = "", f"no answer in {timeout:g} s", None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return subprocess.CompletedProcess(args, code, out, err)  # type: ignore[arg-type]


def seal_html(folder: Path) -> str:
    manifest = read_manifest(folder)
    digest = hashlib.sha256((folder / ev.MANIFEST).read_bytes()).hexdigest()
    result = verify_manifest(folder, None)
    signer = manifest.get("signer") or (f"{manifest.get('signature_algorithm')} key {manifest.get('key_id')}"
                                        if manifest.get("signed") else "unsigned")
    state = "matches its manifest" if result.ok else f"does NOT match its manifest ({result.counts()})"
    rows = [("manifest.json SHA-256", digest), ("signed by", signer),
            ("sealed (UTC)", str(manifest.get("created_utc"))),
            ("files", f"{result.files}; when printed the folder {state}")]
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>" for k, v in rows)
    return ('<section id="seal" style="border:2px solid #333;padding:8px 12px;margin:0 0 16px 0">'
            '<h2 style="margin:0 0 6px 0;font-size:15px">Seal of this evidence folder</h2>'
            f'<table style="font-size:12px;border-collapse:collapse">{cells}</table>'
            '<p style="font-size:11px;margin:6px 0 0 0">Check it offline: <code>drillkit verify FOLDER '
            '--public-key KEY.pub</code>, or by hand as docs/evidence.md describes.</p></section>')


def print_pdf(folder: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Path:
    """Print `folder`'s sealed report.html to `out` (default: `<folder>.pdf` beside the folder)."""
    folder = Path(folder)
    report = folder / ev.REPORT
    if not report.is_file():
        raise InputError(f"no {ev.REPORT} to print", file=str(folder))
    target = Path(out) if out is not None else folder.resolve().parent / f"{folder.resolve().name}.pdf"
    if target.resolve().is_relative_to(folder.resolve()):
        raise InputError("the PDF would land inside the sealed folder; give a path outside it", file=str(target),
                         field="--pdf")
    browser = chromium()
    page = report.read_text(encoding="utf-8")
    stamped, n = re.subn(r"(<body[^>]*>)", lambda m: m.group(1) + seal_html(folder), page, count=1)
    if n != 1:
        raise EvidenceError(f"{report}: not a drillkit report (no <body>)")
    with tempfile.TemporaryDirectory(prefix="drillkit-pdf-") as tmp:
        copy = Path(tmp) / "report.html"
        copy.write_text(stamped, encoding="utf-8")
        printed = Path(tmp) / "report.pdf"
        args = [browser, "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP * ~NOTFOUND",
                f"--user-data-dir={Path(tmp) / 'profile'}", "--no-pdf-header-footer",
                f"--print-to-pdf={printed}", copy.as_uri()]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root inside its sandbox
        err = run_browser(args).stderr
        if not printed.is_file() or not printed.read_bytes().startswith(b"%PDF"):
            last = (err or "").strip().splitlines()[-1:] or ["no output"]
            raise EnvironmentProblem(f"{browser} did not print the report ({last[0][:200]})", field="--pdf")
        try:
            shutil.move(printed, target)
        except OSError as exc:
            raise InputError(f"cannot write the PDF ({exc.strerror or exc})", file=str(target), field="--pdf") from exc
    return target
