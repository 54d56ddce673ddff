"""The active-active checker: what a last-writer-wins global table kept, discarded and lost.

A pure function of the recorded item writes, every standing region's final table, the
replicator's log and the regions' outages (docs/measurements.md#active-active). Each write is
identified by its value (every write the workload makes carries a value of its own), so the
final state names the write that won each key. Real time is the harness's clock (t0 = the
request sent, t1 = its answer back).

LWW orders a key's writes by the writing region's timestamp (`ts`, ties to the greater region
name): that is the system's claim of which write came after which, and each write's successor
in that order is the one that overwrote it, whether or not either is still there at the end.
The checker holds that claim against real time. For each acknowledged write w whose value is
in no standing region's final state:

- `lww_anomaly`: its successor was acknowledged strictly before w started (s.t1 < w.t0): the
  system ordered them against real time, which only clock skew makes possible;
- superseded (not counted): its successor knew w: it started after w was acknowledged, in w's
  region or in a region w had reached by then (the replicator's log says when): overwritten in
  the order any register allows;
- `lww_discarded`: its successor was concurrent with w: neither was acknowledged where the other
  was made before the other started (a region cut off, or replication still in flight): LWW may
  throw either away, and threw w away without an error;
- `lost`: it has no successor (it was the key's last write), yet no region holds it.

Where the API returns no timestamp for some acknowledged (or surviving) write of a key, or the
key holds a value no recorded write wrote, the order falls back to
the final state: the key's surviving value takes the successor's place, and an acknowledged write
that started after w was acknowledged supersedes it.

An acknowledged write whose value is in the final state is `resynced` when its region was down,
no other region held it when the outage began, and it is there at the end: it was unavailable
during the outage and came back with the region. A key is `divergent` when the standing regions'
final values for it differ. The RPO is the classic one over the lost writes: the fault time minus
the earliest lost write acknowledged at or before it.
"""

from __future__ import annotations
from drillkit.evidence import FAULT_CLEARED, FAULT_INJECTED

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from . import read

LOST, DISCARDED, ANOMALY, RESYNCED, SUPERSEDED, KEPT = (
    "lost", "lww_discarded", "lww_anomaly", "resynced", "superseded", "kept")
FIRST = 10
"""Findings kept per category in the measures (every one is in the audit file)."""
TIMELINE_S = 0.5
"""A finding's timeline: the key's writes from this long before the pair to this long after it."""
REGION_FAULTS = ("region-loss", "region-freeze")
"""Faults that take a region's table out of reach: an outage from the fault to its clearing."""
ITEM_MEASURES = ("items_acked", "items_lost", "lww_discarded", "lww_anomalies", "items_resynced",
                 "items_superseded", "items_divergent", "rpo_items_s")
"""The measures only the final table gives: null ("not audited") without final_table.json."""


@dataclass(frozen=True)
class ItemWrite:
    """One recorded write of `value` to `key`: sent at t0, answered at t1 (harness clock), `ok`
    when acknowledged, by `region`, which stamped it `ts` (its own clock; None if not returned)."""
    key: str
    value: str
    t0: float
    t1: float
    ok: bool
    region: str | None = None
    ts: float | None = None
    client: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, "t0": self.t0, "t1": self.t1, "ok": self.ok,
                "region": self.region, "ts": self.ts, "client": self.client}


@dataclass(frozen=True)
class Applied:
    """The replicator's log: `value` of `key` reached region `to` at `t` (harness clock), and was
    written there (`applied`) or lost to a newer value it held (`discarded`)."""
    key: str
    value: str
    to: str
    t: float
    outcome: str = "applied"


