"""The chatbot's two endpoints (seed 003) at several config.json cache TTLs: one drill per TTL
through `drillkit run`, showing that the frontend's RTO does not depend on it and the backend's
follows the operator's switch plus the TTL.

    .venv/bin/python bench/bench_endpoints.py [--ttls 1,2,4] [--out DIR]

Per drill: the frontend (page) RTO and the slowest page after the freeze (the origin timeout it
waited at region A first), the moment the runbook rewrote config.json after the fault, the
backend's write RTO, and the last client back (`rto_last_client_s`: each client is back at its
first success after its own last failure; docs/measurements.md). Every
figure is read from the drill's summary.json, events.jsonl and requests/; nothing is estimated.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from support.scenario_copy import copy_scenario  # noqa: E402  (a test helper, not shipped)

from drill_run import out_folder, run  # noqa: E402

SHIPPED = "scenarios/chatbot/frontend-and-backend-failover.yaml"


def drill(scenario: Path, out: Path) -> dict:
    done = run(scenario, out)
    summary, events, ops = done.summary, done.events, done.ops
    m = summary["measures"]
    t_fault = m["t_fault"]
    switch = next(e["t"] for e in events if e["kind"] == "routing.switch" and e.get("policy") == "config-json")
    pages = [op["t1"] - op["t0"] for op in ops if op["op"] == "page" and op["t0"] > t_fault]
    return {"exit": done.exit, "verdict": summary["verdict"],
            "page_rto_s": m["rto_by_op"]["page"]["rto_s"], "slowest_page_s": max(pages),
            "switch_s": switch - t_fault, "rto_last_client_s": m["rto_last_client_s"],
            "rto_write_s": m["rto_write_s"], "clients_failed": m["clients_failed"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ttls", default="1,2,4", help="config.json cache TTLs, drill seconds")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    base = out_folder(args.out, "bench-endpoints-")
    rows = []
    for ttl in [float(t) for t in args.ttls.split(",")]:
        path = copy_scenario(SHIPPED, base, f"ttl-{ttl:g}",
                             lambda d, ttl=ttl: d["system"]["routing"].update(ttl=f"{ttl:g}s"))
        rows.append((ttl, drill(path, base / f"ttl-{ttl:g}")))
    print(f"{'ttl s':>5} {'verdict':7} {'page RTO':>8} {'slowest page':>12} {'switch':>7} {'write RTO':>9} "
          f"{'last client back':>16}  (seconds after the fault)")
    for ttl, r in rows:
        print(f"{ttl:5g} {r['verdict']:7} {r['page_rto_s']:8.3f} {r['slowest_page_s']:12.3f} {r['switch_s']:7.3f} "
              f"{r['rto_write_s']:9.3f} {r['rto_last_client_s']:16.3f}  ({r['clients_failed']} clients failed)")
    print(f"evidence under {base}")
    return 0 if all(r["exit"] == 0 for _, r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
