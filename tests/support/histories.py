"""Hand-built evidence folders whose answers are known exactly (summarize() and the judge
tested without a drill)."""

from __future__ import annotations

import json
from pathlib import Path


def op(t0, t1, kind="write", key=None, ok=True, ck=None, **extra):
    key = key if key is not None else f"{kind}-{t0}"
    if ck is None and kind == "write":
        ck = f"c-{key}"
    return {"t0": t0, "t1": t1, "op": kind, "key": key, "ok": ok, "status": 200 if ok else 503,
            "region": "a", "checksum": ck, "error": None if ok else "503", **extra}


def W(t0, t1, key=None, ok=True, ck=None):
    return op(t0, t1, "write", key, ok, ck)


def R(t0, t1, key=None, ok=True):
    return op(t0, t1, "read", key or "r", ok, None)


def drill(tmp_path: Path, ops, final=None, *, fault=10.0, stable="2s", targets=None, events=(),
          journal=True, lag=None, files=1) -> Path:
    """An evidence folder. `final=None` means: every acknowledged write is present, intact."""
    folder = tmp_path / "drill"
    (folder / "requests").mkdir(parents=True)
    for i in range(files):
        part = ops[i::files]
        (folder / "requests" / f"w{i}.jsonl").write_text("".join(json.dumps(o) + "\n" for o in part))
    if final is None:
        final = {o["key"]: o["checksum"] for o in sorted(ops, key=lambda o: o["t1"]) if o["op"] == "write" and o["ok"]}
    if final is not False:
        items = final.items() if isinstance(final, dict) else [(k, f"c-{k}") for k in final]
        (folder / "final_state.jsonl").write_text("".join(json.dumps({"key": k, "checksum": c}) + "\n" for k, c in items))
    evs = [{"t": 0.0, "kind": "drill.start"}]
    if fault is not None:
        evs.append({"t": fault, "kind": "fault.injected", "fault": "region-loss"})
    evs += list(events)
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evs))
    scenario = {"name": "t", "stable": stable, "targets": targets or {}}
    (folder / "scenario.yaml").write_text(json.dumps(scenario))
    if journal:
        (folder / "journal.json").write_text(json.dumps({"status": "completed", "deviated": False}))
    if lag is not None:
        (folder / "lag.csv").write_text(lag)
    return folder
