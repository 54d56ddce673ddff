"""RTO per op class, the outages after the fault, availability and op counts (docs/measurements.md)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from drillkit.evidence import READ_OPS, WRITE_OPS
from drillkit.evidence.history import History

from .read import seconds as _r

BASE_CLASSES = ("write", "read")


def _failure_bursts(t0: np.ndarray, t1: np.ndarray, ok: np.ndarray, t_fault: float | None,
                    stable: float) -> list[dict]:
    # t_fault here is the earliest the fault may have taken effect (t_lo): a failure it caused can end
    # before the instant recorded
    """Every failure burst of one op class after the fault, in order: the first is the outage RTO
    times; later ones are a failback's switchover or a flapping recovery. A burst is failures whose
    starts lie within `stable` of each other. It starts at the end of its first failure and ends at
    the end of the first success that started after its last failure, provided some op started
    `stable` after that failure (else the load ended inside it: no end)."""
    fail = ~ok & (t1 > t_fault) if t_fault is not None else np.zeros(len(ok), bool)
    if not fail.any():
        return []
    order = np.argsort(t0[fail], kind="stable")
    ft0, ft1 = t0[fail][order], t1[fail][order]
    cuts = np.flatnonzero(np.diff(ft0) > stable) + 1
    good = np.argsort(t0[ok], kind="stable")
    gt0 = t0[ok][good]
    first_end_after = np.minimum.accumulate(t1[ok][good][::-1])[::-1]
    latest_start = t0.max()
    bursts = []
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, ft0.size]):
        last = float(ft0[hi - 1])
        i = int(np.searchsorted(gt0, last, side="right"))
        end = float(first_end_after[i]) if i < gt0.size and latest_start >= last + stable else None
        bursts.append({"start": float(ft1[lo:hi].min()), "last_failure": last, "end": end,
                       "failures": int(hi - lo)})
    return bursts


def _rto_class(t1: np.ndarray, ok: np.ndarray, t_fault: float | None, bursts: list[dict], since: float | None = None,
               width: float = 0.0) -> dict:
    """Recovery of one op class: the end of its first failure burst, from t_fault; failures count from
    `since` (the fault interval's start), and the resolution includes the interval's `width`."""
    since = t_fault if since is None else since
    out = {"rto_s": 0.0, "resolution_s": None, "t_recovered": None, "t_first_failure": None,
           "t_last_failure": None, "failures": sum(b["failures"] for b in bursts), "recovered": True}
    if not bursts:
        return out
    out["t_first_failure"] = _r(t1[~ok & (t1 > since)].min())
    first = bursts[0]
    out["t_last_failure"] = _r(first["last_failure"])
    if first["end"] is None:
        out.update(rto_s=None, recovered=False)
        return out
    r_t1 = first["end"]
    before = t1[t1 < r_t1]
    out.update(
        rto_s=_r(max(0.0, r_t1 - t_fault)),
        t_recovered=_r(r_t1),
        resolution_s=_r(r_t1 - before.max() + width) if before.size else None,
    )
    return out


def rto(ops: History, t_fault: float | None, stable: float, since: float | None = None,
        width: float = 0.0) -> dict[str, Any]:
    """RTO per op class from t_fault; `since` <= t_fault is the start of the fault's interval (failures
    are the fault's from there) and `width` its length, added to the resolution."""
    t0, t1, ok = ops.t0, ops.t1, ops.ok
    since = t_fault if since is None else since
    classes = list(BASE_CLASSES) + sorted(c for c in ops.classes if c not in BASE_CLASSES)
    by_op = {}
    outages = []
    for cls in classes:
        sel = ops.is_op(cls)
        bursts = _failure_bursts(t0[sel], t1[sel], ok[sel], since, stable)
        by_op[cls] = _rto_class(t1[sel], ok[sel], t_fault, bursts, since, width)
        outages += [{"op": cls, "start": _r(b["start"]), "end": None if b["end"] is None else _r(b["end"]),
                     "duration_s": None if b["end"] is None else _r(max(0.0, b["end"] - b["start"])),
                     "failures": b["failures"]} for b in bursts]
    worst = None if any(v["rto_s"] is None for v in by_op.values()) else max(by_op, key=lambda c: by_op[c]["rto_s"])
    return {
        "rto_s": None if worst is None else by_op[worst]["rto_s"],
        "rto_write_s": by_op["write"]["rto_s"],
        "rto_read_s": by_op["read"]["rto_s"],
        "rto_by_op": by_op,
        "rto_resolution_s": None if worst is None else by_op[worst]["resolution_s"],
        "not_recovered": [c for c, v in by_op.items() if not v["recovered"]],
        "outages": sorted(outages, key=lambda o: (o["start"], o["op"])),
    }



def last_client(ops: History, t_fault: float | None, since: float | None = None) -> dict[str, Any]:
    """When the last client had service back: per client (records that name one), the end of its
    first success that started after its last failure after the fault; the latest of those, from
    the fault. Where clients route on their own (a cached config.json, a resolver's DNS TTL) the
    service is back for some long before it is for all. None when a client never got it back, or
    when no record names its client."""
    named = ops.client >= 0
    out = {"rto_last_client_s": None, "clients": 0, "clients_failed": 0, "clients_not_recovered": []}
    if not named.any():
        return out
    codes, names = ops.client[named], ops.clients
    t0, t1, ok = ops.t0[named], ops.t1[named], ops.ok[named]
    out["clients"] = len(names)
    since = t_fault if since is None else since
    fail = ~ok & (t1 > since) if t_fault is not None else np.zeros(len(ok), bool)
    if not fail.any():
        out["rto_last_client_s"] = 0.0 if t_fault is not None else None
        return out
    last_fail = np.full(len(names), -np.inf)
    np.maximum.at(last_fail, codes[fail], t0[fail])
    failed = np.isfinite(last_fail)
    after = ok & (t0 > last_fail[codes])
    back = np.full(len(names), np.inf)
    np.minimum.at(back, codes[after], t1[after])
    stuck = [str(names[c]) for c in np.flatnonzero(failed & ~np.isfinite(back))]
    out.update(clients_failed=int(failed.sum()), clients_not_recovered=sorted(stuck))
    if not stuck:
        out["rto_last_client_s"] = _r(max(0.0, float(back[failed].max()) - t_fault))
    return out


def counts(ops: History) -> dict[str, int]:
    ok = ops.ok
    is_w, is_r = ops.is_op(*WRITE_OPS), ops.is_op(*READ_OPS)
    return {
        "writes_acked": int((is_w & ok).sum()),
        "writes_failed": int((is_w & ~ok).sum()),
        "reads_ok": int((is_r & ok).sum()),
        "reads_failed": int((is_r & ~ok).sum()),
        "ops_total": int(ok.size),
    }


def availability(ops: History) -> tuple[float | None, dict[str, Any]]:
    """Share of ops that succeeded, overall and per second of start time."""
    t0, ok = ops.t0, ops.ok
    if not t0.size:
        return None, {"origin": None, "ok": [], "failed": []}
    origin = math.floor(t0.min())
    sec = np.floor(t0 - origin).astype(np.int64)
    n_ok = np.bincount(sec[ok], minlength=sec.max() + 1)
    n_failed = np.bincount(sec[~ok], minlength=sec.max() + 1)
    return float(ok.mean()), {"origin": origin, "ok": n_ok.tolist(), "failed": n_failed.tolist()}

