from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))

from support.leftovers import Snapshot, remove_worker_tmpdir, worker_tmpdir  # noqa: E402


DRILL_FIXTURES = {"no_leftovers"}
"""A test that starts anything (a sandbox, a drill, a real system, an emulated account) asks for
no_leftovers, directly or through another fixture (manual_sandbox, kv_system, emulated)."""


DRILL_MODULES = {"test_router.py"}
"""Modules whose fixtures start real processes without a sandbox (test_router: the router binary
against stub regions)."""


def pytest_collection_modifyitems(items):
    """Such a test is marked `drill`: `pytest -m "not drill"` is the inner loop, with no process
    started; `pytest -m drill` the rest."""
    for item in items:
        if DRILL_FIXTURES & set(getattr(item, "fixturenames", ())) or item.path.name in DRILL_MODULES:
            item.add_marker(pytest.mark.drill)


def pytest_configure(config):
    """Under pytest-xdist (`-n`) each worker drills in a temporary folder of its own, and its
    leftover checks count only its own processes, ports and folders (support/leftovers.py)."""
    config.worker_tmpdir = worker_tmpdir()


def pytest_unconfigure(config):
    remove_worker_tmpdir(getattr(config, "worker_tmpdir", None))


@pytest.fixture(autouse=True)
def terminal_width_unset(monkeypatch):
    """Terminal tables are read at the width drillkit gives them without a terminal: a COLUMNS
    from the caller's shell (or pytest-xdist's 80) is not the test's business."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)


@pytest.fixture
def no_leftovers():
    """Fails the test if it left a process, a listening port or a sandbox folder behind."""
    before = Snapshot()
    yield before
    leaks = before.leaks()
    assert not leaks, f"left behind: {leaks}"


@pytest.fixture
def drillkit_cli():
    """Run the drillkit CLI as a user would: a subprocess, from the repository root."""

    def run(*args: str, timeout: float = 180, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "drillkit.cli", *args], cwd=ROOT, capture_output=True,
                              stdin=subprocess.DEVNULL,  # nobody at a terminal, as in CI, whoever runs the tests
                              text=True, timeout=timeout, env={**os.environ, **(env or {})})

    return run


@pytest.fixture
def manual_sandbox(no_leftovers):
    """A real sandbox whose traffic moves only when a runbook step says so."""
    from drillkit.targets.sandbox.system import Sandbox
    from drillkit.scenario import SandboxSpec

    box = Sandbox.up(SandboxSpec.model_validate({"routing": {"policy": "manual"}}))
    try:
        yield box
    finally:
        box.down()


@pytest.fixture
def kv_folder():
    """A folder PostgreSQL's unprivileged user can reach (pytest's tmp_path is 0700 under root)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="drillkit-kvtest-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def kv_system(kv_folder, no_leftovers):
    """A system drillkit did not build (tests/external_kv), running: PostgreSQL, two regions, an lb."""
    from support.kvsystem import running_kv_system

    with running_kv_system(kv_folder) as system:
        yield system


@pytest.fixture(autouse=True)
def signal_handlers_restored():
    """A test that leaves SIGINT or SIGTERM handled otherwise than it found them breaks every later
    one that relies on them (the watchdog interrupts the main thread through SIGINT's handler)."""
    import signal

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    after = {sig: signal.getsignal(sig) for sig in before}
    changed = {signal.Signals(s).name: (before[s], after[s]) for s in before if after[s] != before[s]}
    if changed:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        pytest.fail(f"the test left signal handlers changed: {changed}")


STORED_DRILLS = Path(__file__).parent / "data" / "stored-drills.tar.gz"
"""Real drills recorded before the target seam (drillkit bd3e49f): test_stored_drills re-measures them."""


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """The stored real drills, extracted once per test module."""
    import tarfile

    where = tmp_path_factory.mktemp("stored-drills")
    with tarfile.open(STORED_DRILLS) as tar:
        tar.extractall(where, filter="data")
    return where
