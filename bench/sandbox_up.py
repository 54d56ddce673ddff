"""How long the sandbox takes to come up in a drill: the `sandbox_up` stage of N region-loss drills
(`drillkit run` as a subprocess), each figure read from the drill's own `stage.end` event.

    python bench/sandbox_up.py -n 5                                # scenarios/region-loss.yaml
    python bench/sandbox_up.py -n 5 --scenario scenarios/failback.yaml

The first drill on a machine builds the PostgreSQL template (docs/architecture.md, "The PostgreSQL
template"); `--cold` runs every drill with `DRILLKIT_CACHE=off`, each building its own. Run it alone
on the machine (one drill at a time).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from drill_run import ROOT, out_folder, run  # noqa: E402

from drillkit.evidence import STAGE_END  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "region-loss.yaml")
    parser.add_argument("--cold", action="store_true", help="DRILLKIT_CACHE=off: every sandbox builds its template")
    parser.add_argument("--out", type=Path, help="keep the evidence here (default: a temporary folder, removed)")
    args = parser.parse_args()
    if args.cold:
        os.environ["DRILLKIT_CACHE"] = "off"
    folder = out_folder(args.out, "drillkit-bench-up-")
    took = []
    try:
        for i in range(args.n):
            drilled = run(args.scenario, folder / f"drill-{i + 1}")
            up = next(e["took_s"] for e in drilled.events if e["kind"] == STAGE_END and e["stage"].endswith("_up"))
            took.append(up)
            print(f"drill {i + 1}: exit {drilled.exit}, verdict {drilled.summary['verdict']}, sandbox_up {up:.3f} s",
                  flush=True)
    finally:
        if args.out is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"sandbox_up over {len(took)} drills: median {statistics.median(took):.3f} s, "
          f"min {min(took):.3f} s, max {max(took):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
