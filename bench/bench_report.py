"""Render the report of a synthetic drill; print the render time and the file sizes.

    python bench/bench_report.py [--ops 1000000] [--duration 120] [--keep DIR]
    python bench/bench_report.py --game-day [--ops 7200000 --files 4 --duration 3600] [--keep DIR]

By default the drill is tests/support/sample_evidence.py's (a summary with known figures, render_report
in-process). With --game-day it is bench_measure.py's 1-hour folder (built, or reused from
--keep), measured by `drillkit measure DIR` if it has no summary yet, and then reported by
`drillkit report DIR` as a command: its wall time and the peak memory of its process tree.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))


def _sizes(folder: Path) -> None:
    report, md = folder / "report.html", folder / "summary.md"
    print(f"report.html:    {report.stat().st_size:,} bytes "
          f"({report.stat().st_size / 2**20:.2f} MiB; limit 3 MiB)")
    print(f"summary.md:     {md.stat().st_size:,} bytes")


def game_day(base: Path, args: argparse.Namespace) -> int:
    import json

    from bench_measure import build, run_measured

    folder = base / "drill"
    if not (base / "answers.json").exists():
        t = time.perf_counter()
        (base / "answers.json").write_text(json.dumps(build(folder, args.ops, 20, args.files, args.duration)))
        print(f"built {args.ops:,} ops in {time.perf_counter() - t:.1f} s")
    if not (folder / "summary.json").exists():
        subprocess.run([sys.executable, "-m", "drillkit.cli", "measure", str(folder)], check=False,
                       capture_output=True)
    evidence = sum(p.stat().st_size for p in (folder / "requests").glob("*.jsonl"))
    wall, peak, done = run_measured([sys.executable, "-m", "drillkit.cli", "report", str(folder)])
    if done.returncode not in (0, 1):
        print(done.stdout, done.stderr, sep="\n")
        return 1
    html = (folder / "report.html").read_text(encoding="utf-8")
    ops = json.loads((base / "answers.json").read_text())["ops_total"]
    print(f"ops:            {ops:,} ({evidence / 1e9:.2f} GB of requests/*.jsonl)")
    print(f"`drillkit report DIR`: {wall:.2f} s, peak RSS of the process tree {peak / 2**30:.2f} GiB")
    _sizes(folder)
    ok = f"{ops:,} operations" in html and html.count('<svg class="chart"') == 2
    print("charts: OK" if ok else "charts: MISSING")
    return 0 if ok else 1


def sample(base: Path, args: argparse.Namespace) -> int:
    from support.sample_evidence import make_drill

    from drillkit.report import render_report
    from drillkit.report.load import load

    folder = base / "drill"
    t = time.perf_counter()
    make_drill(folder, n_ops=args.ops, duration=args.duration, fault_at=args.duration / 3, failing=True)
    made = time.perf_counter() - t
    evidence = sum(p.stat().st_size for p in (folder / "requests").glob("*.jsonl"))
    t = time.perf_counter()
    load(folder)
    loaded = time.perf_counter() - t
    t = time.perf_counter()
    render_report(folder)
    rendered = time.perf_counter() - t
    print(f"ops:            {args.ops:,} over {args.duration:g} s "
          f"({evidence / 2**20:.1f} MiB of requests/*.jsonl, built in {made:.2f} s)")
    print(f"read evidence:  {loaded:.2f} s")
    print(f"render_report:  {rendered:.2f} s (reading included)")
    _sizes(folder)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--game-day", action="store_true", help="bench_measure.py's folder, as commands")
    ap.add_argument("--ops", type=int)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--duration", type=float, help="drill length in seconds")
    ap.add_argument("--keep", type=Path, help="write the drill here (or reuse it) and keep it")
    args = ap.parse_args()
    args.ops = args.ops or (7_200_000 if args.game_day else 1_000_000)
    args.duration = args.duration or (3600.0 if args.game_day else 120.0)
    base = args.keep or Path(tempfile.mkdtemp(prefix="drillkit-bench-"))
    try:
        return game_day(base, args) if args.game_day else sample(base, args)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
