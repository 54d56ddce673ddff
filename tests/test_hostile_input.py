"""Hostile input through the command line (issue 27, items 4-9): each case of the adversarial pass
reproduced as a user meets it (the CLI as a subprocess), each asserting the safe outcome.

Evidence folders come from tests/support/sample_evidence.py (synthetic, known figures) and from the stored
real drills in tests/data/stored-drills.tar.gz; one real sandbox drill proves the redaction end to end.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import secrets
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from drillkit.net import LoopbackServer
from support.scenario_copy import ROOT
from support.sample_evidence import make_drill

SECRET = b"hostile-test-signing-key"
BOMB_BOUND_S = 2
"""The bomb must be refused within this (a subprocess timeout, not a timing assertion): unbounded,
it ran for minutes."""

BOMB = "\n".join(
    ['lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)])
"""9^10 values once expanded (a "billion laughs")."""


def one_line(proc: subprocess.CompletedProcess, code: int) -> str:
    """The single `drillkit: ...` line of a refusal with exit `code`, and no traceback."""
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    assert proc.returncode == code, out
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("drillkit: "), proc.stderr
    return lines[0]


def stored_copy(stored: Path, dest: Path, name: str = "region-loss") -> Path:
    return Path(shutil.copytree(stored / name, dest))


def indented(text: str, by: int) -> str:
    return "".join(" " * by + line + "\n" for line in text.splitlines())


def scenario_with(tmp_path: Path, where: str) -> Path:
    """scenarios/region-loss.yaml with the bomb under `where` (system, load or the top level)."""
    doc = (ROOT / "scenarios" / "region-loss.yaml").read_text().replace("../", f"{ROOT}/")
    if where == "top":
        doc += BOMB + "\n"
    else:
        doc = doc.replace(f"{where}:\n", f"{where}:\n  bomb:\n{indented(BOMB, 4)}", 1)
    path = tmp_path / f"bomb-under-{where}.yaml"
    path.write_text(doc)
    return path


# --- 4: bounded YAML -------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["system", "load", "top"])
def test_an_alias_bomb_in_a_scenario_is_refused_at_once(tmp_path, drillkit_cli, where):
    path = scenario_with(tmp_path, where)
    line = one_line(drillkit_cli("validate", str(path), timeout=BOMB_BOUND_S), 2)
    assert line.startswith(f"drillkit: {path}: refused: more than 100,000 values once its aliases are expanded")


def test_an_alias_loop_is_refused(tmp_path, drillkit_cli):
    path = tmp_path / "loop.yaml"
    path.write_text((ROOT / "scenarios" / "region-loss.yaml").read_text().replace("../", f"{ROOT}/")
                    .replace("system:\n", "system:\n  loop: &me [1, *me]\n", 1))
    line = one_line(drillkit_cli("validate", str(path), timeout=BOMB_BOUND_S), 2)
    assert f"{path}: refused: an alias refers to a value that contains it" in line


def test_an_alias_bomb_in_a_workload_mapping_is_refused(tmp_path, drillkit_cli):
    workload = tmp_path / "workload.yaml"
    workload.write_text(BOMB + "\n")
    doc = yaml.safe_load((ROOT / "scenarios" / "region-loss.yaml").read_text())
    doc["experiment"] = str(ROOT / "experiments" / "region-loss.json")
    doc["load"].pop("locustfile")
    doc["load"]["workload"] = str(workload)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    line = one_line(drillkit_cli("validate", str(path), timeout=BOMB_BOUND_S), 2)
    assert line.startswith(f"drillkit: {workload}: refused: more than 100,000 values")


def test_an_alias_bomb_in_a_stored_scenario_is_refused_by_measure_and_ignored_by_report(
        stored, tmp_path, drillkit_cli):
    folder = stored_copy(stored, tmp_path / "drill")
    (folder / "scenario.yaml").write_text(BOMB + "\n")
    line = one_line(drillkit_cli("measure", str(folder), timeout=30), 2)
    assert f"{folder / 'scenario.yaml'}: refused: more than 100,000 values" in line
    report = drillkit_cli("report", str(folder), timeout=60)
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
    assert "scenario.yaml: not readable as YAML" in (folder / "report.html").read_text()


# --- 5: manifest semantics -------------------------------------------------------------------

@pytest.fixture
def signed(tmp_path) -> tuple[Path, Path]:
    from drillkit.evidence.manifest import write_manifest
    from drillkit.evidence.signing import HMAC_SHA256, Signer

    folder = make_drill(tmp_path / "drill", n_ops=500)
    write_manifest(folder, key=Signer(HMAC_SHA256, secret=SECRET))
    key_file = tmp_path / "signing.key"
    key_file.write_bytes(SECRET)
    return folder, key_file


def tamper(folder: Path, signature) -> None:
    """Edit summary.json, put its new hash and size in the manifest, keep `"signed": true`."""
    summary = json.loads((folder / "summary.json").read_text())
    summary["verdict"] = "pass"
    summary["measures"]["writes_lost"] = 0
    (folder / "summary.json").write_text(json.dumps(summary))
    manifest = json.loads((folder / "manifest.json").read_text())
    for f in manifest["files"]:
        if f["path"] == "summary.json":
            f.update(sha256=hashlib.sha256((folder / "summary.json").read_bytes()).hexdigest(),
                     size=(folder / "summary.json").stat().st_size)
    assert manifest["signed"] is True
    manifest["signature"] = signature
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("signature", [None, "", "not-hex", "ab" * 31, 42], ids=["null", "empty", "text", "short", "number"])
def test_a_stripped_signature_fails_verify_with_or_without_the_key(signed, drillkit_cli, signature):
    folder, key_file = signed
    tamper(folder, signature)
    for args in ((), ("--key-file", str(key_file))):
        proc = drillkit_cli("verify", str(folder), *args)
        line = one_line(proc, 1)
        assert "signature stripped" in line and proc.stdout.startswith("stripped manifest.json"), proc.stdout


def test_a_signed_folder_without_its_key_is_signature_not_checked_exit_4(signed, drillkit_cli):
    folder, key_file = signed
    proc = drillkit_cli("verify", str(folder))
    assert proc.returncode == 4 and "NOT checked" in proc.stdout and proc.stderr == "", proc.stdout + proc.stderr
    assert drillkit_cli("verify", str(folder), "--key-file", str(key_file)).returncode == 0


# --- 6: secrets by value shape ---------------------------------------------------------------

def token() -> str:
    return "Pl4nted" + secrets.token_hex(8)


def aws_shaped() -> str:
    raw = secrets.token_urlsafe(40).replace("-", "/").replace("_", "+")
    return ("Ab1/" + raw)[:40]


def leaks(folder: Path, value: str) -> list[str]:
    needles = {value.encode(), json.dumps(value)[1:-1].encode()}
    return [str(p.relative_to(folder)) for p in sorted(folder.rglob("*"))
            if p.is_file() and any(n in p.read_bytes() for n in needles)]


def test_secrets_by_shape_stay_out_of_a_real_drills_evidence_and_terminal(tmp_path, no_leftovers):
    """Configuration keys not named like secrets hold a DSN with a password, a key/value DSN, an
    Authorization header and an AWS secret key; a process probe echoes them all into the journal."""
    planted = {"url": token(), "kv": token(), "bearer": token(), "aws": aws_shaped()}
    experiment = json.loads((ROOT / "experiments" / "ground-truth-outage.json").read_text())
    config = experiment["configuration"]
    config["db_dsn"] = f"postgresql://drill:{planted['url']}@127.0.0.1:1/app"
    config["replica_conn"] = f"host=127.0.0.1 user=drill password={planted['kv']} dbname=app"
    config["upstream_header"] = f"Authorization: Bearer {planted['bearer']}"
    config["cloud_note"] = f"key {planted['aws']} for the archive"
    experiment["method"].append({"type": "probe", "name": "echo-config", "provider": {
        "type": "process", "path": "echo",
        "arguments": ["${db_dsn}", "${replica_conn}", "${upstream_header}", "${cloud_note}"]}})
    exp_file = tmp_path / "exp.json"
    exp_file.write_text(json.dumps(experiment, indent=2))
    scenario = yaml.safe_load((ROOT / "scenarios" / "ground-truth-outage.yaml").read_text())
    scenario["experiment"] = str(exp_file)
    scenario["load"]["locustfile"] = str(ROOT / "loadtests" / "dr_workload.py")
    scenario["load"]["duration"] = "8s"
    scenario_file = tmp_path / "shaped-secrets.yaml"
    scenario_file.write_text(yaml.safe_dump(scenario, sort_keys=False))
    out = tmp_path / "evidence"

    proc = subprocess.run([sys.executable, "-m", "drillkit.cli", "run", str(scenario_file), "--out", str(out),
                           "--var", "outage_seconds=0.5"], cwd=ROOT, capture_output=True, text=True, timeout=180)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    journal = json.loads((out / "journal.json").read_text())
    echoed = next(r for r in journal["run"] if r["activity"]["name"] == "echo-config")["output"]["stdout"]
    record = next(r for r in journal["run"] if r["activity"]["name"] == "echo-config")
    assert "postgresql://drill:***@127.0.0.1:1/app" in echoed and "password=***" in echoed, record
    assert "Authorization: Bearer ***" in echoed, echoed
    for name, value in planted.items():
        assert leaks(out, value) == [], f"the {name} secret is in the evidence"
        assert value not in proc.stdout + proc.stderr, f"the {name} secret was printed"


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def test_a_mistyped_dsns_password_is_not_printed_at_exit_2(tmp_path, drillkit_cli):
    """psycopg quotes the whole connection string back ('missing "=" after "postgres//drill:…'):
    drillkit's one line must not carry the password."""
    server = LoopbackServer(("127.0.0.1", 0), _Healthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        password = token()
        (tmp_path / "experiment.json").write_text(json.dumps({
            "title": "t", "description": "d", "method": [
                {"type": "probe", "name": "noop", "provider": {"type": "process", "path": "true"}}]}))
        (tmp_path / "workload.yaml").write_text(yaml.safe_dump({
            "write": {"method": "PUT", "path": "/kv/{key}", "body": {"value": "{payload}"}, "ok": [200]},
            "read": {"method": "GET", "path": "/kv/{key}", "payload_field": "value", "ok": [200],
                     "not_found": [404]}}))
        doc = {"name": "mistyped-dsn", "experiment": "experiment.json",
               "system": {"kind": "external", "endpoint": f"http://127.0.0.1:{server.server_port}",
                          "health_path": "/healthz",
                          "audit": {"kind": "postgres", "dsn_env": "HOSTILE_AUDIT_DSN",
                                    "query": "SELECT id, value FROM kv_items"}},
               "load": {"workload": "workload.yaml", "users": 1, "warmup": "1s", "duration": "2s"},
               "targets": {"rto": "10s"}}
        path = tmp_path / "scenario.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        out = tmp_path / "evidence"
        proc = drillkit_cli("run", str(path), "--out", str(out),
                            env={"HOSTILE_AUDIT_DSN": f"postgres//drill:{password}@127.0.0.1:1/app"})
    finally:
        server.shutdown()
        server.server_close()
    line = one_line(proc, 2)
    assert "system.audit.dsn_env" in line and "postgres//drill:***@127.0.0.1" in line, line
    assert password not in proc.stdout + proc.stderr
    assert not out.exists()


# --- 7: one escaper per output kind ----------------------------------------------------------

INJECTED = "promote\r\r## PASS ![pwned](http://evil.example/x.png) [click](http://evil.example) <img src=x> | col"


def test_summary_md_is_free_of_injected_structure(tmp_path, drillkit_cli):
    folder = make_drill(tmp_path / "drill", n_ops=500, failing=True)
    summary = json.loads((folder / "summary.json").read_text())
    summary["scenario"] = "region\n# Heading\r" + INJECTED
    summary["checks"][0]["message"] = "- item\n1. ordered " + INJECTED
    (folder / "summary.json").write_text(json.dumps(summary))
    events = (folder / "events.jsonl").read_text().replace('"promote-standby"', json.dumps(INJECTED))
    (folder / "events.jsonl").write_text(events)

    proc = drillkit_cli("report", str(folder))
    assert proc.returncode == 0, proc.stderr
    md = (folder / "summary.md").read_text()
    assert "\r" not in md and "![" not in md and "](" not in md and "<img" not in md
    headings = [line for line in md.splitlines() if line.lstrip().startswith("#")]
    assert headings == [md.splitlines()[0], "### Findings"], headings
    assert md.splitlines()[0].startswith("## ❌ FAIL — region \\# Heading promote")
    for line in md.splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            assert len(cells) in (4, 5), line  # the targets table and the phases table
    phase_rows = [line for line in md.splitlines() if "promote" in line and line.startswith("| ")]
    assert any("\\#\\# PASS \\!\\[pwned\\]" in row for row in phase_rows), phase_rows
    assert not any(line.startswith(("- item", "1. ordered")) for line in md.splitlines())


def test_the_terminal_shows_control_characters_escaped(stored, tmp_path, drillkit_cli):
    folder = stored_copy(stored, tmp_path / "drill")
    lines = (folder / "events.jsonl").read_text().splitlines()
    end = next(i for i, line in enumerate(lines) if json.loads(line)["kind"] == "drill.end")
    t = json.loads(lines[end])["t"]
    lines.insert(end, json.dumps({"t": t, "kind": "drill.aborted",
                                  "reason": "boom\x00\x07\x08\rOK all good\x1b[2J\x1b]0;title\x07"}))
    (folder / "events.jsonl").write_text("\n".join(lines) + "\n")
    proc = drillkit_cli("measure", str(folder))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    shown = proc.stdout + proc.stderr
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f]", shown), repr(shown)
    assert r"reason: drill aborted: boom\x00\x07\x08\rOK all good\x1b[2J\x1b]0;title\x07" in proc.stdout


