"""Every ending of a real drill tears everything down: signals at each stage, and a SIGKILLed harness."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.scenario_copy import ROOT
from support.running import start_drill, events, wait_for_event

POINTS = {
    "sandbox-start": ("stage.start", {"stage": "sandbox_up"}, 0.4),
    "load": ("stage.start", {"stage": "warmup"}, 0.5),
    "fault": ("fault.injected", {}, 0.0),
    "promotion": ("activity.start", {"name": "promote-standby"}, 0.0),
    "after-recovery": ("experiment.end", {}, 0.2),
}


@pytest.mark.parametrize("point", list(POINTS))
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_aborts_cleanly(tmp_path, no_leftovers, sig, point):
    out = tmp_path / "evidence"
    proc = start_drill(out)
    kind, match, delay = POINTS[point]
    try:
        wait_for_event(proc, out, kind, match)
        time.sleep(delay)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, stderr
    assert "Traceback" not in stderr
    kinds = [e["kind"] for e in events(out)]
    aborted = next(e for e in events(out) if e["kind"] == "drill.aborted")
    assert sig.name in aborted["reason"]
    assert "rollbacks.end" in kinds or "rollbacks.skipped" in kinds
    assert kinds[-1] in ("drill.end", "stage.end") and "drill.end" in kinds
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == "aborted"


def test_sigkilled_harness_is_reaped_by_the_next_drill(tmp_path, drillkit_cli, no_leftovers):
    out = tmp_path / "killed"
    proc = start_drill(out)
    try:
        wait_for_event(proc, out, "stage.start", {"stage": "warmup"})
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    orphans = [p for p in no_leftovers.leaks(settle=0).get("processes", {})]
    assert orphans, "a SIGKILLed harness should have left its sandbox running (else this test proves nothing)"

    nxt = drillkit_cli("run", "scenarios/ground-truth-outage.yaml", "--out", str(tmp_path / "next"), "--quiet")
    assert nxt.returncode == 0, nxt.stdout + nxt.stderr
    reaped = [e for e in events(tmp_path / "next") if e["kind"] == "sandbox.reaped"]
    assert reaped and len(reaped[0]["folders"]) == 1
    for pid in orphans:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    # the register holds the killed drill too: started, never sealed, its folder kept
    entries = [json.loads(line) for line in (tmp_path / "register.jsonl").read_text().splitlines()]
    assert [(e["drill"], e["event"]) for e in entries] == [("killed", "started"), ("next", "started"),
                                                            ("next", "sealed")]
    check = drillkit_cli("verify", "--register", str(tmp_path))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "unsealed" in check.stdout and "killed: started, never sealed" in check.stdout


def test_signal_swallowed_by_the_experiment_still_aborts():
    """chaoslib's SIGTERM exception can die in logging's handleError or an activity's
    `except Exception`; the drill must abort all the same (a CI run once completed with 0)."""
    from drillkit.run.drill import _Signals
    from drillkit.errors import DrillAborted

    class Watchdog:
        tripped = None

    with _Signals() as signals:
        signals.check(Watchdog())
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
        except Exception:
            pass
        with pytest.raises(DrillAborted, match="SIGTERM received"):
            signals.check(Watchdog())


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_landing_inside_an_import_waits_for_its_end(tmp_path, sig):
    """Raised inside the first import of a C extension, an interrupt left it half-initialised: the
    judge's import of pandas then died (SystemError, SIGSEGV). The signal is delivered again once
    the import is over. A module whose body signals its own process stands in for the extension."""
    (tmp_path / "slow_extension.py").write_text(
        "import os, signal\n"
        f"os.kill(os.getpid(), signal.{sig})\n"
        "total = sum(range(300_000))  # the handler runs here, inside the import\n"
        "COMPLETE = True\n")
    script = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "from drillkit.errors import DrillAborted\n"
        "from drillkit.run.drill import _Signals\n"
        "with _Signals():\n"
        "    try:\n"
        "        import slow_extension\n"
        "        deadline = time.monotonic() + 60\n"
        "        while time.monotonic() < deadline:\n"
        "            time.sleep(0.01)\n"
        "        print('never interrupted')\n"
        "    except (KeyboardInterrupt, DrillAborted) as exc:\n"
        "        module = sys.modules.get('slow_extension')\n"
        "        print(type(exc).__name__, getattr(module, 'COMPLETE', 'import broken'))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    expected = {"SIGINT": "KeyboardInterrupt", "SIGTERM": "DrillAborted"}[sig]
    assert proc.stdout.split() == [expected, "True"], proc.stdout + proc.stderr


@pytest.mark.parametrize("how", ["trip", "SIGTERM"])
def test_a_signal_during_an_evidence_write_lands_after_it(tmp_path, how):
    """A safeguard's trip (the watchdog interrupts the main thread) once landed between journal.json's
    truncation and its write: the drill was aborted with an empty journal, and its judge failed (no
    summary, exit 3). A write under `deferred()` lands whole; the signal is raised once it has."""
    path = tmp_path / "journal.json"
    signal_now = "_thread.interrupt_main()" if how == "trip" else "os.kill(os.getpid(), signal.SIGTERM)"
    script = (
        "import _thread, json, os, signal, sys\n"
        "from drillkit.errors import DrillAborted\n"
        "from drillkit.run.drill import _Signals\n"
        "with _Signals() as signals:\n"
        "    try:\n"
        "        with signals.deferred():\n"
        f"            with open({str(path)!r}, 'w') as fh:\n"
        "                fh.write('{\"status\": ')\n"
        f"                {signal_now}\n"
        "                total = sum(range(300_000))  # the handler runs here, inside the write\n"
        "                fh.write('\"completed\"}')\n"
        "        print('never interrupted')\n"
        "    except (KeyboardInterrupt, DrillAborted) as exc:\n"
        f"        print(type(exc).__name__, json.load(open({str(path)!r}))['status'])\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    expected = {"trip": "KeyboardInterrupt", "SIGTERM": "DrillAborted"}[how]
    assert proc.stdout.split() == [expected, "completed"], proc.stdout + proc.stderr
