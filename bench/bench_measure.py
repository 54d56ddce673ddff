"""Benchmark: `drillkit measure DIR` on a synthetic drill with known answers, as a command.

    python bench/bench_measure.py [--ops 1000000] [--users 20] [--files 2] [--duration 60] [--repeat 1]
    python bench/bench_measure.py --ops 7200000 --files 4 --duration 3600     # the 1 h game day

The history is built so that every answer is known by construction: `--users` users run
back-to-back ops for `--duration` seconds (half writes of unique keys, half reads of the key just
written) spread over `--files` worker files; the fault is injected half-way; the old primary
keeps acknowledging writes for 0.1 s (split brain: lost, after the fault); every op started in
the following 3 s fails; writes acknowledged in the 0.5 s before the fault never reached the
standby (lost, they make the RPO); one failed write in a hundred landed anyway (recovered).

`drillkit measure DIR` runs as a subprocess (`python -m drillkit.cli measure DIR`); the figures
are its wall time and the peak resident memory of its whole process tree (sampled every 20 ms,
children included, so a parallel parse cannot hide its workers), the best of --repeat runs.
Then every known answer in the summary.json it wrote is checked exactly.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

T_BASE = 1_700_000_000.0
SPLIT_BRAIN = 0.1
OUTAGE = 3.0
REPLICATION_LAG = 0.5
RECOVERED_EVERY = 100
"""One failed write in this many landed anyway: recovered."""


def _digits(n: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers as zero-padded decimal byte strings (dtype S<width>), vectorised."""
    cols = [(n // 10 ** p) % 10 + 48 for p in range(width - 1, -1, -1)]
    return np.ascontiguousarray(np.stack(cols, axis=1).astype(np.uint8)).view(f"S{width}").ravel()


def _text(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype(object) if values.dtype.kind == "S" else values, pa.binary()).cast(pa.string())


def _user(u: int, users: int, per_user: int, step: float, t_fault: float, rng: np.random.Generator) -> dict:
    """One user's ops as columns, and what they contribute to the answers."""
    k = np.arange(per_user)
    t0 = T_BASE + k * step + u * step / users
    t1 = t0 + step * 0.8
    is_write = (k % 2) == 0
    down_from, down_to = t_fault + SPLIT_BRAIN, t_fault + SPLIT_BRAIN + OUTAGE
    ok = ~((t0 >= down_from) & (t0 < down_to))
    seq = np.where(is_write, k, np.maximum(k - 1, 0))
    keys = np.char.add(f"u{u:02d}-".encode(), _digits(seq, 7))
    checksums = np.frombuffer(rng.bytes(32 * per_user).hex().encode(), "S64")[seq]
    lost = is_write & ok & (t1 >= t_fault - REPLICATION_LAG) & (t1 < down_from)
    failed_write = is_write & ~ok
    recovered = failed_write & (np.cumsum(failed_write) % RECOVERED_EVERY == 1)
    in_final = is_write & ((ok & ~lost) | recovered)
    return {"t0": t0, "t1": t1, "is_write": is_write, "ok": ok, "keys": keys, "checksums": checksums,
            "lost": lost, "recovered": recovered, "in_final": in_final, "region": np.where(t0 < t_fault, "a", "b")}


def _lines(u: int, c: dict) -> pa.Array:
    """The JSONL lines of one user's ops (each ending in a newline), assembled in Arrow's C++."""
    op = np.where(c["is_write"], "write", "read")
    ok = np.where(c["ok"], "true", "false")
    status = np.where(c["ok"], "200", "503")
    error = np.where(c["ok"], "null", '"503"')
    parts = ['{"t0": ', pa.array(c["t0"]).cast(pa.string()), ', "t1": ', pa.array(c["t1"]).cast(pa.string()),
             ', "op": "', pa.array(op), '", "key": "', _text(c["keys"]), '", "ok": ', pa.array(ok),
             ', "status": ', pa.array(status), ', "region": "', pa.array(c["region"]), '", "checksum": "',
             _text(c["checksums"]), '", "error": ', pa.array(error), f', "client": "u{u:02d}"}}\n']
    return pc.binary_join_element_wise(*parts, "")


def _write_lines(fh, lines: pa.Array) -> None:
    """A string array whose every element ends in a newline is the file's bytes, as it lies in memory."""
    offsets = np.frombuffer(lines.buffers()[1], np.int32)[lines.offset: lines.offset + len(lines) + 1]
    fh.write(memoryview(lines.buffers()[2])[offsets[0]: offsets[-1]])


def build(folder: Path, n_ops: int, users: int, files: int, duration: float, seed: int = 1) -> dict:
    """Write the evidence folder; return the answers measure must find."""
    per_user = n_ops // users
    step = duration / per_user
    t_fault = T_BASE + duration / 2
    rng = np.random.default_rng(seed)
    (folder / "requests").mkdir(parents=True)
    outs = [open(folder / "requests" / f"worker-{i}.jsonl", "wb") for i in range(files)]
    final = open(folder / "final_state.jsonl", "wb")
    n = {"writes_acked": 0, "writes_failed": 0, "reads_ok": 0, "reads_failed": 0, "writes_lost": 0,
         "writes_lost_after_fault": 0, "writes_recovered": 0}
    lost_before, first_ok_after, client_back = [], {"write": np.inf, "read": np.inf}, []
    down_to = t_fault + SPLIT_BRAIN + OUTAGE
    try:
        for u in range(users):
            c = _user(u, users, per_user, step, t_fault, rng)
            _write_lines(outs[u % files], _lines(u, c))
            fin = c["in_final"]
            _write_lines(final, pc.binary_join_element_wise(
                '{"key": "', _text(c["keys"][fin]), '", "checksum": "', _text(c["checksums"][fin]), '"}\n', ""))
            w, ok = c["is_write"], c["ok"]
            n["writes_acked"] += int((w & ok).sum())
            n["writes_failed"] += int((w & ~ok).sum())
            n["reads_ok"] += int((~w & ok).sum())
            n["reads_failed"] += int((~w & ~ok).sum())
            n["writes_lost"] += int(c["lost"].sum())
            n["writes_lost_after_fault"] += int((c["lost"] & (c["t1"] > t_fault)).sum())
            n["writes_recovered"] += int(c["recovered"].sum())
            lost_t1 = c["t1"][c["lost"] & (c["t1"] <= t_fault)]
            lost_before += [lost_t1.min()] if lost_t1.size else []
            last_failure = c["t0"][~ok & (c["t1"] > t_fault)].max()
            client_back.append(float(c["t1"][ok & (c["t0"] > last_failure)].min()))
            for op, mine in (("write", w), ("read", ~w)):
                back = ok & mine & (c["t0"] >= down_to)
                if back.any():
                    first_ok_after[op] = min(first_ok_after[op], float(c["t1"][back].min()))
    finally:
        for fh in outs + [final]:
            fh.close()
    events = [
        {"t": T_BASE - 1, "kind": "drill.start"},
        {"t": t_fault, "kind": "fault.injected", "fault": "region-loss"},
        {"t": T_BASE + duration + 1, "kind": "drill.end"},
    ]
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (folder / "lag.csv").write_text("t,region,replay_lag_s,lag_bytes\n" f"{T_BASE},b,0.2,100\n{t_fault},b,0.5,4096\n")
    (folder / "scenario.yaml").write_text("name: bench\nstable: 2s\ntargets: {rto: 10s, rpo: 2s, max_corrupt: 0}\n")
    (folder / "journal.json").write_text(json.dumps({"status": "completed", "deviated": False}))
    rto_w, rto_r = (round(first_ok_after[op] - t_fault, 6) for op in ("write", "read"))
    return {
        **n,
        "ops_total": per_user * users,
        "rto_write_s": rto_w,
        "rto_read_s": rto_r,
        "rto_s": max(rto_w, rto_r),
        "rpo_s": round(t_fault - min(lost_before), 6),
        "records_corrupt": 0,
        "records_unexpected": 0,
        "clients": users,
        "rto_last_client_s": round(max(client_back) - t_fault, 6),
        "t_fault": t_fault,
    }


def _tree_rss(pid: int) -> int:
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, subprocess.CompletedProcess]:
    """Wall time and the peak of the summed resident memory of the command's process tree; the
    CPU time it used (user + system, children included) goes to stdout, since on a shared
    machine it says more than the wall time."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.02)
        wall = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(cmd, proc.returncode, out.read().decode(), err.read().decode())
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(f"  {' '.join(cmd[-2:])}: {wall:.2f} s wall, {cpu:.2f} s CPU, peak RSS {peak / 2**30:.2f} GiB, "
          f"load average {os.getloadavg()[0]:.1f}")
    return wall, peak, done


def check(measures: dict, expect: dict) -> list[str]:
    wrong = []
    for name, want in expect.items():
        got = measures.get(name)
        same = got is not None and abs(got - want) < 1e-6 if isinstance(want, float) else got == want
        if not same:
            wrong.append(f"{name}: got {got!r}, expected {want!r}")
    return wrong


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--files", type=int, default=2)
    ap.add_argument("--duration", type=float, default=60.0, help="drill length in seconds")
    ap.add_argument("--repeat", type=int, default=1, help="runs of measure; the best is the figure")
    ap.add_argument("--keep", type=Path, help="build the drill here (or reuse the one there) and keep it")
    args = ap.parse_args(argv)
    base = args.keep or Path(tempfile.mkdtemp(prefix="drillkit-bench-"))
    folder = base / "drill"
    answers = base / "answers.json"
    try:
        if answers.exists():
            expect = json.loads(answers.read_text())
            print(f"reusing {folder}")
        else:
            t = time.perf_counter()
            expect = build(folder, args.ops, args.users, args.files, args.duration)
            answers.write_text(json.dumps(expect))
            size = sum(p.stat().st_size for p in (folder / "requests").iterdir())
            print(f"built {expect['ops_total']:,} ops in {args.files} files ({size / 1e9:.2f} GB) "
                  f"in {time.perf_counter() - t:.1f} s")
        runs = []
        for _ in range(args.repeat):
            wall, peak, done = run_measured([sys.executable, "-m", "drillkit.cli", "measure", str(folder)])
            if done.returncode not in (0, 1):
                print(done.stdout, done.stderr, sep="\n")
                return 1
            runs.append((wall, peak))
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        wall, peak = min(runs)
        print(f"`drillkit measure DIR`: {expect['ops_total']:,} ops in {wall:.2f} s, peak RSS of the process "
              f"tree {peak / 2**30:.2f} GiB (runs: {', '.join(f'{w:.2f} s/{p / 2**30:.2f} GiB' for w, p in runs)}; "
              f"load average {load})")
        summary = json.loads((folder / "summary.json").read_text())
        m = summary["measures"]
        print(f"rto_s={m['rto_s']} rpo_s={m['rpo_s']} writes_lost={m['writes_lost']} "
              f"after_fault={m['writes_lost_after_fault']} recovered={m['writes_recovered']} verdict={summary['verdict']}")
        wrong = check(m, expect)
        if summary["verdict"] != "pass":
            wrong.append(f"verdict {summary['verdict']}: {summary['reasons']}")
        print("answers: OK" if not wrong else "answers WRONG:\n  " + "\n  ".join(wrong))
        return 1 if wrong else 0
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
