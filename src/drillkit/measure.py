"""RTO, RPO and the data audit, computed from an evidence folder alone.

A pure function of the files in the folder (docs/measurements.md), so that an
archived drill re-derives the same figures months later. Vectorised over numpy/pandas: a
million-op history is measured in seconds.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from operator import itemgetter, methodcaller
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .durations import parse_duration
from .errors import EvidenceError
from .evidence import (
    ALARM_STATE,
    EVENTS,
    FINAL_STATE,
    JOURNAL,
    LAG,
    OBJECT_KEY_PREFIX,
    READ_OPS,
    REQUESTS_DIR,
    SCENARIO,
    SUMMARY,
    WRITE_OPS,
    read_events,
)

AUDIT = "audit.json"
EVIDENCE_FORMAT = 1
DEFAULT_STABLE = 2.0
FIRST_KEYS = 10
PARALLEL_MIN_BYTES = 16 << 20
BASE_CLASSES = ("write", "read")

# target key -> (measure, kind, label); kind says how it is compared and shown
TARGETS: dict[str, tuple[str, str, str]] = {
    "rto": ("rto_s", "max_duration", "RTO"),
    "rto_write": ("rto_write_s", "max_duration", "write RTO"),
    "rto_read": ("rto_read_s", "max_duration", "read RTO"),
    "rpo": ("rpo_s", "max_duration", "RPO"),
    "max_lost_writes": ("writes_lost", "max_count", "lost writes"),
    "max_corrupt": ("records_corrupt", "max_count", "corrupt records"),
    "max_unexpected": ("records_unexpected", "max_count", "unexpected records"),
    "min_availability": ("availability", "min_ratio", "availability"),
    "max_replication_lag": ("max_replication_lag_s", "max_duration", "max replication lag"),
}


class Summary(dict):
    """The summary.json dict; `.audit` carries the full key lists and series for audit.json."""

    audit: dict[str, Any] | None = None


def measure(folder: Path | str) -> Summary:
    """Every measure, check and the verdict of the drill in `folder`, from its files only."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EvidenceError(f"{folder}: no such folder")
    if not (folder / REQUESTS_DIR).is_dir() and not (folder / EVENTS).exists():
        raise EvidenceError(f"{folder}: not a drill evidence folder (no {REQUESTS_DIR}/ or {EVENTS})")
    notes: list[str] = []
    scenario = _read_scenario(folder, notes)
    stable = _duration(scenario.get("stable", DEFAULT_STABLE), folder / SCENARIO, "stable")
    targets = scenario.get("targets") or {}
    try:
        events = read_events(folder)
    except (ValueError, KeyError, TypeError) as exc:
        raise EvidenceError(f"{folder / EVENTS}: malformed event log ({exc})") from exc
    aborted = [e for e in events if e.get("kind") == "drill.aborted"]
    t_fault = next((float(e["t"]) for e in events
                    if e.get("kind") == "fault.injected" and not e.get("precondition")), None)
    if t_fault is None:
        notes.append("no fault.injected event: RTO and RPO are 0")

    ops = _read_ops(folder)
    final = _read_final_state(folder, required=not aborted)
    if final is None:
        notes.append(f"not audited: no {FINAL_STATE} (the drill was aborted before or during the data audit), "
                     "so the data measures are unknown")

    m: dict[str, Any] = {}
    m.update(_rto(ops, t_fault, stable))
    audit_measures, audit = _audit(ops, final, t_fault)
    m.update(audit_measures)
    m["audited"] = final is not None
    m.update(_counts(ops))
    avail, series = _availability(ops)
    m["availability"] = avail
    audit["availability_per_second"] = series
    m.update(_lag(folder))
    m["alarms_raised"] = _alarms_raised(events, t_fault)
    m["t_fault"] = _r(t_fault)
    t_start = next((e["t"] for e in events if e.get("kind") == "drill.start"), None)
    t_end = next((e["t"] for e in reversed(events) if e.get("kind") == "drill.end"), None)
    m["t_start"] = _r(t_start if t_start is not None else (ops["t0"].min() if ops["t0"].size else None))
    m["t_end"] = _r(t_end if t_end is not None else (ops["t1"].max() if ops["t1"].size else None))

    checks = _checks(m, targets, folder)
    reasons: list[str] = []
    if aborted:
        verdict = "aborted"
        reasons += [f"drill aborted: {e.get('reason', 'no reason recorded')}" for e in aborted]
    else:
        reasons += _journal_reasons(folder, notes)
        reasons += [c["message"] for c in checks if not c["passed"]]
        verdict = "fail" if reasons else "pass"

    out = Summary(
        scenario=scenario.get("name"),
        verdict=verdict,
        reasons=reasons,
        measures=m,
        targets=targets,
        checks=checks,
        notes=notes,
        measured_at=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        evidence_format=EVIDENCE_FORMAT,
    )
    out.audit = audit
    return out