def test_history_escapes_names_on_the_terminal(stored, tmp_path, drillkit_cli):
    root = tmp_path / "reports"
    folder = stored_copy(stored, root / "drill\x1b[31mred")
    summary = json.loads((folder / "summary.json").read_text())
    summary["scenario"] = "evil\x1b]0;owned\x07\rname"
    (folder / "summary.json").write_text(json.dumps(summary))
    proc = drillkit_cli("history", str(root))
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\x07" not in proc.stdout and "\r" not in proc.stdout
    assert r"evil\x1b]0;owned\x07\rname" in proc.stdout


# --- 8: one line, never a traceback ----------------------------------------------------------

@pytest.fixture
def sealed(stored, tmp_path) -> Path:
    from drillkit.evidence.manifest import write_manifest

    folder = stored_copy(stored, tmp_path / "sealed")
    write_manifest(folder, key=None)
    return folder


@pytest.mark.parametrize("content, says", [
    ("{not json", "summary.json: not readable JSON"),
    ("[1, 2]", "summary.json: not a drill summary"),
    ('{"measures": [1]}', "summary.json: not a drill summary"),
    ("\udcff", "summary.json: not readable JSON"),
])
def test_measure_on_a_sealed_folder_with_a_bad_summary_is_one_line(sealed, drillkit_cli, content, says):
    (sealed / "summary.json").write_bytes(content.encode("utf-8", "surrogateescape"))
    assert says in one_line(drillkit_cli("measure", str(sealed)), 2)


