"""Reading the evidence folder into typed columns, validated a whole array at a time.

Every figure drillkit shows starts here: requests/*.jsonl becomes numpy columns, final_state.jsonl
a key/checksum pair of columns, scenario.yaml the stored mapping. A bad line is reported with its
file and line number.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from operator import itemgetter, methodcaller
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from drillkit.durations import parse_duration
from drillkit.errors import EvidenceError
from drillkit.evidence import FINAL_STATE, FINAL_TABLE, REQUESTS_DIR, SCENARIO, TABLE_REPLICATION, WRITE_OPS

PARALLEL_MIN_BYTES = 16 << 20
DEFAULT_STABLE = 2.0


def seconds(x: Any) -> float | None:
    """Seconds to the microsecond; the clocks say no more."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 6)


def read_scenario(folder: Path, notes: list[str]) -> dict[str, Any]:
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


def duration(value: Any, path: Path, field: str) -> float:
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


OP_FIELDS = {"t0": "number", "t1": "number", "op": "string", "key": "string", "ok": "bool", "checksum": "string?",
             "client": "string?"}
FINAL_FIELDS = {"key": "string", "checksum": "string?"}
ITEM_FIELDS = {"t0": "number", "t1": "number", "op": "string", "key": "string", "ok": "bool", "value": "string",
               "region": "string?", "ts": "number?", "client": "string?"}
APPLIED_FIELDS = {"t": "number", "key": "string", "value": "string", "to": "string", "outcome": "string"}
_INFERRED = {"number": ("floating", "integer", "mixed-integer-float"), "string": ("string",), "bool": ("boolean",)}
_SAYS = {"number": "a number", "string": "a string", "bool": "true or false"}


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _problem(rec: Any, fields: dict[str, str]) -> str | None:
    if not isinstance(rec, dict):
        return "not a JSON object"
    for f, kind in fields.items():
        v, base = rec.get(f), kind.rstrip("?")
        if v is None and kind.endswith("?"):
            continue
        if not {"number": is_num(v), "bool": isinstance(v, bool)}.get(base, isinstance(v, str)):
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


def read_ops(folder: Path) -> dict[str, Any]:
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
    other = ~is_op(part, *WRITE_OPS)
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


def is_op(ops: dict[str, Any], *classes: str) -> np.ndarray:
    codes = [ops["classes"].index(c) for c in classes if c in ops["classes"]]
    return ops["op"] == codes[0] if len(codes) == 1 else np.isin(ops["op"], codes)


def read_final_state(folder: Path, required: bool) -> dict[str, np.ndarray] | None:
    path = folder / FINAL_STATE
    if not path.exists():
        if required:
            raise EvidenceError(f"{path}: missing (the post-drill audit of the serving region)")
        return None
    return _columns(path, FINAL_FIELDS)



# -- active-active: the global table's evidence (drillkit.measure.lww) ------------------------


def read_item_writes(folder: Path) -> list[dict[str, Any]]:
    """Every `item_write` op of every worker's file, with its value and the region's timestamp."""
    files = sorted((folder / REQUESTS_DIR).glob("*.jsonl")) if (folder / REQUESTS_DIR).is_dir() else []
    out = []
    for path in files:
        recs = [r for r in _json_records(path) if isinstance(r, dict) and r.get("op") == "item_write"]
        problem = next((p for p in map(lambda r: _problem(r, ITEM_FIELDS), recs) if p), None)
        if problem:
            raise EvidenceError(f"{path}: an item_write record: {problem}")
        out += recs
    return out


def read_final_table(folder: Path) -> dict[str, dict[str, str]] | None:
    """Each standing region's final table, region → key → value (None: not audited)."""
    path = folder / FINAL_TABLE
    if not path.exists():
        return None
    try:
        regions = json.loads(path.read_text())["regions"]
        return {str(r): {str(k): str(item["value"]) for k, item in table.items()} for r, table in regions.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise EvidenceError(f"{path}: malformed final table ({exc})") from None


def read_table_replication(folder: Path) -> list[dict[str, Any]]:
    path = folder / TABLE_REPLICATION
    if not path.exists():
        return []
    cols = _columns(path, APPLIED_FIELDS)
    return [dict(zip(APPLIED_FIELDS, row)) for row in zip(*(cols[f] for f in APPLIED_FIELDS))]