def write_summary(folder: Path | str, summary: dict) -> Path:
    """Write summary.json and, beside it, audit.json with every key list and the per-second series."""
    folder = Path(folder)
    audit = getattr(summary, "audit", None)
    if audit is None:
        audit = measure(folder).audit
    (folder / AUDIT).write_text(json.dumps(audit, indent=None, separators=(",", ":")) + "\n", encoding="utf-8")
    path = folder / SUMMARY
    path.write_text(json.dumps(dict(summary), indent=2) + "\n", encoding="utf-8")
    return path


# ---------------------------------------------------------------- reading the evidence


def _read_scenario(folder: Path, notes: list[str]) -> dict[str, Any]:
    path = folder / SCENARIO
    if not path.exists():
        notes.append(f"no {SCENARIO}: default stable window {DEFAULT_STABLE:g} s and no targets")
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise EvidenceError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise EvidenceError(f"{path}: not a scenario mapping")
    if not isinstance(data.get("targets") or {}, dict):
        raise EvidenceError(f"{path}: targets: must be a mapping")
    return data


def _duration(value: Any, path: Path, field: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise EvidenceError(f"{path}: {field}: {exc}") from exc


def _json_records(path: Path, start: int = 0, stop: int | None = None) -> list[Any]:
    """All lines of a JSONL file (or a byte range of whole lines) in one json.loads call.

    Newlines become commas in place: one C-level parse instead of a Python call per line.
    """
    stop = path.stat().st_size if stop is None else stop
    size = stop - start
    buf = bytearray(size + 2)
    with open(path, "rb") as fh:
        fh.seek(start)
        fh.readinto(memoryview(buf)[1 : size + 1])
    end = size + 1
    while end > 1 and buf[end - 1] in b" \t\r\n":
        end -= 1
    chars = np.frombuffer(buf, np.uint8)[:end]
    newlines = np.count_nonzero(chars == 10)
    chars[chars == 10] = 44
    del chars
    buf[0], buf[end] = ord("["), ord("]")
    buf[end + 1 :] = b" " * (len(buf) - end - 1)
    try:
        recs = json.loads(buf)
        if len(recs) == (newlines + 1 if end > 1 else 0):
            return recs
    except ValueError:
        pass
    with open(path, "rb") as fh:
        fh.seek(start)
        return [json.loads(line) for line in fh.read(size).splitlines() if line.strip()]


OP_FIELDS = {"t0": "number", "t1": "number", "op": "string", "key": "string", "ok": "bool", "checksum": "string?"}
FINAL_FIELDS = {"key": "string", "checksum": "string?"}
_INFERRED = {"number": ("floating", "integer", "mixed-integer-float"), "string": ("string",), "bool": ("boolean",)}
_SAYS = {"number": "a number", "string": "a string", "bool": "true or false"}


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _problem(rec: Any, fields: dict[str, str]) -> str | None:
    if not isinstance(rec, dict):
        return "not a JSON object"
    for f, kind in fields.items():
        v, base = rec.get(f), kind.rstrip("?")
        if v is None and kind.endswith("?"):
            continue
        if not {"number": _is_num(v), "bool": isinstance(v, bool)}.get(base, isinstance(v, str)):
            return f"{f}: must be {_SAYS[base]}" + (" or null" if kind.endswith("?") else "")
    return None


def _bad_line(path: Path, fields: dict[str, str]) -> EvidenceError:
    """Locate the first bad record; runs only once the whole-array checks have failed."""
    for n, line in enumerate(path.read_bytes().splitlines(), 1):
        if line.strip():
            try:
                problem = _problem(json.loads(line), fields)
            except ValueError as exc:
                problem = f"not JSON ({exc})"
            if problem:
                return EvidenceError(f"{path}: line {n}: {problem}")
    return EvidenceError(f"{path}: malformed records")


def _columns(path: Path, fields: dict[str, str], start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
    """Typed columns of a JSONL file, validated whole-array at a time rather than line by line."""
    out = {}
    try:
        recs = _json_records(path, start, stop)
        for f, kind in fields.items():
            base, nullable = kind.rstrip("?"), kind.endswith("?")
            col = np.array(list(map(methodcaller("get", f) if nullable else itemgetter(f), recs)), dtype=object)
            if pd.api.types.infer_dtype(col, skipna=nullable) not in _INFERRED[base] + ("empty",):
                raise TypeError(f)
            out[f] = col.astype({"number": np.float64, "bool": bool}[base]) if base != "string" else col
            if base == "number" and np.isnan(out[f]).any():
                raise ValueError(f)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _bad_line(path, fields) from None
    return out


def _read_ops(folder: Path) -> dict[str, Any]:
    """Every client op from every worker's file as numpy columns; `op` becomes codes into `classes`.

    Plain arrays rather than a DataFrame: pandas 3 would copy every string column into its own
    string dtype, which costs more than all the measuring.
    """
    files = sorted((folder / REQUESTS_DIR).glob("*.jsonl")) if (folder / REQUESTS_DIR).is_dir() else []
    parts = _parallel_parts(files) or [_op_part((p, 0, None)) for p in files]
    classes = sorted({c for p in parts for c in p["classes"]})
    empty = {"t0": np.empty(0), "t1": np.empty(0), "ok": np.empty(0, bool), "op": np.empty(0, np.int64)}
    for p in parts:
        p["op"] = np.array([classes.index(c) for c in p["classes"]], np.int64)[p["op"]]
    ops = {f: np.concatenate([p[f] for p in parts]) if parts else empty.get(f, np.empty(0, object)) for f in OP_FIELDS}
    ops["classes"] = classes
    return ops


def _op_part(chunk: tuple[Path, int, int | None]) -> dict[str, Any]:
    """One file's (or range's) ops; keys and checksums kept for writes only, the audit's sole use."""
    part = _columns(chunk[0], OP_FIELDS, chunk[1], chunk[2])
    part["op"], classes = pd.factorize(part["op"])
    part["classes"] = [str(c) for c in classes]
    other = ~_is_op(part, *WRITE_OPS)
    part["key"][other] = None
    part["checksum"][other] = None
    return part


def _parallel_parts(files: list[Path]) -> list[dict[str, Any]] | None:
    """Parse big histories on every CPU: JSON decoding is most of measure's time.

    Only by fork (the children need nothing but the bytes) and only from a single-threaded
    process; any failure, a bad record included, returns None and the serial pass that follows
    gives the exact file-and-line message.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    sizes = [f.stat().st_size for f in files]
    if (cpus < 2 or sum(sizes) < PARALLEL_MIN_BYTES or threading.active_count() > 1
            or "fork" not in multiprocessing.get_all_start_methods()):
        return None
    target = sum(sizes) // cpus + 1
    chunks = []
    for path, size in zip(files, sizes):
        start = 0
        with open(path, "rb") as fh:
            while size - start > target * 1.25:
                fh.seek(start + target)
                fh.readline()
                chunks.append((path, start, fh.tell()))
                start = fh.tell()
        if start < size:
            chunks.append((path, start, size))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with ProcessPoolExecutor(min(cpus, len(chunks)), mp_context=multiprocessing.get_context("fork")) as pool:
                return list(pool.map(_op_part, chunks))
    except Exception:
        return None


def _is_op(ops: dict[str, Any], *classes: str) -> np.ndarray:
    codes = [ops["classes"].index(c) for c in classes if c in ops["classes"]]
    return ops["op"] == codes[0] if len(codes) == 1 else np.isin(ops["op"], codes)


def _read_final_state(folder: Path, required: bool) -> dict[str, np.ndarray] | None:
    path = folder / FINAL_STATE
    if not path.exists():
        if required:
            raise EvidenceError(f"{path}: missing (the post-drill audit of the serving region)")
        return None
    return _columns(path, FINAL_FIELDS)


def _journal_reasons(folder: Path, notes: list[str]) -> list[str]:
    path = folder / JOURNAL
    if not path.exists():
        notes.append(f"no {JOURNAL}: the experiment is taken as completed")
        return []
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise EvidenceError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(journal, dict):
        raise EvidenceError(f"{path}: not a Chaos Toolkit journal")
    reasons = []
    if journal.get("status") != "completed":
        reasons.append(f"experiment status is {journal.get('status')!r}, not 'completed'")
    if journal.get("deviated"):
        reasons.append("experiment deviated from its steady-state hypothesis")
    for part, what in (("run", "runbook step"), ("rollbacks", "rollback")):
        for run in journal.get(part) or []:
            reason = _activity_reason(run, what)
            if reason:
                reasons.append(reason)
    return reasons


def _activity_reason(run: Any, what: str) -> str | None:
    """A failed runbook step fails the drill; so does a check in the method whose output misses its
    tolerance (Chaos Toolkit holds only the steady-state probes to their tolerance; drillkit holds
    every probe that states one, when the tolerance is a plain value)."""
    if not isinstance(run, dict) or not isinstance(run.get("activity"), dict):
        return None
    activity = run["activity"]
    name = activity.get("name", "?")
    if run.get("status") == "failed":
        error = run.get("exception") or ""
        error = ("".join(map(str, error)) if isinstance(error, list) else str(error)).strip().splitlines()
        return f"{what} {name!r} failed" + (f": {error[-1][:200]}" if error else "")
    tolerance = activity.get("tolerance")
    if (what == "runbook step" and isinstance(tolerance, (bool, int, float, str))
            and run.get("status") == "succeeded" and run.get("output") != tolerance):
        return f"check {name!r} gave {run.get('output')!r}, its tolerance is {tolerance!r}"
    return None


def _lag(folder: Path) -> dict[str, Any]:
    path = folder / LAG
    out = {"max_replication_lag_s": None, "max_replication_lag_bytes": None,
           "max_object_backlog": None, "max_object_backlog_age_s": None}
    if not path.exists():
        return out
    try:
        lag = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return out
    except (pd.errors.ParserError, ValueError) as exc:
        raise EvidenceError(f"{path}: not a lag CSV ({exc})") from exc
    for col, name in (("replay_lag_s", "max_replication_lag_s"), ("lag_bytes", "max_replication_lag_bytes"),
                      ("object_backlog", "max_object_backlog"), ("object_backlog_age_s", "max_object_backlog_age_s")):
        if col in lag.columns:
            top = pd.to_numeric(lag[col], errors="coerce").max()
            if pd.notna(top):
                out[name] = _r(top) if col.endswith("_s") else int(top)
    return out


# ---------------------------------------------------------------- the measures


def _alarms_raised(events: list[dict[str, Any]], t_fault: float | None) -> list[dict[str, Any]]:
    """Each time a scenario alarm went to ALARM during the drill (a state seen change, or ALARM at
    first sight), at the time its source says it changed, and how long after the fault."""
    out = []
    for e in events:
        if e.get("kind") != ALARM_STATE or e.get("state") != "ALARM" or e.get("previous") == "ALARM":
            continue
        at = float(e["changed_at"])
        out.append({"alarm": e.get("alarm"), "region": e.get("region"), "raised_at": _r(at),
                    "after_fault_s": None if t_fault is None else _r(at - t_fault),
                    "stops_drill": bool(e.get("stops_drill"))})
    return out


def _r(x: Any) -> float | None:
    """Seconds to the microsecond; the clocks say no more."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


def _failure_bursts(t0: np.ndarray, t1: np.ndarray, ok: np.ndarray, t_fault: float | None,
                    stable: float) -> list[dict]:
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


def _rto_class(t1: np.ndarray, ok: np.ndarray, t_fault: float | None, bursts: list[dict]) -> dict:
    """Recovery of one op class: the end of its first failure burst."""
    out = {"rto_s": 0.0, "resolution_s": None, "t_recovered": None, "t_first_failure": None,
           "t_last_failure": None, "failures": sum(b["failures"] for b in bursts), "recovered": True}
    if not bursts:
        return out
    out["t_first_failure"] = _r(t1[~ok & (t1 > t_fault)].min())
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
        resolution_s=_r(r_t1 - before.max()) if before.size else None,
    )
    return out


def _rto(ops: dict[str, Any], t_fault: float | None, stable: float) -> dict[str, Any]:
    t0, t1, ok = ops["t0"], ops["t1"], ops["ok"]
    classes = list(BASE_CLASSES) + sorted(c for c in ops["classes"] if c not in BASE_CLASSES)
    by_op = {}
    outages = []
    for cls in classes:
        sel = _is_op(ops, cls)
        bursts = _failure_bursts(t0[sel], t1[sel], ok[sel], t_fault, stable)
        by_op[cls] = _rto_class(t1[sel], ok[sel], t_fault, bursts)
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


AUDIT_MEASURES = ("rpo_s", "writes_lost", "writes_lost_after_fault", "writes_recovered", "records_unexpected",
                  "records_corrupt", "lost_window", "rpo_by_store")
"""The measures only the data audit (final_state.jsonl) can give: null ("not audited") without it."""


def _audit(ops: dict[str, Any], final: dict[str, np.ndarray] | None, t_fault: float | None) -> tuple[dict, dict]:
    """Jepsen's per-key verdicts: lost, recovered, unexpected, corrupt."""
    names = ("lost", "lost_after_fault", "corrupt", "unexpected", "recovered")
    if final is None:
        m = {k: None for k in AUDIT_MEASURES}
        m.update({f"{n}_keys_first": [] for n in names})
        return m, {f"{n}_keys": None for n in names}

    w = _is_op(ops, *WRITE_OPS)
    nw = int(w.sum())
    keys, key_names = pd.factorize(np.concatenate([ops["key"][w], final["key"]]))
    wk, fk = keys[:nw], keys[nw:]
    wck, fck = ops["checksum"][w], final["checksum"]
    wt0, wt1, wok = ops["t0"][w], ops["t1"][w], ops["ok"][w]
    n = len(key_names)

    present = np.zeros(n, bool)
    present[fk] = True
    final_ck = np.full(n, None, dtype=object)
    final_ck[fk] = fck
    written = np.zeros(n, bool)
    written[wk] = True
    acked = np.zeros(n, bool)
    acked[wk[wok]] = True
    last_write_t1 = np.full(n, -np.inf)
    np.maximum.at(last_write_t1, wk, wt1)

    a_idx = np.flatnonzero(wok)
    a_idx = a_idx[np.lexsort((wt1[a_idx], wk[a_idx]))]
    a_last = a_idx[np.r_[wk[a_idx][1:] != wk[a_idx][:-1], True]] if a_idx.size else a_idx
    last_t0, last_t1, last_ck = np.full(n, np.nan), np.full(n, np.nan), np.full(n, None, dtype=object)
    last_t0[wk[a_last]], last_t1[wk[a_last]], last_ck[wk[a_last]] = wt0[a_last], wt1[a_last], wck[a_last]

    lost = acked & ~present
    recovered = written & ~acked & present
    unexpected = present & ~written
    corrupt = acked & present & pd.notna(last_ck) & (final_ck != last_ck)
    u = np.flatnonzero(~wok & corrupt[wk])
    u = u[pd.notna(wck[u]) & (wck[u] == final_ck[wk[u]]) & (wt1[u] > last_t0[wk[u]])]
    corrupt[wk[u]] = False
    lost_after = lost & (last_t1 > t_fault) if t_fault is not None else np.zeros(n, bool)

    lost_t1 = wt1[wok & lost[wk]]

    def rpo(t1: np.ndarray) -> float:
        early = t1[t1 <= t_fault] if t_fault is not None else t1[:0]
        return _r(t_fault - early.min()) if early.size else 0.0

    is_object = (np.fromiter((str(k).startswith(OBJECT_KEY_PREFIX) for k in key_names), bool, n)
                 if _is_op(ops, "obj_write").any() else np.zeros(n, bool))
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
        return [str(k) for k in key_names[idx]]

    lists = {
        "lost": by_time(lost, last_t1),
        "lost_after_fault": by_time(lost_after, last_t1),
        "corrupt": by_time(corrupt, last_t1),
        "unexpected": by_time(unexpected, None),
        "recovered": by_time(recovered, last_write_t1),
    }
    m = {
        "rpo_s": rpo(lost_t1),
        "rpo_by_store": by_store,
        "writes_lost": int(lost.sum()),
        "writes_lost_after_fault": int(lost_after.sum()),
        "writes_recovered": int(recovered.sum()),
        "records_unexpected": int(unexpected.sum()),
        "records_corrupt": int(corrupt.sum()),
        "lost_window": [_r(lost_t1.min()), _r(lost_t1.max())] if lost_t1.size else None,
    }
    m.update({f"{k}_keys_first": v[:FIRST_KEYS] for k, v in lists.items()})
    return m, {f"{k}_keys": v for k, v in lists.items()}


def _counts(ops: dict[str, Any]) -> dict[str, int]:
    ok = ops["ok"]
    is_w, is_r = _is_op(ops, *WRITE_OPS), _is_op(ops, *READ_OPS)
    return {
        "writes_acked": int((is_w & ok).sum()),
        "writes_failed": int((is_w & ~ok).sum()),
        "reads_ok": int((is_r & ok).sum()),
        "reads_failed": int((is_r & ~ok).sum()),
        "ops_total": int(ok.size),
    }


def _availability(ops: dict[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """Share of ops that succeeded, overall and per second of start time."""
    t0, ok = ops["t0"], ops["ok"]
    if not t0.size:
        return None, {"origin": None, "ok": [], "failed": []}
    origin = math.floor(t0.min())
    sec = np.floor(t0 - origin).astype(np.int64)
    n_ok = np.bincount(sec[ok], minlength=sec.max() + 1)
    n_failed = np.bincount(sec[~ok], minlength=sec.max() + 1)
    return float(ok.mean()), {"origin": origin, "ok": n_ok.tolist(), "failed": n_failed.tolist()}


# ---------------------------------------------------------------- checks


def _checks(m: dict[str, Any], targets: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    """One check per target present, and always `recovered`."""
    checks = []
    for name, (measure_key, kind, label) in TARGETS.items():
        if name not in targets:
            continue
        raw = targets[name]
        try:
            if kind == "max_duration":
                target = parse_duration(raw)
                shown = f"{target:g} s"
            elif kind == "max_count":
                if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
                    raise ValueError(f"{raw!r} is not a count")
                target, shown = raw, str(raw)
            else:
                if isinstance(raw, bool) or not _is_num(raw) or not 0 <= raw <= 1:
                    raise ValueError(f"{raw!r} is not a ratio between 0 and 1")
                target, shown = float(raw), f"{raw * 100:g}%"
        except ValueError as exc:
            raise EvidenceError(f"{folder / SCENARIO}: targets.{name}: {exc}") from exc
        measured = m.get(measure_key)
        if measured is None:
            passed = False
            if name.startswith("rto"):
                unknown = "not recovered"
            elif measure_key in AUDIT_MEASURES and not m.get("audited"):
                unknown = "not audited"
            else:
                unknown = "not measured"
            message = f"{label} {unknown}; target {shown}"
        elif kind == "min_ratio":
            passed = measured >= target
            message = f"{label} {measured * 100:.3f}% {'meets' if passed else 'below'} target {shown}"
        elif kind == "max_count":
            passed = measured <= target
            message = f"{label}: {measured} {'within' if passed else 'exceeds'} limit {shown}"
        else:
            passed = measured <= target
            message = f"{label} {measured:.3f} s {'within' if passed else 'exceeds'} target {shown}"
        checks.append({"name": name, "target": target, "measured": measured, "passed": bool(passed),
                       "message": message})
    stuck = m["not_recovered"]
    checks.append({
        "name": "recovered",
        "target": True,
        "measured": not stuck,
        "passed": not stuck,
        "message": f"not recovered: {', '.join(stuck)} (no recovery held for the stable window before the load ended)"
        if stuck else "every op class recovered",
    })
    return checks


def compare_measures(stored: dict[str, Any], recomputed: dict[str, Any], tolerance: float = 1e-6) -> list[str]:
    """The measures whose stored value differs from the recomputed one, as `name: stored → now`."""
    out = []
    for name in sorted(set(stored) | set(recomputed)):
        a, b = stored.get(name), recomputed.get(name)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            same = abs(a - b) <= tolerance
        else:
            same = a == b
        if not same:
            out.append(f"{name}: {a!r} → {b!r}")
    return out
