"""The external-target drill of tests/test_external.py, N times, with its figures against the ground truth.

    .venv/bin/python bench/external_drill.py -n 5

Per run: the writes the crashed primary held unflushed (ground truth) and the writes drillkit counted
lost, and the outage the test created (crash to the lb's switch) next to drillkit's measured RTO.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.kvsystem import running_kv_system  # noqa: E402
from support.kvsystem import kill_primary, route_to_west, scenario  # noqa: E402


def once() -> dict:
    folder = Path(tempfile.mkdtemp(prefix="drillkit-kvtest-"))
    folder.chmod(0o755)
    try:
        with running_kv_system(folder) as system:
            path = scenario(folder, system, [kill_primary(system), route_to_west(system)])
            out = folder / "evidence"
            done = subprocess.run([sys.executable, "-m", "drillkit.cli", "run", str(path), "--out", str(out), "--quiet"],
                                  cwd=ROOT, capture_output=True, text=True, timeout=300,
                                  env={**os.environ, "KV_AUDIT_DSN": system.dsn})
            truth = json.loads(system.ground_truth.read_text())
            switch = json.loads(system.switch_log.read_text().splitlines()[0])
            measures = json.loads((out / "summary.json").read_text())["measures"]
            lost = sorted(json.loads((out / "audit.json").read_text())["lost_keys"])
            return {"exit": done.returncode, "pending": len(truth["pending"]), "lost": len(lost),
                    "same_keys": lost == truth["pending"], "acked": measures["writes_acked"],
                    "outage_s": round(switch["t"] - truth["t_gate"], 4), "rto_s": measures["rto_s"],
                    "rto_error_ms": round((measures["rto_s"] - (switch["t"] - truth["t_gate"])) * 1000, 1)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3)
    runs = [once() for _ in range(parser.parse_args().n)]
    for run in runs:
        print(json.dumps(run))
    errors = [abs(r["rto_error_ms"]) for r in runs]
    print(f"{sum(r['same_keys'] for r in runs)}/{len(runs)} runs: lost writes = the ground truth, key for key; "
          f"RTO error max {max(errors):.1f} ms")
    return 0 if all(r["same_keys"] and r["exit"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
