"""How close drillkit.chaos.process.kill_process's recorded instant is to the kill system call.

Each run kills a process tree with kill_process(tree=True) in a child traced by strace and compares
the recorded `t` with strace's own timestamp of the first kill(2) (tests/support/fault_clock.py), and checks
that strace's timestamp lies inside the recorded [t_lo, t_hi]. Victims: a plain process tree the
bench starts (a system drillkit did not start), and with --postmaster the sandbox's region-A
postmaster and its backends, under four writing clients (a sandbox up and down per run).

    .venv/bin/python bench/fault_instant.py --runs 20 [--postmaster]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.fault_clock import kill_postmaster_under_load, kill_traced, start_tree  # noqa: E402


def tree_once():
    parent, _ = start_tree()
    try:
        return kill_traced(parent.pid, pid=parent.pid, tree=True)
    finally:
        parent.kill()
        parent.wait()


def postmaster_once():
    from drillkit.scenario import SandboxSpec
    from drillkit.targets.sandbox.system import Sandbox

    box = Sandbox.up(SandboxSpec.model_validate({"routing": {"policy": "manual"}}))
    try:
        return kill_postmaster_under_load(box)
    finally:
        box.down()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--postmaster", action="store_true", help="the sandbox's postmaster under load")
    args = parser.parse_args()
    once = postmaster_once if args.postmaster else tree_once
    errors, inside = [], 0
    for i in range(args.runs):
        k = once()
        r = k.result
        inside += r["drillkit_fault_t_lo"] <= k.syscall_t <= r["drillkit_fault_t_hi"]
        errors.append(k.error_s)
        print(f"run {i + 1:2d}: {len(r['pids'])} processes, |t - kill(2)| = {k.error_s * 1e3:.3f} ms, "
              f"interval {(r['drillkit_fault_t_hi'] - r['drillkit_fault_t_lo']) * 1e3:.3f} ms, "
              f"kill(2) took {k.syscall_s * 1e3:.3f} ms", flush=True)
    print(f"{'postmaster' if args.postmaster else 'process tree'}: {args.runs} runs, max error "
          f"{max(errors) * 1e3:.3f} ms, median {sorted(errors)[len(errors) // 2] * 1e3:.3f} ms; "
          f"strace's timestamp inside [t_lo, t_hi] in {inside} of {args.runs}; within 5 ms in "
          f"{sum(e < 0.005 for e in errors)} of {args.runs}")
    return 0 if max(errors) < 0.005 and inside == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
