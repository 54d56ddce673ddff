"""Distributed load: each Locust worker's part, from the master's events (docs/measurements.md).

A worker that went silent while the load ran (`load.worker_lost`) is named with when it was last
heard from and how many operations it had shipped by then: the drill is measured from what was
recorded, and the report says whose operations stop where.
"""

from __future__ import annotations

from typing import Any

from drillkit.evidence import LOAD_WORKER_DONE, LOAD_WORKER_JOINED, LOAD_WORKER_LOST

from .read import seconds


def load_workers(events: list[dict[str, Any]]) -> dict[str, Any]:
    """`load_workers`: every worker that joined, with its host, its ops, and its end (done, or
    lost: `lost_at` the last time it was heard from); `load_workers_lost`: the lost ones' names.
    Both empty for a drill whose load ran in one process."""
    workers: dict[str, dict[str, Any]] = {}
    for e in events:
        kind, name = e.get("kind"), str(e.get("worker"))
        if kind == LOAD_WORKER_JOINED:
            workers.setdefault(name, {"worker": name, "host": e.get("host"), "joined": seconds(e["t"]),
                                      "ops": 0, "end": "running", "lost_at": None})
        elif kind in (LOAD_WORKER_DONE, LOAD_WORKER_LOST) and name in workers:
            w = workers[name]
            w["ops"] = int(e.get("ops") or 0)
            if kind == LOAD_WORKER_LOST:
                w.update(end="lost", lost_at=seconds(e.get("last_seen")))
            elif w["end"] != "lost":
                w["end"] = "done"
    listed = sorted(workers.values(), key=lambda w: w["worker"])
    return {"load_workers": listed, "load_workers_lost": [w["worker"] for w in listed if w["end"] == "lost"]}