def test_invalid_utf8_in_final_state_is_one_line_naming_it(stored, tmp_path, drillkit_cli):
    folder = stored_copy(stored, tmp_path / "drill")
    with open(folder / "final_state.jsonl", "ab") as fh:
        fh.write(b'{"key": "k\xff\xfe", "checksum": "00"}\n')
    lines = (folder / "final_state.jsonl").read_bytes().count(b"\n")
    line = one_line(drillkit_cli("measure", str(folder)), 2)
    assert f"{folder / 'final_state.jsonl'}: line {lines}: not JSON" in line


@pytest.mark.parametrize("pointer", [b"garbage-not-a-state-file\n", b"\xff\xfe\x00binary", b"", b"a\nb\nc"])
def test_sandbox_down_with_a_garbage_pointer_is_one_line(tmp_path, drillkit_cli, pointer):
    path = tmp_path / "pointer"
    path.write_bytes(pointer)
    sibling = tmp_path / "sibling.json"
    sibling.write_text("{}")
    one_line(drillkit_cli("sandbox", "down", "--pointer", str(path)), 2)
    assert sibling.exists()


@pytest.mark.parametrize("state", ["[1, 2]", '"text"', '{"kind": 3}', "{broken"])
def test_drillkit_sandbox_naming_a_non_object_is_one_line(tmp_path, drillkit_cli, state):
    path = tmp_path / "state.json"
    path.write_text(state)
    line = one_line(drillkit_cli("sandbox", "down", "--pointer", str(tmp_path / "absent"),
                                 env={"DRILLKIT_SANDBOX": str(path)}), 2)
    assert str(path) in line
    assert path.exists() and tmp_path.exists()


