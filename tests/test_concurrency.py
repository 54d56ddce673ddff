"""Two drills on one machine at once do not collide: ports, sandbox folders and evidence are their own.

The evidence records no ports, so separation is shown where it matters: each drill's audited
database holds only keys its own clients wrote (a shared database or router would mix them), and
neither drill reaped the other's live sandbox as stale.
"""

from __future__ import annotations

import json
import subprocess
import sys

from support.scenario_copy import ROOT


def test_two_drills_at_once_both_pass(tmp_path, no_leftovers):
    outs = [tmp_path / "first", tmp_path / "second"]
    procs = [subprocess.Popen([sys.executable, "-m", "drillkit.cli", "run", "scenarios/ground-truth-outage.yaml",
                               "--out", str(out), "--var", "outage_seconds=0.5", "--quiet"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for out in outs]
    try:
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for proc, out, (stdout, stderr) in zip(procs, outs, results):
        assert proc.returncode == 0, f"{out.name}: {stdout}{stderr}"
        assert "Traceback" not in stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["verdict"] == "pass"
        assert summary["measures"]["writes_lost"] == 0 and summary["measures"]["records_unexpected"] == 0
    starts = [[json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()] for out in outs]
    reaped = [e for events in starts for e in events if e["kind"] == "sandbox.reaped"]
    assert not reaped, f"one drill reaped the other's live sandbox: {reaped}"
    keys = [{json.loads(line)["key"] for f in (out / "requests").glob("*.jsonl")
             for line in f.read_text().splitlines() if line} for out in outs]
    final = [{json.loads(line)["key"] for line in (out / "final_state.jsonl").read_text().splitlines() if line}
             for out in outs]
    assert final[0] and final[1]
    assert final[0] <= keys[0] and final[1] <= keys[1], "a drill's database holds the other drill's writes"
