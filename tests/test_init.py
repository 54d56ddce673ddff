"""`drillkit init`: a workspace that validates as written, never written over an existing one."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ARCHIVE = Path(__file__).parent / "data" / "stored-drills.tar.gz"


@pytest.mark.parametrize("kind", ["external", "sandbox"])
def test_init_writes_a_workspace_that_validates(tmp_path, drillkit_cli, kind):
    folder = tmp_path / "ws"
    done = drillkit_cli("init", str(folder), "--kind", kind)
    assert done.returncode == 0, done.stderr
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"scenario.yaml", "experiment.json", "README.md", "probes/conftest.py", "probes/test_drill.py"} <= names
    assert "workload.yaml" in names
    # the external workspace's fault names its process only through MY_PRIMARY_PIDFILE (no default)
    valid = drillkit_cli("validate", str(folder / "scenario.yaml"), env={"MY_PRIMARY_PIDFILE": "/run/primary.pid"})
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.strip().endswith("valid")
    if kind == "external":
        assert "FILL IN" in (folder / "scenario.yaml").read_text()


def test_the_external_workspace_never_defaults_the_fault_s_target(tmp_path, drillkit_cli):
    """No default kills: with MY_PRIMARY_PIDFILE unset (or empty) the fault is refused at validate,
    exit 2, naming the variable; the template itself defaults no pid, host or signal target."""
    folder = tmp_path / "ws"
    assert drillkit_cli("init", str(folder)).returncode == 0
    experiment = json.loads((folder / "experiment.json").read_text())
    assert all(not (isinstance(v, dict) and "default" in v) for v in experiment["configuration"].values()
               if v != experiment["configuration"]["drillkit_sandbox"])
    env = {k: v for k, v in __import__("os").environ.items() if k != "MY_PRIMARY_PIDFILE"}
    for value in (None, ""):
        done = subprocess.run([sys.executable, "-m", "drillkit.cli", "validate", str(folder / "scenario.yaml")],
                              capture_output=True, text=True, timeout=120,
                              env=env if value is None else {**env, "MY_PRIMARY_PIDFILE": value})
        assert done.returncode == 2, done.stdout + done.stderr
        line, = done.stderr.strip().splitlines()
        assert line.startswith(f"drillkit: {folder / 'experiment.json'}: ") and "MY_PRIMARY_PIDFILE" in line, line
        if value == "":  # set but empty: chaoslib takes it; drillkit refuses the fault
            assert "method[0].provider.arguments:" in line and "${primary_pidfile}" in line, line


def test_init_refuses_a_folder_that_is_not_empty(tmp_path, drillkit_cli):
    folder = tmp_path / "ws"
    folder.mkdir()
    (folder / "scenario.yaml").write_text("mine\n")
    done = drillkit_cli("init", str(folder))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"drillkit: {folder}: is not empty: drillkit init never overwrites"]
    assert (folder / "scenario.yaml").read_text() == "mine\n"
    assert [p.name for p in folder.iterdir()] == ["scenario.yaml"]


def test_the_workspace_probes_judge_a_stored_drill(tmp_path, drillkit_cli):
    folder = tmp_path / "ws"
    assert drillkit_cli("init", str(folder), "--kind", "sandbox").returncode == 0
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(tmp_path / "stored", filter="data")
    evidence = tmp_path / "stored" / "region-loss"
    done = subprocess.run([sys.executable, "-m", "pytest", "probes", "--drill-evidence", str(evidence), "-q",
                           "-p", "no:cacheprovider"], cwd=folder, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test_no_acknowledged_write_was_lost" in subprocess.run(
        [sys.executable, "-m", "pytest", "probes", "--drill-evidence", str(evidence), "--collect-only", "-q",
         "-p", "no:cacheprovider"], cwd=folder, capture_output=True, text=True, timeout=120).stdout


@pytest.mark.parametrize("mark, field", [
    ({"fault": "x", "at": "middle"}, "method[0].drillkit.at"),
    ({"fault": ""}, "method[0].drillkit.fault"),
    ({"when": "now", "fault": "x"}, "method[0].drillkit.when"),
    ("primary-loss", "method[0].drillkit"),
])
def test_a_bad_fault_mark_names_its_field(tmp_path, drillkit_cli, mark, field):
    assert drillkit_cli("init", str(tmp_path / "ws")).returncode == 0
    experiment = tmp_path / "ws" / "experiment.json"
    doc = json.loads(experiment.read_text())
    doc["method"][0]["drillkit"] = mark
    experiment.write_text(json.dumps(doc))
    done = drillkit_cli("validate", str(tmp_path / "ws" / "scenario.yaml"), env={"MY_PRIMARY_PIDFILE": "/run/p.pid"})
    assert done.returncode == 2
    line, = done.stderr.strip().splitlines()
    assert f"{experiment}: {field}:" in line, line