def killed_drill(stored: Path, dest: Path) -> Path:
    """What a SIGKILLed drill leaves: no summary, journal, audit, report or manifest; events up
    to mid-experiment (after the fault) with no drill.end."""
    folder = stored_copy(stored, dest)
    for name in ("summary.json", "summary.md", "journal.json", "junit.xml", "final_state.jsonl", "audit.json",
                 "report.html", "manifest.json"):
        (folder / name).unlink(missing_ok=True)
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    cut = next(i for i, e in enumerate(events) if e["kind"] == "fault.injected") + 3
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events[:cut]))
    return folder


def test_a_killed_drills_folder_is_listed_and_measured_as_far_as_the_evidence_allows(
        stored, tmp_path, drillkit_cli):
    root = tmp_path / "reports"
    stored_copy(stored, root / "complete")
    folder = killed_drill(stored, root / "killed")

    history = drillkit_cli("history", str(root))
    assert history.returncode == 0, history.stderr
    row = next(line for line in history.stdout.splitlines() if line.rstrip().endswith("killed"))
    assert "incomplete (harness killed)" in row, history.stdout

    assert "summary.json" in one_line(drillkit_cli("report", str(folder)), 2)
    assert "no manifest.json" in one_line(drillkit_cli("verify", str(folder)), 2)

    measured = drillkit_cli("measure", str(folder))
    assert measured.returncode == 3 and "Traceback" not in measured.stderr, measured.stdout + measured.stderr
    assert "reason: drill aborted: incomplete (harness killed): events.jsonl has no drill.end" in measured.stdout
    assert "lost writes not audited" in measured.stdout
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["verdict"] == "aborted" and summary["measures"]["audited"] is False
    assert summary["measures"]["writes_lost"] is None, "unknown is not lost"
    assert summary["measures"]["rto_s"] is not None and summary["measures"]["writes_acked"] > 0
    report = drillkit_cli("report", str(folder))
    assert report.returncode == 0, report.stderr
    assert "incomplete (harness killed)" in (folder / "report.html").read_text()


