"""Benchmark: measure a synthetic 1,000,000-op drill end to end, and check its known answers.

    /tmp/dkvenv/bin/python bench/bench_measure.py [--ops 1000000] [--users 20] [--files 2] [--repeat 3]

The history is built so that every answer is known by construction: 20 users run back-to-back
ops for 60 s (half writes of unique keys, half reads) spread over two worker files; the fault is
injected at 30 s; the old primary keeps acknowledging writes for 0.1 s (split brain: lost, after
the fault); every op started in the following 3 s fails; writes acknowledged in the 0.5 s before
the fault never reached the standby (lost, they make the RPO); a few unacknowledged writes landed.
Only summarize() + write_summary() are timed; the best of --repeat runs is reported, since other
work on a shared machine only ever adds time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from drillkit.judge import summarize, write_summary

T_BASE = 1_700_000_000.0
DURATION = 60.0
FAULT_AT = 30.0
SPLIT_BRAIN = 0.1
OUTAGE = 3.0
REPLICATION_LAG = 0.5


def build(folder: Path, n_ops: int, users: int, files: int) -> dict:
    """Write the evidence folder; return the answers summarize() must find."""
    per_user = n_ops // users
    step = DURATION / per_user
    k = np.arange(per_user)
    t_fault = T_BASE + FAULT_AT
    down_from, down_to = t_fault + SPLIT_BRAIN, t_fault + SPLIT_BRAIN + OUTAGE
    final, expect_lost, lost_before_t1, lost_after = [], 0, [], 0
    first_ok_after = {"write": np.inf, "read": np.inf}
    (folder / "requests").mkdir(parents=True)
    outs = [open(folder / "requests" / f"worker-{i}.jsonl", "w") for i in range(files)]
    for u in range(users):
        t0 = T_BASE + k * step + u * step / users
        t1 = t0 + step * 0.8
        is_write = (k % 2) == 0
        ok = ~((t0 >= down_from) & (t0 < down_to))
        keys = [f"u{u:02d}-{i:07d}" for i in range(per_user)]
        out = outs[u % files]
        t0l, t1l, lines = t0.tolist(), t1.tolist(), []
        for i in range(per_user):
            key = keys[i if is_write[i] else max(i - 1, 0)]
            ck = hashlib.sha256(key.encode()).hexdigest()
            op = "write" if is_write[i] else "read"
            good = bool(ok[i])
            lines.append(
                f'{{"t0": {t0l[i]!r}, "t1": {t1l[i]!r}, "op": "{op}", "key": "{key}", "ok": {"true" if good else "false"}, '
                f'"status": {200 if good else 503}, "region": "{"a" if t0[i] < t_fault else "b"}", '
                f'"checksum": "{ck}", "error": {"null" if good else chr(34) + "503" + chr(34)}}}\n'
            )
            if is_write[i]:
                lost = good and t_fault - REPLICATION_LAG <= t1[i] < down_from
                if lost:
                    expect_lost += 1
                    if t1[i] <= t_fault:
                        lost_before_t1.append(t1[i])
                    else:
                        lost_after += 1
                elif good or i % 1000 == 0:
                    final.append(f'{{"key": "{key}", "checksum": "{ck}"}}\n')
            if good and t0[i] >= down_to:
                first_ok_after[op] = min(first_ok_after[op], t1[i])
        out.writelines(lines)
    for out in outs:
        out.close()
    (folder / "final_state.jsonl").write_text("".join(final))
    events = [
        {"t": T_BASE - 1, "kind": "drill.start"},
        {"t": t_fault, "kind": "fault.injected", "fault": "region-loss"},
        {"t": T_BASE + DURATION + 1, "kind": "drill.end"},
    ]
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (folder / "lag.csv").write_text("t,region,replay_lag_s,lag_bytes\n" f"{T_BASE},b,0.2,100\n{t_fault},b,0.5,4096\n")
    (folder / "scenario.yaml").write_text("name: bench\nstable: 2s\ntargets: {rto: 10s, rpo: 2s, max_corrupt: 0}\n")
    (folder / "journal.json").write_text(json.dumps({"status": "completed", "deviated": False}))
    rto = max(first_ok_after.values()) - t_fault
    return {
        "ops_total": per_user * users,
        "rto_s": round(rto, 6),
        "writes_lost": expect_lost,
        "writes_lost_after_fault": lost_after,
        "rpo_s": round(t_fault - min(lost_before_t1), 6),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--files", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="runs of measure; the best is the figure")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="drillkit-bench-") as tmp:
        folder = Path(tmp) / "drill"
        t = time.perf_counter()
        expect = build(folder, args.ops, args.users, args.files)
        size = sum(p.stat().st_size for p in (folder / "requests").iterdir())
        print(f"built {expect['ops_total']:,} ops ({size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s")
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            summary = summarize(folder)
            write_summary(folder, summary)
            times.append(time.perf_counter() - t)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"measure + write_summary: {expect['ops_total']:,} ops in {min(times):.2f} s "
              f"(best of {len(times)}: {', '.join(f'{x:.2f}' for x in times)}; load average {load})")
        m = summary["measures"]
        print(f"rto_s={m['rto_s']} rpo_s={m['rpo_s']} writes_lost={m['writes_lost']} "
              f"after_fault={m['writes_lost_after_fault']} recovered={m['writes_recovered']} verdict={summary['verdict']}")
        for name, want in expect.items():
            got = m[name]
            assert abs(got - want) < 1e-6 if isinstance(want, float) else got == want, f"{name}: got {got}, expected {want}"
        assert m["records_corrupt"] == 0 and m["records_unexpected"] == 0
        assert summary["verdict"] == "pass", summary["reasons"]
        print("answers: OK")
        t = time.perf_counter()
        cli = subprocess.run([sys.executable, "-m", "drillkit.cli", "measure", str(folder)], capture_output=True,
                             text=True)
        print(f"`drillkit measure DIR` as a command (import, measure, write, print): "
              f"{time.perf_counter() - t:.2f} s, exit {cli.returncode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
