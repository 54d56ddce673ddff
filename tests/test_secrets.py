"""Secrets stay out of evidence: evidence folders are archived and read by people who must not see them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support.scenario_copy import ROOT
from drillkit.redact import REDACTED, is_credential_env, is_secret_key, redact_evidence, redact_shapes


def token() -> str:
    return "s3cr3t-" + secrets.token_hex(12)


def grep(folder: Path, value: str) -> list[str]:
    """Every file in `folder` that holds `value`, as text or as its JSON-escaped form."""
    needles = {value.encode(), json.dumps(value)[1:-1].encode()}
    return [str(p.relative_to(folder)) for p in sorted(folder.rglob("*"))
            if p.is_file() and any(n in p.read_bytes() for n in needles)]


@pytest.fixture
def values(monkeypatch):
    v = {name: token() for name in ("aws", "session", "pg", "marked", "marked_var", "literal", "block",
                                    "block_env", "scenario_conf", "default")}
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", v["aws"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", v["session"])
    monkeypatch.setenv("APP_DB_PASSWORD", v["pg"])
    monkeypatch.setenv("MARKED_SOURCE", v["marked"])
    monkeypatch.setenv("BLOCK_SOURCE", v["block_env"])
    return v


def experiment_with_secrets(v: dict) -> dict:
    return {
        "title": "t", "description": "d",
        "configuration": {
            "drillkit_sandbox": {"type": "env", "key": "DRILLKIT_SANDBOX", "default": ""},
            "signing_material": {"type": "env", "key": "MARKED_SOURCE", "secret": True},
            "other_marked": {"type": "env", "key": "UNSET_VAR_X", "default": v["default"], "secret": True},
            "db_password": v["literal"],
            "outage_seconds": 1.0,
        },
        "secrets": {"vendor": {"api": v["block"], "from_env": {"type": "env", "key": "BLOCK_SOURCE"}}},
        "method": [],
    }


def evidence_folder(tmp: Path, v: dict, experiment_file: Path) -> Path:
    """A drill folder as drill.py leaves it before measure, with every secret in some file."""
    folder = tmp / "evidence"
    (folder / "requests").mkdir(parents=True)
    experiment = json.loads(experiment_file.read_text())
    run_exp = json.loads(json.dumps(experiment))
    run_exp["configuration"]["signing_material"] = v["marked_var"]
    journal = {"status": "completed", "experiment": run_exp,
               "run": [{"activity": {"name": "echo"}, "output": {"stdout": f"key={v['aws']} tok={v['session']}\n"}},
                       {"activity": {"name": "creds"}, "output": {"headers": {"Authorization": "Bearer abc"}}}]}
    (folder / "journal.json").write_text(json.dumps(journal, indent=2))
    scenario = {"name": "s", "experiment": str(experiment_file), "stable": 1.0,
                "configuration": {"service_token": v["scenario_conf"], "region": "A"},
                "vars": {"signing_material": v["marked_var"], "outage_seconds": "0.5"},
                "targets": {"max_lost_writes": 0}}
    (folder / "scenario.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False))
    (folder / "provenance.json").write_text(json.dumps({"operator": "root", "command": "drillkit run",
                                                        "env_note": f"pw {v['pg']}"}, indent=2))
    (folder / "chaostoolkit.log").write_text(
        f"INFO Running echo {v['literal']}\nDEBUG config {v['marked']} {v['block']} {v['block_env']}\n"
        f"DEBUG scenario {v['scenario_conf']} default {v['default']} var {v['marked_var']}\n")
    (folder / "events.jsonl").write_text(
        json.dumps({"t": 1.0, "kind": "activity.end", "error": f"denied for {v['aws']}"}) + "\n"
        + json.dumps({"t": 2.0, "kind": "drill.end"}) + "\n")
    (folder / "harness-error.txt").write_text(f"Traceback ... password={v['pg']}\n")
    (folder / "requests" / "w1.jsonl").write_text(json.dumps({"t0": 1.0, "t1": 1.1, "op": "write", "key": "k1",
                                                              "ok": True, "checksum": "ab" * 32}) + "\n")
    return folder


def test_redact_evidence_removes_every_secret_from_every_file(tmp_path, values):
    experiment_file = tmp_path / "exp.json"
    experiment_file.write_text(json.dumps(experiment_with_secrets(values)))
    folder = evidence_folder(tmp_path, values, experiment_file)
    requests_before = (folder / "requests" / "w1.jsonl").read_bytes()
    run_experiment = json.loads(experiment_file.read_text())
    run_experiment["configuration"]["signing_material"] = values["marked_var"]

    changed = redact_evidence(folder, run_experiment)

    assert set(changed) >= {"journal.json", "scenario.yaml", "provenance.json", "chaostoolkit.log",
                            "events.jsonl", "harness-error.txt"}
    leaks = {name: grep(folder, value) for name, value in values.items()}
    assert not any(leaks.values()), leaks
    journal = json.loads((folder / "journal.json").read_text())
    config = journal["experiment"]["configuration"]
    assert config["db_password"] == REDACTED and config["signing_material"] == REDACTED
    assert config["other_marked"] == {"type": "env", "key": "UNSET_VAR_X", "default": REDACTED, "secret": True}
    assert config["drillkit_sandbox"] == {"type": "env", "key": "DRILLKIT_SANDBOX", "default": ""}
    assert config["outage_seconds"] == 1.0
    assert journal["experiment"]["secrets"]["vendor"]["from_env"] == {"type": "env", "key": "BLOCK_SOURCE"}
    assert journal["run"][1]["output"]["headers"]["Authorization"] == REDACTED
    scenario = yaml.safe_load((folder / "scenario.yaml").read_text())
    assert scenario["vars"] == {"signing_material": REDACTED, "outage_seconds": "0.5"}
    assert scenario["configuration"] == {"service_token": REDACTED, "region": "A"}
    assert scenario["stable"] == 1.0 and scenario["targets"] == {"max_lost_writes": 0}
    assert [json.loads(line)["kind"] for line in (folder / "events.jsonl").read_text().splitlines()] == \
        ["activity.end", "drill.end"]
    assert (folder / "requests" / "w1.jsonl").read_bytes() == requests_before


def test_short_values_do_not_shred_the_evidence(tmp_path, monkeypatch):
    """A credential variable set to `1` must not turn every digit of the evidence into ***."""
    monkeypatch.setenv("SOME_TOKEN", "1")
    folder = tmp_path / "ev"
    folder.mkdir()
    (folder / "events.jsonl").write_text(json.dumps({"t": 1.5, "kind": "drill.start", "n": 11}) + "\n")
    (folder / "chaostoolkit.log").write_text("2024-01-01 11:11 INFO 1 activity\n")
    assert redact_evidence(folder, {"configuration": {"api_key": "1"}}) == []


def test_a_path_of_forty_characters_is_not_an_aws_secret_key():
    """CI's clone lives at /check/work/main: `reports/<UTC stamp>` made a 40-character base64 run,
    and `drillkit run` printed `evidence: ***.650374Z-region-loss`."""
    printed = "evidence: /check/work/main/reports/20261207T042202.650374Z-region-loss"
    assert redact_shapes(printed) == printed
    root_path = "/tmp/" + "A1b2C3d4/" * 3 + "Z9y8x7w6AB"  # 40 characters, /tmp exists
    assert redact_shapes(f"wrote {root_path} ok") == f"wrote {root_path} ok"
    key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example secret key
    for text in (f"key {key} for", f"secret={key}", f'"{key}"', f"{key}.", f"{key}\n"):
        assert key not in redact_shapes(text), text
    assert redact_shapes("/" + key[1:]) == REDACTED  # a key starting with / whose "folder" is not there


def test_names_that_are_secrets():
    for key in ("password", "db_password", "dbPassword", "api_key", "apiKey", "api-key", "secret", "secrets",
                "token", "access_key_id", "aws_secret_access_key", "Authorization", "private_key"):
        assert is_secret_key(key), key
    for key in ("outage_seconds", "serving_link", "key", "tokenizer", "keyboard", "drillkit_sandbox", "region"):
        assert not is_secret_key(key), key
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "GITHUB_TOKEN",
                 "DB_PASSWORD", "APP_SECRET", "DRILLKIT_SIGNING_KEY", "PGPASSWORD"):
        assert is_credential_env(name), name
    for name in ("PATH", "HOME", "DRILLKIT_SANDBOX", "DRILLKIT_PG_BIN", "TOKENIZERS_PARALLELISM"):
        assert not is_credential_env(name), name


def test_a_real_drill_keeps_secrets_out_of_its_evidence(tmp_path, no_leftovers):
    """A secret from the environment and one from --var on a key marked secret both reach the
    evidence (a process probe echoes them into the journal) and neither survives redaction."""
    aws, marked = token(), token()
    experiment = json.loads((ROOT / "experiments" / "ground-truth-outage.json").read_text())
    experiment["configuration"]["aws_secret"] = {"type": "env", "key": "AWS_SECRET_ACCESS_KEY", "secret": True}
    experiment["configuration"]["signing_material"] = {"type": "env", "key": "DK_TEST_MARKED", "default": "x",
                                                       "secret": True}
    experiment["method"].append({"type": "probe", "name": "echo-secrets", "provider": {
        "type": "process", "path": "echo", "arguments": "${aws_secret} ${signing_material}"}})
    exp_file = tmp_path / "exp.json"
    exp_file.write_text(json.dumps(experiment, indent=2))
    scenario = yaml.safe_load((ROOT / "scenarios" / "ground-truth-outage.yaml").read_text())
    scenario["experiment"] = str(exp_file)
    scenario["load"]["locustfile"] = str((ROOT / "loadtests" / "dr_workload.py").resolve())
    scenario_file = tmp_path / "secret-drill.yaml"
    scenario_file.write_text(yaml.safe_dump(scenario, sort_keys=False))
    out = tmp_path / "evidence"

    proc = subprocess.run([sys.executable, "-m", "drillkit.cli", "run", str(scenario_file), "--out", str(out),
                           "--var", "outage_seconds=0.5", "--var", f"signing_material={marked}", "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "AWS_SECRET_ACCESS_KEY": aws})

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "report.html").is_file()
    assert grep(out, aws) == [] and grep(out, marked) == [], "secret values in the evidence"
    assert aws not in proc.stdout + proc.stderr and marked not in proc.stdout + proc.stderr
    journal = json.loads((out / "journal.json").read_text())
    echoed = next(r for r in journal["run"] if r["activity"]["name"] == "echo-secrets")
    assert echoed["output"]["stdout"].split() == [REDACTED, REDACTED], "the probe did not see both secrets"
