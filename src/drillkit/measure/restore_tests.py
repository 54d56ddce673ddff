"""Restore tests: each `restore.tested` event as a measure, the oldest backup and the slowest
restore over them (docs/measurements.md#restore-tests)."""

from __future__ import annotations

from typing import Any

from drillkit.evidence import RESTORE_TESTED

from .read import seconds as _r

FIELDS = ("base_backup", "restore_point", "rows_expected", "rows_restored", "digest_expected", "digest_restored",
          "corrupt_restored", "wal_segments", "torn_down", "error")


def restore_tests(events: list[dict[str, Any]]) -> dict[str, Any]:
    tests = []
    for e in events:
        if e.get("kind") != RESTORE_TESTED:
            continue
        same = e.get("error") is None and e.get("digest_restored") == e.get("digest_expected")
        verified = same and e.get("rows_restored") == e.get("rows_expected") and e.get("corrupt_restored") == 0
        tests.append({**{k: e.get(k) for k in FIELDS}, "t": _r(e["t"]), "point_at": _r(e.get("point_at")),
                      "backup_taken_at": _r(e.get("backup_taken_at")), "backup_age_s": _r(e.get("backup_age_s")),
                      "restore_s": _r(e.get("restore_s")), "writes_held_s": _r(e.get("writes_held_s")),
                      "digest_matches": same, "verified": verified})
    return {
        "restore_tests": tests,
        "backup_age_s": max((t["backup_age_s"] for t in tests), default=None),
        "restore_test_s": max((t["restore_s"] for t in tests), default=None),
        "restores_verified": None if not tests else all(t["verified"] and t["torn_down"] for t in tests),
    }