# --- 9: the duplicate RTO row ----------------------------------------------------------------

def test_no_raw_rto_row_beside_the_rto_rows(tmp_path, drillkit_cli):
    folder = make_drill(tmp_path / "drill", n_ops=500)
    assert drillkit_cli("report", str(folder)).returncode == 0
    md = (folder / "summary.md").read_text()
    rows = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")]
    assert "RTO — writes" in rows and "RTO — reads" in rows
    assert not any(r.lower() == "rto" for r in rows), rows
    html = (folder / "report.html").read_text()
    assert not re.search(r"<td[^>]*>\s*rto\s*</td>", html), "a raw rto row in report.html"


@pytest.mark.parametrize("name", ["requests/canary.jsonl", "final_state.jsonl"])
def test_a_jsonl_file_starting_with_null_does_not_crash_the_reader(stored, tmp_path, drillkit_cli, name):
    """pyarrow's JSON reader died of SIGSEGV on a buffer whose first value is `null` (found by the fuzz test)."""
    folder = stored_copy(stored, tmp_path / "drill")
    path = folder / name
    path.write_bytes(b"  null\n" + path.read_bytes())
    proc = drillkit_cli("measure", str(folder))
    assert proc.returncode in (0, 2), proc.stdout + proc.stderr  # a signal would be negative
    assert "Traceback" not in proc.stderr
    if name == "final_state.jsonl":
        assert f"{path}: line 1: not a JSON object" in one_line(proc, 2)
