"""The client history, requests/*.jsonl: its one reader (docs/evidence.md#requestsjsonl).

Every worker's file holds one line per operation as that worker saw it. Since the history
records invocations, invocations/<worker>.jsonl holds one more per operation, written before it
was sent (drillkit.evidence.recorder): a completion names its invocation's `id` and its
`outcome`; an invocation that no completion of its worker names was never answered, and is
indeterminate. measure reads it
strictly (`read_history`: a bad record is an error naming its file and line), the report
leniently (`read_timeline`: bad lines are counted and left out of the chart), and the live
safeguards tail it as it grows (`HistoryTail`). Both readers bring each worker's times onto the
harness clock before anything else sees them: a file requests/<worker>.jsonl whose worker has
clock measurements in clocks.jsonl has its t0 and t1 corrected (drillkit.evidence.clocks).

Columns, never a record per op: a 1-hour game day holds millions of operations. Keys and
checksums are kept for writes only (the audit's sole use), as Arrow string arrays; the op class
and the client as integer codes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from drillkit.evidence import INVOCATIONS_DIR, REQUESTS_DIR, WRITE_OPS
from drillkit.evidence.clocks import ClockCorrection, corrections
from drillkit.evidence.columns import Check, Piece, parse, parse_slowly, pieces, problem
from drillkit.evidence.recorder import INDETERMINATE, INVOCATION_FIELDS, OK, OUTCOMES, fields

CHECKED_FIELDS = fields("t0", "t1", "op", "key", "ok", "checksum", "client")
"""What every op's completion must hold (docs/evidence.md); a record that does not is an error."""
INVOKE_FIELDS = {f: INVOCATION_FIELDS[f] for f in ("id", "t0", "op", "key", "checksum")}
"""What an invocation (invocations/<worker>.jsonl) must hold."""
OP_FIELDS = {**CHECKED_FIELDS, **fields("region", "value", "ts", "id", "outcome")}
"""What measure reads of each op: the other fields are null where they have another kind,
except in an item_write."""
OUTCOME_CODES = {OK: 0, "fail": 1, INDETERMINATE: 2}
"""History.outcome's codes; a v1 completion (no outcome) is ok or fail by its `ok`."""
ITEM_FIELDS = fields("t0", "t1", "op", "key", "ok", "value", "region", "ts", "client", required=("value",))
"""What an `item_write` (active-active) must hold besides: the value it wrote."""
ITEM_WRITE = "item_write"
TIMELINE_FIELDS = {**fields("t0", "t1"), "op": "string?", "ok": "bool?"}
"""What the report's timeline reads: when, which class, whether it succeeded (leniently: a
line without a class or an outcome still has its place on the chart)."""
TAIL_BYTES = 8 << 20
"""At most this much of a file is read per look by a tail; the rest waits for the next look."""


def history_files(folder: str | os.PathLike[str]) -> list[Path]:
    where = Path(folder) / REQUESTS_DIR
    return sorted(where.glob("*.jsonl")) if where.is_dir() else []


