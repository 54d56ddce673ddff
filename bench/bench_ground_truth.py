"""Ground-truth accuracy: run each ground-truth drill N times per duration and print the errors.

    python bench/bench_ground_truth.py --runs 5 --durations 1 3

RTO error = measured RTO − outage_seconds; RPO error = measured RPO − replication_cut_seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {"rto": ("scenarios/ground-truth-outage.yaml", "outage_seconds", "rto_s"),
         "rpo": ("scenarios/ground-truth-rpo.yaml", "replication_cut_seconds", "rpo_s")}


def run_once(scenario: str, var: str, seconds: float, out: Path) -> tuple[dict, float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "drillkit.cli", "run", scenario, "--out", str(out), "--quiet",
                           "--var", f"{var}={seconds}"], cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{scenario} {var}={seconds}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return json.loads((out / "summary.json").read_text())["measures"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--durations", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drillkit-bench-") as tmp:
        for case in args.cases:
            scenario, var, measure = CASES[case]
            for seconds in args.durations:
                errors, walls, lost = [], [], []
                for i in range(args.runs):
                    m, wall = run_once(scenario, var, seconds, Path(tmp) / f"{case}-{seconds}-{i}")
                    errors.append(m[measure] - seconds)
                    walls.append(wall)
                    lost.append(m["writes_lost"])
                print(f"{case.upper()} {var}={seconds:g}: errors (ms) "
                      f"{', '.join(f'{e * 1000:+.0f}' for e in errors)}; max |error| "
                      f"{max(abs(e) for e in errors) * 1000:.0f} ms; mean {statistics.mean(errors) * 1000:+.0f} ms; "
                      f"lost writes {lost}; drill wall {statistics.mean(walls):.1f} s", flush=True)


if __name__ == "__main__":
    main()
