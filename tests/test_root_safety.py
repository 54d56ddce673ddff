"""drillkit run as root beside other people's processes (issue 27, items 1-3).

Another user plants folders that look like a killed drill's sandbox, naming a root process and a
root shared-memory segment: neither `drillkit sandbox down` nor the reaper at `drillkit run` start
touches them. `sandbox down` pointed at anything but a sandbox's own state file changes nothing.
The evidence folder deleted mid-drill still ends in a full teardown; a sandbox whose `sandbox up`
was killed is found and removed by `drillkit sandbox down` without a pointer, and by the reaper.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from support.scenario_copy import ROOT
from support.running import start_drill, wait_for_event

from drillkit.targets import processes, reap_stale, verified_folder
from drillkit.targets.sandbox import postgres as pg

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="plants as another user: needs root")

TMP = Path(tempfile.gettempdir())
DEAD_PID = 4_000_000  # above any pid_max in use: the planted owner is "dead"

PLANT = r"""
set -e
d="$1"; mkdir -m 755 "$d"; mkdir -m 700 "$d/pg-A"
printf '%s' "$2" > "$d/owner.json"; printf '%s' "$3" > "$d/processes.json"
printf '%s' "$4" > "$d/pg-A/postmaster.pid"; printf '{}' > "$d/sandbox.json"; printf '{}' > "$d/target.json"
"""


def alive(pid: int) -> bool:
    fields = processes.stat_fields(f"/proc/{pid}/stat")
    return fields is not None and fields[0] != "Z"


def segment_ids() -> set[int]:
    return {int(line.split()[1]) for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]}


@pytest.fixture
def victim():
    """A root process, leading its own process group, that no drillkit folder may get killed."""
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def victim_segment():
    """A root System V shared-memory segment, attached by no one (as a SIGKILLed postmaster's is)."""
    out = subprocess.run(["ipcmk", "-M", "64"], capture_output=True, text=True, check=True).stdout
    shmid = int(out.split(":")[-1])
    try:
        yield shmid
    finally:
        subprocess.run(["ipcrm", "-m", str(shmid)], capture_output=True)


def planted_content(victim_pid: int, shmid: int, mark: str | None = "planted") -> tuple[str, str, str]:
    """owner.json (a dead owner), processes.json (the victim with its true start time, user and a
    mark) and a postmaster.pid naming the victim segment: what the issue's attacker wrote."""
    key = next(int(line.split()[0]) for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
               if int(line.split()[1]) == shmid)
    owner = json.dumps({"pid": DEAD_PID, "start_ticks": 1, "id": "planted"})
    entry = {"name": "postgres-A", "pid": victim_pid, "start_ticks": processes.start_ticks(victim_pid),
             "region": "A", "group": True, "uid": 0, "mark": mark}
    pidfile = "\n".join([str(DEAD_PID), "/x", "0", "5432", "/tmp", "127.0.0.1", f"{key:>9} {shmid:>9}", "ready"])
    return owner, json.dumps([entry]), pidfile + "\n"


@pytest.fixture
def planted(victim, victim_segment, no_leftovers):
    """As `nobody`: a sandbox-, external- and aws-looking folder in the temp folder naming the victims."""
    folders = [TMP / f"{prefix}planted{secrets.token_hex(4)}" for prefix in
               ("drillkit-sandbox-", "drillkit-external-", "drillkit-aws-")]
    content = planted_content(victim.pid, victim_segment)
    try:
        for folder in folders:
            subprocess.run(["runuser", "-u", "nobody", "--", "sh", "-c", PLANT, "plant", str(folder), *content],
                           check=True, cwd="/")
        assert all(f.stat().st_uid != 0 for f in folders)
        yield folders
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def assert_untouched(victim, shmid: int, folders: list[Path]) -> None:
    assert alive(victim.pid), "the victim process was signalled"
    assert shmid in segment_ids(), "the victim segment was removed"
    for folder in folders:
        assert (folder / "processes.json").is_file(), f"{folder} was deleted"


def test_sandbox_down_leaves_another_users_planted_folder_alone(planted, victim, victim_segment, drillkit_cli,
                                                                 tmp_path):
    """The issue's case 1, through the CLI: no pointer, so only the search for killed sandboxes runs."""
    res = drillkit_cli("sandbox", "down", "--pointer", str(tmp_path / "no-pointer"), env={"DRILLKIT_SANDBOX": ""})
    assert res.returncode == 2, res.stdout + res.stderr
    assert "reaped" not in res.stdout
    assert_untouched(victim, victim_segment, planted)


def test_sandbox_down_pointed_at_a_planted_folder_is_refused(planted, victim, victim_segment, drillkit_cli,
                                                             tmp_path):
    for folder in planted:
        for name in ("sandbox.json", "target.json"):
            res = drillkit_cli("sandbox", "down", "--pointer", str(tmp_path / "no-pointer"),
                               env={"DRILLKIT_SANDBOX": str(folder / name)})
            assert res.returncode == 2, res.stdout + res.stderr
            lines = res.stderr.strip().splitlines()
            assert len(lines) == 1 and str(folder / name) in lines[0] and "Traceback" not in res.stderr
    assert_untouched(victim, victim_segment, planted)


def test_the_reaper_at_run_start_leaves_planted_folders_alone(planted, victim, victim_segment):
    """What `drillkit run` calls first (drill.py: targets.reap_stale)."""
    assert reap_stale() == []
    assert_untouched(victim, victim_segment, planted)


@pytest.fixture
def own_folder(victim, victim_segment, no_leftovers):
    """A folder root made itself, as a sandbox's (so it passes the ownership rules), whose registry
    names the victim: only the processes' own marks may then keep the victim alive."""
    folder = Path(tempfile.mkdtemp(prefix="drillkit-sandbox-", dir=TMP))
    folder.chmod(0o755)
    owner, registry, pidfile = planted_content(victim.pid, victim_segment)
    (folder / "owner.json").write_text(owner)
    (folder / "processes.json").write_text(registry)
    (folder / "pg-A").mkdir()
    (folder / "pg-A" / "postmaster.pid").write_text(pidfile)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("mark", ["planted", None], ids=["wrong-mark", "no-mark"])
def test_a_folder_of_ours_cannot_name_a_process_or_segment_that_is_not_its_own(own_folder, victim, victim_segment,
                                                                               mark):
    """Provenance is the process's, never the folder's word: the victim carries no sandbox id."""
    owner, registry, _ = planted_content(victim.pid, victim_segment, mark=mark)
    (own_folder / "processes.json").write_text(registry)
    assert processes.unverified(own_folder, "drillkit-sandbox-") is None
    reaped = reap_stale()
    assert reaped == [str(own_folder)] and not own_folder.exists()  # the folder was ours: removed
    assert alive(victim.pid)
    assert victim_segment in segment_ids()


def test_a_segment_is_removed_only_when_its_data_directory_keyed_it(own_folder, victim_segment):
    assert not pg.drop_shared_memory(own_folder / "pg-A")
    assert victim_segment in segment_ids()


def test_ownership_rules(tmp_path, no_leftovers):
    """What makes a folder ours: its name, a real directory of this user writable by no one else,
    with an owner file and a registry of this user's."""
    made = []

    def folder(mode: int = 0o755) -> Path:
        root = Path(tempfile.mkdtemp(prefix="drillkit-sandbox-", dir=TMP))
        made.append(root)
        root.chmod(mode)
        processes.claim(root)
        processes.write_registry(root, [])
        return root

    try:
        assert processes.unverified(folder(), "drillkit-sandbox-") is None
        assert "writable by other users" in processes.unverified(folder(0o777), "drillkit-sandbox-")
        assert "writable by other users" in processes.unverified(folder(0o775), "drillkit-sandbox-")
        link = TMP / f"drillkit-sandbox-link{secrets.token_hex(4)}"
        made.append(link)
        subprocess.run(["runuser", "-u", "nobody", "--", "ln", "-s", str(folder()), str(link)], check=True, cwd="/")
        assert "symlink" in processes.unverified(link, "drillkit-sandbox-")
        bare = folder()
        (bare / "processes.json").unlink()
        assert "processes.json" in processes.unverified(bare, "drillkit-sandbox-")
        foreign = folder()
        os.chown(foreign / "owner.json", 65534, 65534)
        assert "owner.json" in processes.unverified(foreign, "drillkit-sandbox-")
        assert "name" in processes.unverified(tmp_path, "drillkit-sandbox-")
    finally:
        for root in made:
            if root.is_symlink():
                root.unlink()
            else:
                shutil.rmtree(root, ignore_errors=True)


def test_sandbox_down_pointed_at_an_evidence_file_touches_nothing(tmp_path, drillkit_cli, no_leftovers):
    """The issue's case 2: the pointer names a JSON object that is not a sandbox's state file."""
    folder = tmp_path / "evidence"
    folder.mkdir()
    (folder / "summary.json").write_text(json.dumps({"scenario": "x", "verdict": "pass", "root": str(folder)}))
    (folder / "events.jsonl").write_text("")
    (folder / "sandbox.json").write_text(json.dumps({"kind": "sandbox", "root": str(folder)}))
    (folder / "list.json").write_text("[1, 2]")
    before = sorted(p.name for p in folder.iterdir())
    for name in ("summary.json", "sandbox.json", "list.json"):
        res = drillkit_cli("sandbox", "down", "--pointer", str(tmp_path / "no-pointer"),
                           env={"DRILLKIT_SANDBOX": str(folder / name)})
        assert res.returncode == 2, res.stdout + res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and str(folder / name) in lines[0], res.stderr
        assert sorted(p.name for p in folder.iterdir()) == before
    pointer = tmp_path / "pointer"
    pointer.write_text(str(folder / "summary.json"))
    res = drillkit_cli("sandbox", "down", "--pointer", str(pointer), env={"DRILLKIT_SANDBOX": ""})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert sorted(p.name for p in folder.iterdir()) == before


def new_sandbox_folders(before: set[Path]) -> list[Path]:
    return [f for f in TMP.glob("drillkit-sandbox-*") if f not in before]


@pytest.mark.parametrize("reaper", ["sandbox-down", "next-run"])
def test_a_sandbox_whose_sandbox_up_was_killed_is_reaped(tmp_path, drillkit_cli, no_leftovers, reaper):
    """The issue's case 3b: `drillkit sandbox up` SIGKILLed once its database runs."""
    before = set(TMP.glob("drillkit-sandbox-*"))
    proc = subprocess.Popen([sys.executable, "-m", "drillkit.cli", "sandbox", "up", "--pointer",
                             str(tmp_path / "pointer")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = new_sandbox_folders(before)
            registry = processes.read_registry(found[0]) if found and (found[0] / "processes.json").is_file() else []
            if any(e.name == "postgres-A" for e in registry):
                break
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.02)
        else:
            raise AssertionError("sandbox up never started its database")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (tmp_path / "pointer").exists()
    left = no_leftovers.leaks(settle=0)
    assert left.get("processes") and left.get("folders"), "the killed sandbox up left nothing (proves nothing)"
    if reaper == "sandbox-down":
        res = drillkit_cli("sandbox", "down", "--pointer", str(tmp_path / "pointer"), env={"DRILLKIT_SANDBOX": ""})
        assert res.returncode == 0, res.stdout + res.stderr
        assert str(found[0]) in res.stdout
    else:
        assert reap_stale() == [str(found[0])]
    assert not found[0].exists()


def test_a_planted_state_file_beside_a_real_sandbox_is_refused(tmp_path, no_leftovers):
    """verified_folder: only `<folder>/sandbox.json` itself, not a file next to it."""
    root = Path(tempfile.mkdtemp(prefix="drillkit-sandbox-", dir=TMP))
    try:
        root.chmod(0o755)
        processes.claim(root)
        processes.write_registry(root, [])
        (root / "sandbox.json").write_text(json.dumps({"kind": "sandbox"}))
        assert verified_folder(root / "sandbox.json") == ("sandbox", root)
        from drillkit.errors import InputError

        for name in ("processes.json", "owner.json"):
            with pytest.raises(InputError):
                verified_folder(root / name)
        os.chown(root / "sandbox.json", 65534, 65534)
        with pytest.raises(InputError, match="sandbox.json"):
            verified_folder(root / "sandbox.json")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("stage", ["warmup", "experiment"])
def test_the_evidence_folder_deleted_mid_drill_still_tears_everything_down(tmp_path, no_leftovers, stage):
    """The issue's case 3: recording the abort fails (or a late writer recreates the folder), the
    teardown runs all the same, nothing is judged; exit 3."""
    out = tmp_path / "evidence"
    proc = start_drill(out, "scenarios/ground-truth-outage.yaml")
    try:
        wait_for_event(proc, out, "stage.start", {"stage": stage})
        assert no_leftovers.leaks(settle=0).get("processes"), "nothing ran (proves nothing)"
        for _ in range(50):  # the drill writes on while it is deleted: a file may land mid-rmtree
            shutil.rmtree(out, ignore_errors=True)
            if not out.exists():
                break
        assert not out.exists()
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, stderr
    assert "Traceback" not in stderr
    assert "torn down" in stderr and not (out / "summary.json").exists()
    shutil.rmtree(out, ignore_errors=True)  # whatever a late writer put back; no_leftovers checks the rest


@pytest.fixture
def small_disk():
    """A 384 KiB file system (tmpfs) for the evidence folder: the drill's records fill it."""
    where = Path(tempfile.mkdtemp(prefix="dk-small-disk-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=384k,mode=0755", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


def test_the_evidence_disk_filling_up_mid_drill_still_tears_everything_down(small_disk, no_leftovers):
    """The issue's full disk: the evidence folder's file system fills while the load records;
    the drill stops (the abort recorded as far as the disk allows), tears everything down, and
    says so in one line, never a traceback."""
    out = small_disk / "evidence"
    proc = start_drill(out, "scenarios/ground-truth-outage.yaml")
    try:
        wait_for_event(proc, out, "stage.start", {"stage": "warmup"})
        assert no_leftovers.leaks(settle=0).get("processes"), "nothing ran (proves nothing)"
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert shutil.disk_usage(small_disk).free < 64 * 1024, "the disk never filled (proves nothing)"
    assert proc.returncode == 3, stderr
    assert "Traceback" not in stderr