def check(writes: Iterable[ItemWrite], final: Mapping[str, Mapping[str, str]],
          applied: Iterable[Applied] = (), outages: Mapping[str, tuple[float, float | None]] | None = None,
          t_fault: float | None = None) -> dict[str, Any]:
    """The per-key verdicts and counts. `final`: each standing region's final table (key → value);
    `outages`: region → (went down, came back or None)."""
    by_key: dict[str, list[ItemWrite]] = defaultdict(list)
    for w in writes:
        by_key[w.key].append(w)
    outages = dict(outages or {})
    reached: dict[tuple[str, str], list[tuple[str, float]]] = defaultdict(list)
    received: dict[tuple[str, str, str], float] = {}
    for a in applied:
        if a.outcome == "applied":
            reached[(a.key, a.value)].append((a.to, a.t))
        received[(a.key, a.value, a.to)] = min(a.t, received.get((a.key, a.value, a.to), a.t))
    regions = sorted(final)

    findings: dict[str, list[dict[str, Any]]] = {LOST: [], DISCARDED: [], ANOMALY: [], RESYNCED: []}
    counts = {SUPERSEDED: 0, KEPT: 0}
    acked = 0
    divergent: list[dict[str, Any]] = []
    for key in sorted(set(by_key) | {k for table in final.values() for k in table}):
        ws = sorted(by_key.get(key, []), key=lambda w: (w.t0, w.t1))
        values = {r: final[r].get(key) for r in regions}
        if len(set(values.values())) > 1:
            divergent.append({"key": key, "values": values})
        present = {v for v in values.values() if v is not None}
        by_value = {w.value: w for w in ws}
        winners = [by_value[v] for v in sorted(present) if v in by_value]
        by_ts = (sorted((u for u in ws if u.ts is not None), key=lambda u: (u.ts, u.region or ""))
                 if all(u.ts is not None for u in ws if u.ok or u in winners) and len(winners) == len(present)
                 else None)
        place = {id(u): i for i, u in enumerate(by_ts or [])}
        for w in ws:
            if not w.ok:
                continue
            acked += 1
            if w.value in present:
                if _resynced(w, outages, reached.get((key, w.value), []), regions):
                    findings[RESYNCED].append({"key": key, "write": w.as_dict()})
                else:
                    counts[KEPT] += 1
                continue
            if by_ts is not None:
                i = place[id(w)]
                after = by_ts[i + 1] if i + 1 < len(by_ts) else None
            else:
                later = [u for u in ws if u.ok and u.t0 > w.t1]
                after = later[0] if later else next((v for v in winners if v.t1 < w.t0),
                                                    winners[0] if winners else None)
            verdict = LOST if after is None else _ordered(w, after, received)
            if verdict == SUPERSEDED:
                counts[SUPERSEDED] += 1
            elif verdict == LOST:
                findings[LOST].append({"key": key, "write": w.as_dict()})
            else:
                lo, hi = min(w.t0, after.t0) - TIMELINE_S, max(w.t1, after.t1) + TIMELINE_S
                findings[verdict].append({"key": key, "write": w.as_dict(), "winner": after.as_dict(),
                                          "final": values,
                                          "timeline": [u.as_dict() for u in ws if u.t1 >= lo and u.t0 <= hi]})

    lost_t1 = [f["write"]["t1"] for f in findings[LOST]]
    early = [t for t in lost_t1 if t_fault is not None and t <= t_fault]
    return {
        "items_acked": acked,
        "items_lost": len(findings[LOST]),
        "lww_discarded": len(findings[DISCARDED]),
        "lww_anomalies": len(findings[ANOMALY]),
        "items_resynced": len(findings[RESYNCED]),
        "items_superseded": counts[SUPERSEDED],
        "items_divergent": len(divergent),
        "rpo_items_s": (t_fault - min(early)) if early else (0.0 if t_fault is not None else None),
        "regions_audited": regions,
        "findings": findings,
        "divergent": divergent,
    }


def _ordered(w: ItemWrite, after: ItemWrite, received: Mapping[tuple[str, str, str], float]) -> str:
    """How the write that overwrote w relates to it: an anomaly if acknowledged before w started;
    superseded if it knew w (made after w was acknowledged, in w's region or in one w had reached
    by then); else discarded: it overwrote w without having seen it."""
    if after.t1 < w.t0:
        return ANOMALY
    if after.region == w.region or after.region is None or w.region is None:
        knew = after.t0 > w.t1
    else:
        reached = received.get((w.key, w.value, after.region))
        knew = reached is not None and reached <= after.t0 and after.t0 > w.t1
    return SUPERSEDED if knew else DISCARDED


def _resynced(w: ItemWrite, outages: Mapping[str, tuple[float, float | None]],
              reached: list[tuple[str, float]], regions: list[str]) -> bool:
    """w's region went down after acknowledging it and came back; no other region had w then."""
    if w.region not in outages:
        return False
    down, up = outages[w.region]
    if up is None or w.t1 > down:
        return False
    others = [r for r in regions if r != w.region]
    return bool(others) and not any(to in others and t <= down for to, t in reached)


def outages(events: list[dict[str, Any]]) -> dict[str, tuple[float, float | None]]:
    """Each region's first outage: from its region fault to that fault's clearing (None: never)."""
    out: dict[str, tuple[float, float | None]] = {}
    for e in events:
        if e.get("kind") == FAULT_INJECTED and e.get("fault") in REGION_FAULTS and e.get("region") not in out:
            out[str(e["region"])] = (float(e["t"]), None)
        elif (e.get("kind") == FAULT_CLEARED and e.get("fault") in REGION_FAULTS
              and e.get("region") in out and out[str(e["region"])][1] is None):
            out[str(e["region"])] = (out[str(e["region"])][0], float(e["t"]))
    return out


def measure_items(folder: Path, item_writes: list[dict[str, Any]], events: list[dict[str, Any]],
                  t_fault: float | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The active-active measures of a drill folder and, for audit.json, every finding;
    `item_writes` as the history reader gave them (drillkit.evidence.history)."""
    final = read.read_final_table(folder)
    if final is None:
        return {**{k: None for k in ITEM_MEASURES}, "regions_audited": None, "lww_findings": {},
                "divergent_keys_first": []}, {}
    writes = [ItemWrite(str(r["key"]), str(r["value"]), float(r["t0"]), float(r["t1"]), bool(r["ok"]),
                        r.get("region"), r.get("ts"), r.get("client")) for r in item_writes]
    applied = [Applied(str(r["key"]), str(r["value"]), str(r["to"]), float(r["t"]), str(r["outcome"]))
               for r in read.read_table_replication(folder)]
    result = check(writes, final, applied, outages(events), t_fault)
    findings, divergent = result.pop("findings"), result.pop("divergent")
    result["lww_findings"] = {k: v[:FIRST] for k, v in findings.items()}
    result["divergent_keys_first"] = [d["key"] for d in divergent[:FIRST]]
    return result, {"lww_findings": findings, "divergent": divergent}
