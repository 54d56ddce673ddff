"""The DR strategies side by side: one region-loss drill per strategy (and per backup copy delay),
through `drillkit run`, with the figures that should differ between them.

    .venv/bin/python bench/bench_strategies.py [--delays 1,2,4] [--out DIR]

Rows: backup-restore at each copy delay (RPO should follow the delay, plus at most one
archive_timeout of 1 s; the RTO holds the restore), pilot light (the RTO holds the scale-up), the
e-commerce warm standby at reduced capacity (promote, scale to full capacity, DNS), and the
chatbot's two endpoints (a region freeze: the frontend fails over per request, the backend when
config.json is rewritten and each client's copy expires; bench_endpoints.py varies the TTL). Every
figure is read from the drill's summary.json and events.jsonl; nothing is estimated.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from support.scenario_copy import copy_scenario  # noqa: E402  (a test helper, not shipped)

from drill_run import out_folder, run  # noqa: E402


def drill(scenario: Path, out: Path) -> dict:
    done = run(scenario, out)
    summary, m = done.summary, done.summary["measures"]
    restored = next((e for e in done.events if e["kind"] == "db.restored"), {})
    return {"exit": done.exit, "verdict": summary["verdict"], "rto_s": m["rto_s"], "rpo_s": m["rpo_s"],
            "lost": m["writes_lost"], "acked": m["writes_acked"], "availability": m["availability"],
            "phases": {k: v["duration_s"] for k, v in m["phases"].items()
                       if k in ("restore", "promote", "scale-up", "dns", "config.json")},
            "wal_segments": restored.get("wal_segments")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", default="1,2,4", help="backup copy delays, drill seconds")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    base = out_folder(args.out, "bench-strategies-")
    rows = []
    for delay in [float(d) for d in args.delays.split(",")]:
        path = copy_scenario("scenarios/document-processor/backup-restore-region-loss.yaml", base, f"br-{delay:g}",
                             lambda d, delay=delay: d["system"]["backups"].update(copy_delay=f"{delay * 60:g}s"))
        rows.append((f"backup-restore, copy delay {delay:g} s", drill(path, base / f"br-{delay:g}")))
    rows.append(("pilot-light (0 → 2 instances)",
                 drill(ROOT / "scenarios/document-processor/pilot-light-region-loss.yaml", base / "pilot-light")))
    rows.append(("warm-standby at 1/3 capacity (1 → 3)",
                 drill(ROOT / "scenarios/e-commerce/warm-standby-phased-activation.yaml", base / "warm-standby")))
    rows.append(("two endpoints (region freeze, ttl 2 s)",
                 drill(ROOT / "scenarios/chatbot/frontend-and-backend-failover.yaml", base / "two-endpoints")))
    print(f"{'drill':40} {'verdict':7} {'RTO s':>7} {'RPO s':>7} {'lost':>6} {'acked':>6}  phases (s)")
    for name, r in rows:
        phases = ", ".join(f"{k} {v:.3f}" for k, v in r["phases"].items())
        print(f"{name:40} {r['verdict']:7} {r['rto_s']:7.3f} {r['rpo_s']:7.3f} {r['lost']:6d} {r['acked']:6d}  {phases}")
    print(f"evidence under {base}")
    return 0 if all(r["exit"] == 0 for _, r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
