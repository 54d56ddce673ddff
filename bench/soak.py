"""Flake hunt: the README's drill, N times back to back from one install, optionally beside a CPU hog.

    python bench/soak.py                 # 10 runs of scenarios/region-loss.yaml
    python bench/soak.py -n 20 --hog     # 20 runs with a busy loop on every core alongside
    python bench/soak.py --scenario scenarios/failback.yaml -n 5
    python bench/soak.py --scenario scenarios/e-commerce/warm-standby-phased-activation.yaml \
        -n 10 --fresh-clone --lock /tmp/drillkit-tests.lock

Each run is `drillkit run SCENARIO --out <tmp>` as a subprocess from the checkout root, or with
--fresh-clone from a new `git clone` of the checkout's HEAD (its own src/ first on the path), so
nothing left in the working tree by an earlier run or by hand counts. With --lock each run holds
an exclusive flock on that file and releases it before the next, so other drills and test runs
on the machine take turns with the soak; the hog, if any, runs only while a drill does. Per run it
prints the exit code, the verdict, the wall time, RTO / RPO / lost writes, and for anything but a
pass the reasons from summary.json; at the end the counts of passes, target misses (exit 1) and
aborts (exit 3) or errors. A missed target under load is a property of the drill on a busy machine;
an abort is the harness failing and is what this hunts for. Exits 1 when any run aborted or erred.
The evidence folders are deleted unless --keep; the hog processes always stop.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _burn(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


@contextmanager
def hogging(cores: int):
    """A busy loop on `cores` cores for the duration."""
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=_burn, args=(stop,), daemon=True) for _ in range(cores)]
    for h in hogs:
        h.start()
    try:
        yield
    finally:
        stop.set()
        for h in hogs:
            h.join(5)
            if h.is_alive():
                h.kill()
                h.join(5)


@contextmanager
def locked(path: str):
    """An exclusive flock on `path`, as `flock PATH cmd` takes it."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def fresh_clone(into: Path) -> Path:
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(into)], check=True)
    return into


def run_once(scenario: str, out: Path, timeout: float, root: Path = ROOT) -> dict:
    drillkit = [sys.executable, "-m", "drillkit.cli"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root / "src"), os.environ.get("PYTHONPATH")]))}
    t0 = time.monotonic()
    try:
        proc = subprocess.run([*drillkit, "run", scenario, "--out", str(out)], cwd=root, capture_output=True,
                              text=True, timeout=timeout, env=env)
        code, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired:
        code, stderr = None, f"no end within {timeout:g} s"
    wall = time.monotonic() - t0
    row = {"exit": code, "wall_s": wall, "verdict": None, "reasons": [], "stderr": stderr.strip()[-500:]}
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return row
    m = summary.get("measures", {})
    row.update(verdict=summary.get("verdict"), reasons=summary.get("reasons") or [], rto_s=m.get("rto_s"),
               rpo_s=m.get("rpo_s"), writes_lost=m.get("writes_lost"), writes_acked=m.get("writes_acked"))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--runs", type=int, default=10)
    parser.add_argument("--scenario", default="scenarios/region-loss.yaml")
    parser.add_argument("--hog", action="store_true", help="keep every core busy while the drills run")
    parser.add_argument("--timeout", type=float, default=600, help="per drill, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the evidence folders")
    parser.add_argument("--fresh-clone", action="store_true", help="each run from a new clone of the checkout's HEAD")
    parser.add_argument("--lock", metavar="FILE", help="hold an exclusive flock on FILE during each run")
    args = parser.parse_args(argv)

    base = Path(tempfile.mkdtemp(prefix="drillkit-soak-"))
    cores = (os.cpu_count() or 1) if args.hog else 0
    rows = []
    try:
        print(f"soak: {args.runs} × {args.scenario}{' with a CPU hog on every core' if cores else ''}"
              f"{', each from a fresh clone' if args.fresh_clone else ''}", flush=True)
        for i in range(1, args.runs + 1):
            root = fresh_clone(base / f"clone-{i:03d}") if args.fresh_clone else ROOT
            with locked(args.lock) if args.lock else nullcontext(), hogging(cores) if cores else nullcontext():
                row = run_once(args.scenario, base / f"run-{i:03d}", args.timeout, root)
            if args.fresh_clone and not args.keep:
                shutil.rmtree(root, ignore_errors=True)
            rows.append(row)
            figures = (f"RTO {_s(row.get('rto_s'))}, RPO {_s(row.get('rpo_s'))}, "
                       f"lost {row.get('writes_lost')} of {row.get('writes_acked')}") if row["verdict"] else ""
            print(f"{i:3d}  exit {row['exit']}  {str(row['verdict']).upper():8s} {row['wall_s']:7.1f} s  {figures}",
                  flush=True)
            if row["exit"] != 0:
                for reason in row["reasons"] or [row["stderr"]]:
                    print(f"       reason: {reason}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    passed = sum(r["exit"] == 0 for r in rows)
    missed = sum(r["exit"] == 1 for r in rows)
    aborted = sum(r["exit"] == 3 for r in rows)
    other = len(rows) - passed - missed - aborted
    walls = sorted(r["wall_s"] for r in rows)
    rtos = [r.get("rto_s") for r in rows]
    print("soak: RTO per run: " + ", ".join(_s(r) for r in rtos))
    print(f"soak: {passed} passed, {missed} missed a target, {aborted} aborted, {other} other "
          f"of {len(rows)}; wall time min {walls[0]:.1f} s, median {walls[len(walls) // 2]:.1f} s, "
          f"max {walls[-1]:.1f} s" + (f"; evidence kept in {base}" if args.keep else ""))
    return 1 if aborted or other else 0


def _s(seconds: float | None) -> str:
    return "not measured" if seconds is None else f"{seconds:.3f} s"


if __name__ == "__main__":
    raise SystemExit(main())
