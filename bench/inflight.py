"""Operations in flight when the load stops, over N drills (issue 30: "every operation sent is
accounted for"): per drill, the writes invoked before the load began to stop (load.stopping) and
not answered by then, by how they ended (ok, fail, indeterminate, never answered), and the audit's
counts: writes_indeterminate, writes_unanswered, records_indeterminate, records_unexpected.

    python bench/inflight.py -n 5                         # scenarios/region-loss.yaml, as shipped
    python bench/inflight.py -n 5 --slow-link             # every write after the fault times out
    python bench/inflight.py -n 5 --scenario scenarios/partition.yaml --out /tmp/inflight

`--slow-link` is tests/test_inflight_drill.py's drill: region A's client link delays every byte
1.5 s, never healed, clients time out after 1 s, so the load stops with every user mid-request.
Each drill is `drillkit run` as a subprocess; run it alone on the machine (one drill at a time).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).parent))
from drill_run import out_folder, run  # noqa: E402

from drillkit.evidence import LOAD_STOPPING  # noqa: E402
from drillkit.evidence.history import in_flight  # noqa: E402

COUNTS = ("writes_indeterminate", "writes_unanswered", "records_indeterminate", "records_unexpected", "writes_lost")


def one(scenario: Path, out: Path) -> dict:
    drilled = run(scenario, out)
    m = drilled.summary["measures"]
    stop = next((e for e in drilled.events if e["kind"] == LOAD_STOPPING), None)
    writes = [op for op in in_flight(out, stop["t"]) if op["op"] == "write"] if stop else []
    ended = Counter(op["outcome"] or "never answered" for op in writes)
    return {"exit": drilled.exit, "verdict": drilled.summary["verdict"], "stopping": stop is not None,
            "in_flight_writes": len(writes), "ended": dict(ended), **{k: m.get(k) for k in COUNTS}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="drills to run")
    ap.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "region-loss.yaml")
    ap.add_argument("--slow-link", action="store_true", help="the in-flight test's drill instead")
    ap.add_argument("--out", type=Path, help="keep the evidence here (default: a temporary folder, removed)")
    args = ap.parse_args()
    folder = out_folder(args.out, "drillkit-inflight-")
    scenario = args.scenario
    if args.slow_link:
        from support.inflight import slow_link_scenario

        scenario = slow_link_scenario(folder)
    rows = []
    try:
        for i in range(args.n):
            row = one(scenario, folder / f"drill-{i + 1}")
            rows.append(row)
            print(json.dumps({"drill": i + 1, **row}), flush=True)
    finally:
        if args.out is None:
            shutil.rmtree(folder, ignore_errors=True)
    unexpected = sum(r["records_unexpected"] or 0 for r in rows)
    print(f"{len(rows)} drills of {scenario.name}: {sum(r['in_flight_writes'] for r in rows)} writes in flight "
          f"at the load's stop, {sum(r['writes_indeterminate'] or 0 for r in rows)} indeterminate writes, "
          f"{sum(r['records_indeterminate'] or 0 for r in rows)} records indeterminate, {unexpected} unexpected")
    return 0 if unexpected == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
