"""The post-drill audit: every record the serving region holds, checksummed, into final_state.jsonl;
under active-active, every standing region's global table into final_table.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

from drillkit.evidence import OBJECT_KEY_PREFIX
from drillkit.targets.capabilities import FinalStateAudit, GlobalTable


def write_final_state(system: FinalStateAudit, path: Path, scope: str = "") -> tuple[int, int]:
    """Write the final state, whole or not at all: an audit that fails half-way leaves no file,
    so the data measures become unknown ("not audited"), never a count of lost writes.

    With a `scope` (the drill's key prefix), only this drill's keys are kept: a system drillkit
    did not build holds other data, which is neither lost nor unexpected (objects' keys are scoped
    the same way under their `obj/`). Returns (kept, outside)."""
    tmp = path.with_name(f".{path.name}.partial")
    count = outside = 0
    try:
        with open(tmp, "w") as fh:
            for key, checksum in system.final_state():
                if not key.removeprefix(OBJECT_KEY_PREFIX).startswith(scope):
                    outside += 1
                    continue
                fh.write(json.dumps({"key": key, "checksum": checksum}) + "\n")
                count += 1
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count, outside


def write_final_table(system: GlobalTable, path: Path) -> None:
    """active-active: wait (as long as the system's replicators may hold a change) until those
    between standing regions have delivered what they hold, then write every standing region's
    table, whole or not at all."""
    status = system.settle_table()
    tables = system.table_final_state()
    doc = {"regions": tables, "replication": [s.as_dict() for s in status]}
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
