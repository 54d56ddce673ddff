"""Render the report of a synthetic 1,000,000-op drill; print the file sizes and render time.

    python bench/bench_report.py [--ops N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from drillkit.report import render_report
from drillkit.report.load import load

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from sample_evidence import make_drill  # noqa: E402  (a test fixture, not shipped)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--duration", type=float, default=120.0, help="drill length in seconds")
    ap.add_argument("--keep", type=Path, help="write the drill here and keep it")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="drillkit-bench-"))
    try:
        folder = base / "drill"
        t = time.perf_counter()
        make_drill(folder, n_ops=args.ops, duration=args.duration, fault_at=args.duration / 3,
                   failing=True)
        made = time.perf_counter() - t
        evidence = sum(p.stat().st_size for p in (folder / "requests").glob("*.jsonl"))
        t = time.perf_counter()
        load(folder)
        loaded = time.perf_counter() - t
        t = time.perf_counter()
        report = render_report(folder)
        rendered = time.perf_counter() - t
        md = folder / "summary.md"
        print(f"ops:            {args.ops:,} over {args.duration:g} s "
              f"({evidence / 2**20:.1f} MiB of requests/*.jsonl, built in {made:.2f} s)")
        print(f"read evidence:  {loaded:.2f} s")
        print(f"render_report:  {rendered:.2f} s (reading included)")
        print(f"report.html:    {report.stat().st_size:,} bytes "
              f"({report.stat().st_size / 2**20:.2f} MiB; limit 3 MiB)")
        print(f"summary.md:     {md.stat().st_size:,} bytes")
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
