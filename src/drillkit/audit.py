"""The post-drill audit: every record the serving region holds, checksummed, into final_state.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

from drillkit.system import System


def write_final_state(system: System, path: Path) -> int:
    count = 0
    with open(path, "w") as fh:
        for key, checksum in system.final_state():
            fh.write(json.dumps({"key": key, "checksum": checksum}) + "\n")
            count += 1
    return count