def invocation_files(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """invocations/<worker>.jsonl by worker (a worker killed before its first answer has no
    requests/ file)."""
    where = Path(folder) / INVOCATIONS_DIR
    return {p.stem: p for p in sorted(where.glob("*.jsonl"))} if where.is_dir() else {}


@dataclass
class ClockOffset:
    """A worker's clock as measured and applied to its file (ClockCorrection, summed up)."""

    worker: str
    offset_s: float
    drift_s: float | None
    uncertainty_s: float

    @classmethod
    def of(cls, c: ClockCorrection) -> "ClockOffset":
        return cls(c.worker, c.offset_s, c.drift_s, c.uncertainty_s)

    def as_dict(self) -> dict[str, Any]:
        return {"worker": self.worker, "offset_s": self.offset_s, "drift_s": self.drift_s,
                "uncertainty_s": self.uncertainty_s}


@dataclass
class History:
    """Every op of every worker's file, as columns in file order (files sorted by name).

    `op` and `client` are codes into `classes` and `clients` (-1: no client named);
    `write_key` and `write_checksum` hold the ops of WRITE_OPS only, in the same order;
    `item_writes` the active-active writes as records; `clocks` the corrections applied."""

    t0: np.ndarray
    t1: np.ndarray
    ok: np.ndarray
    op: np.ndarray
    classes: list[str]
    client: np.ndarray
    clients: list[str]
    write_key: Any = None
    write_checksum: Any = None
    item_writes: list[dict[str, Any]] = field(default_factory=list)
    clocks: list[ClockOffset] = field(default_factory=list)
    unreadable: int = 0
    """Lenient reading only: non-empty lines left out because they could not be read."""
    outcome: np.ndarray | None = None
    """Per completed op, OUTCOME_CODES (strict reading only)."""
    invoked: bool = False
    """The history records invocations (some line is one): indeterminate operations can be told."""
    unanswered_t0: np.ndarray | None = None
    unanswered_op: np.ndarray | None = None
    """Invocations no completion names (in flight at the stop, or their process killed): when they
    started and their class (codes into `classes`); indeterminate, and not in t0/t1 (no end)."""
    unanswered_key: Any = None
    unanswered_checksum: Any = None
    """The unanswered writes' keys and the checksums of the payloads they sent."""

    def __len__(self) -> int:
        return len(self.t0)

    def is_op(self, *classes: str) -> np.ndarray:
        codes = [self.classes.index(c) for c in classes if c in self.classes]
        return self.op == codes[0] if len(codes) == 1 else np.isin(self.op, codes)

    @property
    def clock_uncertainty_s(self) -> float | None:
        """How far any corrected time may be off: the largest uncertainty of a corrected worker."""
        return max((c.uncertainty_s for c in self.clocks), default=None)


class _Codes:
    """Strings to stable integer codes across pieces (first seen, first coded)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._code: dict[str, int] = {}

    def encode(self, column) -> np.ndarray:
        import pyarrow.compute as pc

        enc = pc.dictionary_encode(column).combine_chunks() if hasattr(column, "chunks") else pc.dictionary_encode(column)
        local = np.array([self._of(str(s)) for s in enc.dictionary.to_pylist()] + [-1], np.int32)
        idx = enc.indices.fill_null(len(local) - 1).to_numpy(zero_copy_only=False)
        return local[idx]

    def _of(self, name: str) -> int:
        if name not in self._code:
            self._code[name] = len(self.names)
            self.names.append(name)
        return self._code[name]


def _corrected(table, correction: ClockCorrection | None) -> tuple[np.ndarray, np.ndarray]:
    t0 = table.column("t0").to_numpy()
    t1 = table.column("t1").to_numpy()
    if correction is None:
        return t0, t1
    return correction.apply(t0), correction.apply(t1)


def _op_problem(rec: Any) -> str | None:
    wrong = problem(rec, CHECKED_FIELDS)
    if wrong is None and (rec.get("outcome") is not None or rec.get("id") is not None):
        if rec.get("outcome") not in OUTCOMES:
            return f"outcome: must be one of {', '.join(OUTCOMES)}"
        if (rec["outcome"] == OK) != rec["ok"]:
            return f"outcome: {rec['outcome']} with ok {str(rec['ok']).lower()}"
        wrong = problem(rec, {"id": "number?"})
    if wrong is None and rec.get("op") == ITEM_WRITE and (wrong := problem(rec, ITEM_FIELDS)):
        return f"an item_write record: {wrong}"
    return wrong


def _read(folder: Path, fields: dict[str, str], strict: bool, check: Check | None = None
          ) -> Iterator[tuple[Piece, Any, int, ClockCorrection | None]]:
    fixes = corrections(folder)
    for path in history_files(folder):
        fix = fixes.get(path.stem)
        for piece in pieces(path):
            table, bad = parse(piece, fields, strict, check)
            if strict and "outcome" in fields and not _known_outcomes(table):
                table, bad = parse_slowly(piece, fields, strict, check or (lambda rec: problem(rec, fields)))
            yield piece, table, bad, fix


def _known_outcomes(table) -> bool:
    """Every outcome one of OUTCOMES, `ok` only with ok true (else the piece is read again slowly,
    which names the bad line)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    outcome = table.column("outcome")
    if outcome.null_count == len(outcome):
        return True
    return (pc.all(pc.fill_null(pc.is_in(outcome, pa.array(list(OUTCOMES))), True)).as_py()
            and not pc.any(pc.and_(pc.is_valid(outcome),
                                   pc.not_equal(pc.equal(outcome, OK), table.column("ok")))).as_py())


def _invocations(path: Path, fix: ClockCorrection | None) -> Iterator[tuple[Any, np.ndarray]]:
    """A worker's invocations, strictly, and their t0 clock-corrected."""
    def check(rec: Any) -> str | None:
        wrong = problem(rec, INVOKE_FIELDS)
        return f"an invocation: {wrong}" if wrong else None

    for piece in pieces(path):
        table, _ = parse(piece, INVOKE_FIELDS, True, check)
        t0 = table.column("t0").to_numpy()
        yield table, (fix.apply(t0) if fix is not None else t0)


def _outcome_codes(table, ok: np.ndarray) -> np.ndarray:
    """OUTCOME_CODES per completion; a v1 line's (no outcome) from its ok."""
    import pyarrow.compute as pc

    code = np.where(ok, OUTCOME_CODES[OK], OUTCOME_CODES["fail"]).astype(np.int8)
    outcome = table.column("outcome")
    if outcome.null_count < len(outcome):
        indet = pc.fill_null(pc.equal(outcome, INDETERMINATE), False).to_numpy(zero_copy_only=False)
        code[indet] = OUTCOME_CODES[INDETERMINATE]
    return code


def read_history(folder: str | os.PathLike[str]) -> History:
    """Every op of the drill in `folder`, clock-corrected, strictly: a record that breaks the
    format is an EvidenceError naming its file and line."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from drillkit.errors import EvidenceError

    folder = Path(folder)
    classes, clients = _Codes(), _Codes()
    cols: dict[str, list] = {"t0": [], "t1": [], "ok": [], "op": [], "client": [], "key": [], "checksum": [],
                             "outcome": []}
    unanswered: dict[str, list] = {"t0": [], "op": [], "key": [], "checksum": []}
    items: list[dict[str, Any]] = []
    applied: dict[str, ClockOffset] = {}
    done_ids: dict[str, list[np.ndarray]] = {}  # per worker: the ids its completions name
    for piece, table, _, fix in _read(folder, OP_FIELDS, strict=True, check=_op_problem):
        if fix is not None:
            applied.setdefault(fix.worker, ClockOffset.of(fix))
        if not table.num_rows:
            continue
        if table.column("id").null_count < table.num_rows:
            done_ids.setdefault(piece.path.stem, []).append(table.column("id").to_numpy(zero_copy_only=False))
        t0, t1 = _corrected(table, fix)
        op = table.column("op")
        ok = table.column("ok").to_numpy(zero_copy_only=False)
        cols["t0"].append(t0)
        cols["t1"].append(t1)
        cols["ok"].append(ok)
        cols["outcome"].append(_outcome_codes(table, ok))
        cols["op"].append(classes.encode(op))
        cols["client"].append(clients.encode(table.column("client")))
        writes = pc.is_in(op, pa.array(WRITE_OPS))
        cols["key"].append(pc.filter(table.column("key"), writes))
        cols["checksum"].append(pc.filter(table.column("checksum"), writes))
        is_item = pc.equal(op, ITEM_WRITE)
        if pc.any(is_item).as_py():
            where = np.flatnonzero(is_item.to_numpy(zero_copy_only=False))
            for i, rec in zip(where, table.take(pa.array(where)).to_pylist()):
                rec["t0"], rec["t1"] = float(t0[i]), float(t1[i])
                wrong = problem(rec, ITEM_FIELDS)
                if wrong:
                    line = piece.line_of(_line_index(piece, int(i)))
                    raise EvidenceError(f"{piece.path}: line {line}: an item_write record: {wrong}")
                items.append({f: rec.get(f) for f in ITEM_FIELDS})
    fixes = corrections(folder)
    calls_files = invocation_files(folder)
    for worker, path in calls_files.items():
        # an invocation that no completion of its worker names was never answered
        done = np.concatenate(done_ids[worker]) if worker in done_ids else np.empty(0)
        fix = fixes.get(worker)
        for calls, t0 in _invocations(path, fix):
            left = ~np.isin(calls.column("id").to_numpy(), done)
            if not left.any():
                continue
            open_calls = calls.filter(pa.array(left))
            op = open_calls.column("op")
            unanswered["t0"].append(t0[left])
            unanswered["op"].append(classes.encode(op))
            writes = pc.is_in(op, pa.array(WRITE_OPS))
            unanswered["key"].append(pc.filter(open_calls.column("key"), writes))
            unanswered["checksum"].append(pc.filter(open_calls.column("checksum"), writes))

    def cat(parts: list, dtype) -> np.ndarray:
        return np.concatenate(parts) if parts else np.empty(0, dtype)

    def strings(parts: list):
        return pa.chunked_array([c for p in parts for c in p.chunks], pa.string())

    return History(t0=cat(cols["t0"], float), t1=cat(cols["t1"], float), ok=cat(cols["ok"], bool),
                   op=cat(cols["op"], np.int32), classes=classes.names, client=cat(cols["client"], np.int32),
                   clients=clients.names, write_key=strings(cols["key"]), write_checksum=strings(cols["checksum"]),
                   item_writes=items, clocks=sorted(applied.values(), key=lambda c: c.worker),
                   outcome=cat(cols["outcome"], np.int8), invoked=bool(calls_files),
                   unanswered_t0=cat(unanswered["t0"], float), unanswered_op=cat(unanswered["op"], np.int32),
                   unanswered_key=strings(unanswered["key"]), unanswered_checksum=strings(unanswered["checksum"]))


def _line_index(piece: Piece, row: int) -> int:
    """The line (from the piece's first, 0-based) of its `row`-th record: blank lines hold none."""
    seen = -1
    for n, line in enumerate(piece.data.tobytes().split(b"\n")):
        if line.strip():
            seen += 1
            if seen == row:
                return n
    return 0


def read_timeline(folder: str | os.PathLike[str]) -> History:
    """When each op started and ended (clock-corrected), its class and outcome, for the report's
    chart: lines that cannot be read (a truncated last line, a NaN) are counted in `unreadable`
    and left out, never an error. No keys, checksums or clients."""
    folder = Path(folder)
    classes = _Codes()
    t0s, t1s, oks, ops = [], [], [], []
    unreadable = 0
    applied: dict[str, ClockOffset] = {}
    for _, table, bad, fix in _read(folder, TIMELINE_FIELDS, strict=False):
        unreadable += bad
        if fix is not None:
            applied.setdefault(fix.worker, ClockOffset.of(fix))
        if not table.num_rows:
            continue
        t0, t1 = _corrected(table, fix)
        good = np.isfinite(t0) & np.isfinite(t1)
        unreadable += int((~good).sum())
        t0s.append(t0[good])
        t1s.append(t1[good])
        oks.append(table.column("ok").fill_null(False).to_numpy(zero_copy_only=False)[good])
        ops.append(classes.encode(table.column("op").fill_null("None"))[good])
    cat = (lambda parts, dtype: np.concatenate(parts) if parts else np.empty(0, dtype))
    return History(t0=cat(t0s, float), t1=cat(t1s, float), ok=cat(oks, bool), op=cat(ops, np.int32),
                   classes=classes.names, client=np.empty(0, np.int32), clients=[], unreadable=unreadable,
                   clocks=sorted(applied.values(), key=lambda c: c.worker))


class JsonlTail:
    """One JSONL file as it grows: each look returns the records of the whole lines appended since
    the last, at most `max_bytes` of them; a partial last line waits for its end. Lines that are
    not JSON objects are skipped (a live reader must not stop on one)."""

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = TAIL_BYTES):
        self.path = Path(path)
        self.offset = 0
        self.max_bytes = max_bytes

    def new_records(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(self.max_bytes)
        except OSError:
            return []
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) == self.max_bytes:
            cut = len(data)  # a line longer than a whole look is no record: pass over it
            data = b""
        self.offset += cut
        out = []
        for line in data[:cut].split(b"\n"):
            if line.strip():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    out.append(rec)
        return out


class HistoryTail:
    """Every requests/*.jsonl of a drill being recorded, including files that appear later: each
    look returns the records appended since the last (JsonlTail per file, its byte offset kept).
    Times are as the workers stamped them, not clock-corrected: live limits are coarser than any
    worker's offset."""

    def __init__(self, folder: str | os.PathLike[str], max_bytes: int = TAIL_BYTES):
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._tails: dict[Path, JsonlTail] = {}

    def new_records(self) -> list[dict[str, Any]]:
        out = []
        for path in history_files(self.folder):
            tail = self._tails.setdefault(path, JsonlTail(path, self.max_bytes))
            out += tail.new_records()
        return out


def in_flight(folder: str | os.PathLike[str], t: float) -> list[dict[str, Any]]:
    """The operations invoked at or before `t` and not answered by then (the load's stop: what
    was in flight when it began to stop), each its invocation plus, when it was answered later,
    its completion's `t1` and `outcome` (None: never answered, indeterminate). Line by line, for a
    check or a bench, never for measure; times as the clients stamped them."""
    folder = Path(folder)
    out: list[dict[str, Any]] = []
    for worker, path in invocation_files(folder).items():
        answers: dict[Any, dict[str, Any]] = {}
        done = folder / REQUESTS_DIR / path.name
        for rec in _records(done) if done.exists() else []:
            if rec.get("id") is not None:
                answers[rec["id"]] = rec
        for call in _records(path):
            answer = answers.get(call.get("id"))
            if call["t0"] <= t and (answer is None or answer["t1"] > t):
                out.append({**call, "worker": worker, "t1": answer and answer["t1"],
                            "outcome": answer and answer.get("outcome")})
    return out


def _records(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                yield rec
