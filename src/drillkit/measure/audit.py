"""The data audit, in Jepsen's vocabulary: per key, lost, recovered, unexpected, corrupt, and
(a history that records invocations) indeterminate; RPO, overall and per data store (records,
objects)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.compute as pc

from drillkit.evidence import OBJECT_KEY_PREFIX, WRITE_OPS
from drillkit.evidence.history import OUTCOME_CODES, History
from drillkit.evidence.recorder import INDETERMINATE

from .read import seconds as _r

FIRST_KEYS = 10

AUDIT_MEASURES = ("rpo_s", "writes_lost", "writes_lost_after_fault", "writes_recovered", "records_unexpected",
                  "records_corrupt", "lost_window", "rpo_by_store", "writes_lost_around_fault")
"""The measures only the data audit (final_state.jsonl) can give: null ("not audited") without it."""


def _codes(*parts: Any) -> tuple[np.ndarray, Any]:
    """Keys (Arrow chunked arrays, one after the other) as codes in order of first appearance,
    and the distinct keys: one hash pass in Arrow, no Python object per key, no copy."""
    import pyarrow as pa

    enc = pc.dictionary_encode(pa.chunked_array([c for p in parts for c in p.chunks], pa.string()))
    if not enc.num_chunks:
        return np.empty(0, np.int64), pa.array([], pa.string())
    codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in enc.chunks])
    return codes, enc.chunk(0).dictionary


def _class_codes(ops: History, classes: tuple[str, ...]) -> list[int]:
    return [ops.classes.index(c) for c in classes if c in ops.classes]


def indeterminate_counts(ops: History) -> dict[str, int]:
    """A history that records invocations: its writes whose outcome is unknown (`writes_indeterminate`),
    of them those never answered (`writes_unanswered`: in flight at the stop, or their process
    killed). A v1 history gives none (it could not tell)."""
    if not ops.invoked:
        return {}
    codes = _class_codes(ops, WRITE_OPS)
    unanswered = int(np.isin(ops.unanswered_op, codes).sum())
    answered = int((np.isin(ops.op, codes) & (ops.outcome == OUTCOME_CODES[INDETERMINATE])).sum())
    return {"writes_indeterminate": answered + unanswered, "writes_unanswered": unanswered}


def _scoped(keys: Any, scope: str) -> Any:
    """Which keys are the drill's: its key prefix (`scope`), an object's under its `obj/`."""
    return pc.or_(pc.starts_with(keys, scope), pc.starts_with(keys, OBJECT_KEY_PREFIX + scope))


def outside_scope(ops: History, final: dict[str, Any] | None, scope: str) -> tuple[int, int]:
    """How many records of the final state, and how many distinct keys the history wrote, are not
    the drill's: neither is audited (the system's other data; a locustfile naming its own keys)."""
    import pyarrow as pa

    def count(keys: Any) -> int:
        return len(keys) - pc.sum(pc.cast(_scoped(keys, scope), pa.int64())).as_py() if len(keys) else 0

    written = pc.unique(pa.chunked_array(list(ops.write_key.chunks) + list(ops.unanswered_key.chunks
                                                                           if ops.invoked else []), pa.string()))
    return (count(final["key"]) if final is not None else 0), count(written)


COMPARE_ROWS = 1 << 20
"""Checksums compared this many at a time, so that memory holds no copy of them all."""


def _same(a: Any, a_rows: np.ndarray, b: Any, b_rows: np.ndarray) -> np.ndarray:
    """Row by row: a[a_rows] and b[b_rows] both present and equal (-1: a row that is not)."""
    out = np.zeros(a_rows.size, bool)
    for lo in range(0, a_rows.size, COMPARE_ROWS):
        x, y = a_rows[lo: lo + COMPARE_ROWS], b_rows[lo: lo + COMPARE_ROWS]
        ok = (x >= 0) & (y >= 0)
        eq = pc.equal(a.take(x[ok]), b.take(y[ok]))
        out[lo: lo + x.size][ok] = pc.fill_null(eq, False).to_numpy(zero_copy_only=False).astype(bool)
    return out


def audit(ops: History, final: dict[str, Any] | None, t_fault: float | None,
          interval: tuple[float, float] | None = None, scope: str | None = None) -> tuple[dict, dict]:
    """Jepsen's per-key verdicts: lost, recovered, unexpected, corrupt, indeterminate. Keys are
    compared as codes; a checksum only with the one it must match (the key's last acknowledged
    write's). A lost write acknowledged inside the fault's `interval` [t_lo, t_hi] is "around the
    fault": counted apart, neither before nor after it (RPO still takes t_fault as the moment of the
    loss). With a `scope` (the drill's key prefix) only the drill's keys are audited."""
    names = ("lost", "lost_after_fault", "lost_around_fault", "corrupt", "unexpected", "recovered")
    if ops.invoked:
        names += ("indeterminate",)
    if final is None:
        m = {k: None for k in AUDIT_MEASURES}
        if ops.invoked:
            m["records_indeterminate"] = None
        m.update({f"{n}_keys_first": [] for n in names})
        return m, {f"{n}_keys": None for n in names}

    # every write invoked: the answered ones, then those never answered (ending, if ever, after
    # the drill: t1 +inf), indeterminate too
    import pyarrow as pa

    w = ops.is_op(*WRITE_OPS)
    nw = int(w.sum())
    u_t0 = ops.unanswered_t0[np.isin(ops.unanswered_op, _class_codes(ops, WRITE_OPS))] if ops.invoked else np.empty(0)
    nu = u_t0.size
    u_keys = ops.unanswered_key if nu else pa.chunked_array([], pa.string())
    u_cks = ops.unanswered_checksum if nu else pa.chunked_array([], pa.string())
    keys, key_names = _codes(ops.write_key, u_keys, final["key"])
    wk, fk = keys[:nw + nu], keys[nw + nu:]  # views: int32 codes, n < 2**31
    wck = pa.chunked_array(list(ops.write_checksum.chunks) + list(u_cks.chunks), pa.string()) if nu else ops.write_checksum
    fck = final["checksum"]
    wt0, wt1, wok = ops.t0[w], ops.t1[w], ops.ok[w]
    windet = (ops.outcome[w] == OUTCOME_CODES[INDETERMINATE]) if ops.outcome is not None else np.zeros(nw, bool)
    if nu:
        wt0, wt1 = np.r_[wt0, u_t0], np.r_[wt1, np.full(nu, np.inf)]
        wok, windet = np.r_[wok, np.zeros(nu, bool)], np.r_[windet, np.ones(nu, bool)]
    n = len(key_names)

    present = np.zeros(n, bool)
    present[fk] = True
    final_row = np.full(n, -1, np.int32)
    final_row[fk] = np.arange(fk.size, dtype=np.int32)
    written = np.zeros(n, bool)
    written[wk] = True
    acked = np.zeros(n, bool)
    acked[wk[wok]] = True
    last_write_t1 = np.full(n, -np.inf)
    np.maximum.at(last_write_t1, wk, wt1)

    a_idx = np.flatnonzero(wok)
    a_idx = a_idx[np.lexsort((wt1[a_idx], wk[a_idx]))]
    a_last = a_idx[np.r_[wk[a_idx][1:] != wk[a_idx][:-1], True]] if a_idx.size else a_idx
    last_t0, last_t1, last_row = np.full(n, np.nan), np.full(n, np.nan), np.full(n, -1, np.int32)
    last_t0[wk[a_last]], last_t1[wk[a_last]], last_row[wk[a_last]] = wt0[a_last], wt1[a_last], a_last

    if scope:
        mine = _scoped(key_names, scope).to_numpy(zero_copy_only=False)
        present &= mine
        written &= mine
        acked &= mine
    answered = np.zeros(n, bool)  # some write of the key was answered (ok or fail)
    answered[wk[~windet]] = True
    indeterminate = written & ~answered & present  # its only writes were indeterminate: may have committed
    lost = acked & ~present
    recovered = written & ~acked & present & ~indeterminate
    unexpected = present & ~written
    # corrupt: the final checksum differs from the last acknowledged write's (when it had one)
    both = np.flatnonzero(acked & present)
    with_ck = both[pc.is_valid(wck).to_numpy(zero_copy_only=False)[last_row[both]]] if both.size else both
    corrupt = np.zeros(n, bool)
    corrupt[with_ck] = ~_same(wck, last_row[with_ck], fck, final_row[with_ck])
    u = np.flatnonzero(~wok & corrupt[wk])
    u = u[_same(wck, u, fck, final_row[wk[u]]) & (wt1[u] > last_t0[wk[u]])]
    corrupt[wk[u]] = False
    lo, hi = interval if interval is not None else (t_fault, t_fault)
    lost_after = lost & (last_t1 > hi) if t_fault is not None else np.zeros(n, bool)
    lost_around = lost & (last_t1 >= lo) & (last_t1 <= hi) if t_fault is not None else np.zeros(n, bool)

    lost_t1 = wt1[wok & lost[wk]]

    def rpo(t1: np.ndarray) -> float:
        early = t1[t1 <= t_fault] if t_fault is not None else t1[:0]
        return _r(t_fault - early.min()) if early.size else 0.0

    is_object = (pc.starts_with(key_names, OBJECT_KEY_PREFIX).to_numpy(zero_copy_only=False)
                 if "obj_write" in ops.classes else np.zeros(n, bool))
    by_store = {}
    for store, mine in (("records", ~is_object), ("objects", is_object)):
        if not (mine[wk] & wok).any():
            continue
        by_store[store] = {"rpo_s": rpo(wt1[wok & (lost & mine)[wk]]), "writes_acked": int((wok & mine[wk]).sum()),
                           "writes_lost": int((lost & mine).sum())}

    def by_time(mask: np.ndarray, when: np.ndarray | None) -> list[str]:
        idx = np.flatnonzero(mask)
        if when is not None:
            idx = idx[np.argsort(when[idx], kind="stable")]
        return [str(k) for k in key_names.take(idx).to_pylist()]

    lists = {
        "lost": by_time(lost, last_t1),
        "lost_after_fault": by_time(lost_after, last_t1),
        "lost_around_fault": by_time(lost_around, last_t1),
        "corrupt": by_time(corrupt, last_t1),
        "unexpected": by_time(unexpected, None),
        "recovered": by_time(recovered, last_write_t1),
    }
    if ops.invoked:
        lists["indeterminate"] = by_time(indeterminate, None)
    m = {
        "rpo_s": rpo(lost_t1),
        "rpo_by_store": by_store,
        "writes_lost": int(lost.sum()),
        "writes_lost_after_fault": int(lost_after.sum()),
        "writes_lost_around_fault": int(lost_around.sum()),
        "writes_recovered": int(recovered.sum()),
        "records_unexpected": int(unexpected.sum()),
        "records_corrupt": int(corrupt.sum()),
        "lost_window": [_r(lost_t1.min()), _r(lost_t1.max())] if lost_t1.size else None,
    }
    if ops.invoked:
        m["records_indeterminate"] = int(indeterminate.sum())
    m.update({f"{k}_keys_first": v[:FIRST_KEYS] for k, v in lists.items()})
    return m, {f"{k}_keys": v for k, v in lists.items()}

