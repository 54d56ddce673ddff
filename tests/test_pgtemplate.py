"""The PostgreSQL template: built once into drillkit's cache folder, copied into each sandbox for
both regions; the standby streams from the primary it was copied with; nothing of one sandbox's
data reaches the next."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import psycopg
import pytest

from support.drills import write_record

from drillkit.errors import EnvironmentProblem
from drillkit.scenario import SandboxSpec
from drillkit.targets.sandbox import pgtemplate
from drillkit.targets.sandbox import postgres as pg
from drillkit.targets.sandbox.system import TEMPLATE_PROCESS, TEMPLATE_WORK, Sandbox


def rows(port: int, key: str) -> list[tuple]:
    with psycopg.connect(pg.dsn(port), autocommit=True) as conn:
        return conn.execute("SELECT key, region FROM records WHERE key = %s", (key,)).fetchall()


def count(port: int) -> int:
    with psycopg.connect(pg.dsn(port), autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM records").fetchone()[0]


def replicated(box: Sandbox, key: str, timeout: float = 30) -> list[tuple]:
    """Wait until the standby holds `key` (replication is asynchronous)."""
    port = box.state.regions["B"].db_port
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = rows(port, key)
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{key} never reached the standby on port {port}")


def entries(cache: Path) -> list[Path]:
    return sorted(cache.iterdir())


def test_the_first_sandbox_builds_the_template_the_next_copies_it(tmp_path, monkeypatch, no_leftovers):
    cache = tmp_path / "cache"
    monkeypatch.setenv(pgtemplate.CACHE_ENV, str(cache))

    with Sandbox.up(SandboxSpec()) as first:
        root = Path(first.state.root)
        assert (root / "pg-template.log").exists(), "the first sandbox builds the template"
        assert not (root / TEMPLATE_WORK).exists(), "the build folder goes once both regions are copied"
        assert TEMPLATE_PROCESS not in {p.name for p in first.state.processes}
        [entry] = entries(cache)
        assert entry.name.startswith("pg") and (entry / "data" / "PG_VERSION").is_file()
        assert stat.S_IMODE(cache.stat().st_mode) == 0o700
        assert write_record(first, "first-1") == "A"
        assert replicated(first, "first-1") == [("first-1", "A")]

    with Sandbox.up(SandboxSpec()) as second:
        root = Path(second.state.root)
        assert not (root / "pg-template.log").exists(), "the second sandbox copies the cached template"
        assert entries(cache) == [entry]
        assert count(second.state.regions["A"].db_port) == 0, "nothing of the first sandbox's data"
        assert write_record(second, "second-1") == "A"
        assert replicated(second, "second-1") == [("second-1", "A")]


def test_with_the_cache_off_each_sandbox_builds_its_own_and_keeps_none(tmp_path, monkeypatch, no_leftovers):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv(pgtemplate.CACHE_ENV, "off")
    with Sandbox.up(SandboxSpec()) as box:
        assert (Path(box.state.root) / "pg-template.log").exists()
        assert not (Path(box.state.root) / TEMPLATE_WORK).exists()
        assert write_record(box, "off-1") == "A"
        assert replicated(box, "off-1") == [("off-1", "A")]
    assert not home.exists()


def test_the_default_cache_folder_is_private_to_this_user(tmp_path, monkeypatch):
    monkeypatch.delenv(pgtemplate.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder = pgtemplate.cache_folder()
    assert folder == tmp_path / "xdg" / "drillkit"
    st = folder.stat()
    assert st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o700


@pytest.mark.parametrize("setting", ["link", "group-writable"])
def test_a_cache_folder_that_is_not_this_users_alone_is_refused(tmp_path, monkeypatch, setting):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    if setting == "link":
        folder = tmp_path / "link"
        folder.symlink_to(real)
    else:
        folder = real
        folder.chmod(0o770)
    monkeypatch.setenv(pgtemplate.CACHE_ENV, str(folder))
    with pytest.raises(EnvironmentProblem) as caught:
        pgtemplate.cache_folder()
    assert caught.value.file == pgtemplate.CACHE_ENV and str(folder) in caught.value.message


def test_a_template_key_changes_with_what_shapes_the_cluster():
    bins = pg.PgBinaries(Path("/usr/lib/postgresql/15/bin"), "15.10")
    run_as = pg.RunAs("nobody", 65534, 65534)
    key = pgtemplate.template_key(bins, run_as, 16)
    assert key != pgtemplate.template_key(bins, run_as, 1)
    assert key != pgtemplate.template_key(pg.PgBinaries(bins.bindir, "15.11"), run_as, 16)
    assert key != pgtemplate.template_key(bins, pg.RunAs("postgres", 105, 110), 16)
    assert key == pgtemplate.template_key(pg.PgBinaries(Path("/usr/lib/postgresql/15/bin"), "15.10"), run_as, 16)
