"""A copy of a shipped scenario written elsewhere: its file paths made absolute, a change applied.
Used by the tests and the benchmarks (not shipped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parents[2]


def copy_scenario(shipped: str | Path, folder: Path, name: str,
                  change: Callable[[dict[str, Any]], None] = lambda doc: None) -> Path:
    """`shipped` (relative to the repository, or absolute) as `folder/<name>.yaml`, with `change`
    applied to its document after the experiment, locustfile and workload paths were made absolute."""
    src = ROOT / shipped
    doc = yaml.safe_load(src.read_text())
    doc["experiment"] = str((src.parent / doc["experiment"]).resolve())
    for key in ("locustfile", "workload"):
        if (doc.get("load") or {}).get(key):
            doc["load"][key] = str((src.parent / doc["load"][key]).resolve())
    change(doc)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
