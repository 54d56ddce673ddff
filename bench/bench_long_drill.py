"""Benchmark: a long drill stays bounded in memory (the harness, the Locust master and workers).

    .venv/bin/python bench/bench_long_drill.py [--minutes 10] [--workers 2] [--users 20]

scenarios/region-loss.yaml with the load running `--minutes` after the failover (its cooldown),
Locust as a master and `--workers` workers. Every 5 s it reads the resident memory of the drill's
processes (the `drillkit run` harness, the Locust master, each worker) from /proc, and the ops
recorded so far. At the end it prints the verdict, the ops, and per process its RSS at each minute
and its peak (the harness's peak is its measure and report, after the load): a process whose
memory grew with the ops would show it minute by minute. For an hour: --minutes 60.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from support.scenario_copy import ROOT, copy_scenario  # noqa: E402


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def drill_processes(harness: int) -> dict[str, int]:
    """The harness and its Locust processes, by role."""
    out = {"harness": harness}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "locust" in cmd and "-f" in cmd:
            role = "locust-master" if " --master " in f"{cmd} " else ("locust-worker" if "--worker" in cmd else "locust")
            n = sum(1 for k in out if k.startswith(role))
            out[f"{role}-{n}"] = int(entry.name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args()
    seconds = int(args.minutes * 60)
    with tempfile.TemporaryDirectory(prefix="drillkit-bench-long-") as tmp:
        work = Path(tmp)

        def long(doc: dict) -> None:
            doc["load"].update(users=args.users, workers=args.workers, duration=f"{seconds + 60}s",
                               cooldown=f"{seconds}s")
            doc["safeguards"] = {"max_duration": f"{seconds + 300}s"}
            doc["targets"].pop("max_lost_writes", None)

        scenario = copy_scenario("scenarios/region-loss.yaml", work, "long-drill", long)
        out = work / "out"
        proc = subprocess.Popen([sys.executable, "-m", "drillkit.cli", "run", str(scenario), "--out", str(out),
                                 "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        series: dict[str, list[tuple[float, float]]] = {}
        t0 = time.monotonic()
        while proc.poll() is None:
            for role, pid in drill_processes(proc.pid).items():
                mb = rss_mb(pid)
                if mb is not None:
                    series.setdefault(role, []).append((time.monotonic() - t0, mb))
            time.sleep(5)
        stdout, stderr = proc.communicate()
        summary = json.loads((out / "summary.json").read_text())
        ops = summary["measures"]["ops_total"]
        report = (out / "report.html").stat().st_size
        print(json.dumps({
            "exit": proc.returncode, "verdict": summary["verdict"], "minutes": args.minutes, "ops": ops,
            "report_bytes": report,
            "rss_mb_each_minute": {role: [round(next((mb for t, mb in pts if t >= m * 60), pts[-1][1]), 1)
                                          for m in range(1, int(max(t for t, _ in pts) // 60) + 1)]
                                   for role, pts in sorted(series.items())},
            "rss_mb_peak": {role: round(max(mb for _, mb in pts), 1) for role, pts in sorted(series.items())},
        }, indent=2))


if __name__ == "__main__":
    main()
