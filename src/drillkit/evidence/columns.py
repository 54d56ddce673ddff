"""JSONL evidence files as typed Arrow columns, a bounded piece at a time.

A piece is up to `PIECE_BYTES` of whole lines. Arrow's JSON reader parses it on every CPU with an
explicit schema: it is strict about types (a number where a string belongs is an error, never a
conversion) and rounds numbers exactly as `json.loads` does; a string that is not UTF-8 sends
the piece to the slow path, which names its line. A piece Arrow cannot take (a bad
line, a duplicated field, a field of another type) is read again line by line with `json.loads`,
which either names the first bad line or gives the same columns: an odd record costs speed, never
correctness. Memory stays bounded by the piece, whatever the file's size.

Fields are declared as `{"name": kind}` with kind `number`, `string` or `bool`, and a trailing `?`
when null or absent is allowed. A reader may check fewer fields than it reads (`check`): a field
it does not check is read as null where it has another type.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from drillkit.errors import EvidenceError

PIECE_BYTES = 64 << 20
"""Whole lines parsed at once; the reader's memory is a few times this."""
BLOCK_BYTES = 4 << 20
"""Arrow's unit of parallel parsing within a piece (4 MiB measured fastest, bench/bench_measure.py)."""

SAYS = {"number": "a number", "string": "a string", "bool": "true or false"}


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v


def _fits(v: Any, base: str) -> bool:
    return is_num(v) if base == "number" else isinstance(v, bool) if base == "bool" else isinstance(v, str)


def problem(rec: Any, fields: dict[str, str]) -> str | None:
    """What is wrong with one decoded record, in words, or None."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    for f, kind in fields.items():
        v, base = rec.get(f), kind.rstrip("?")
        if v is None and kind.endswith("?"):
            continue
        if not _fits(v, base):
            return f"{f}: must be {SAYS[base]}" + (" or null" if kind.endswith("?") else "")
    return None


def arrow_schema(fields: dict[str, str]):
    import pyarrow as pa

    types = {"number": pa.float64(), "string": pa.string(), "bool": pa.bool_()}
    return pa.schema([pa.field(f, types[k.rstrip("?")], nullable=k.endswith("?")) for f, k in fields.items()])


@dataclass
class Piece:
    """Whole lines of one file, from byte `start` on."""

    path: Path
    data: memoryview
    start: int

    def line_of(self, n: int) -> int:
        """The file's line number (1-based) of the piece's line `n` (0-based): counted only
        when a bad line is to be named."""
        before = 0
        with open(self.path, "rb") as fh:
            left = self.start
            while left > 0:
                chunk = fh.read(min(left, PIECE_BYTES))
                if not chunk:
                    break
                before += chunk.count(b"\n")
                left -= len(chunk)
        return before + n + 1


def pieces(path: Path, start: int = 0) -> Iterator[Piece]:
    """The file from byte `start` in pieces of whole lines (no copy: each is a view of what was
    read); a last line without its newline ends the last piece all the same."""
    with open(path, "rb") as fh:
        offset = start
        while True:
            fh.seek(offset)
            block = fh.read(PIECE_BYTES)
            if not block:
                return
            cut = block.rfind(b"\n") + 1
            if cut == 0 and len(block) == PIECE_BYTES:  # a line longer than a piece: read it whole
                block += fh.readline()
                cut = len(block)
            elif cut == 0 or len(block) < PIECE_BYTES:
                cut = len(block)
            yield Piece(path, memoryview(block)[:cut], offset)
            offset += cut


Check = Callable[[Any], "str | None"]
"""What is wrong with a decoded record, in words, or None."""


def parse(piece: Piece, fields: dict[str, str], strict: bool, check: Check | None = None) -> tuple[Any, int]:
    """The piece as an Arrow table of `fields`, and how many non-empty lines could not be read.

    strict: a bad record (by `check`, by default every field's kind) is an EvidenceError naming
    its file and line; nothing is left out. Otherwise bad lines are left out and counted."""
    import pyarrow as pa
    import pyarrow.json as pj

    schema = arrow_schema(fields)
    if _arrow_crashes_on(piece.data):
        return parse_slowly(piece, fields, strict, check or (lambda rec: problem(rec, fields)))
    try:
        table = pj.read_json(pa.BufferReader(pa.py_buffer(piece.data)), read_options=pj.ReadOptions(block_size=BLOCK_BYTES),
                             parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"))
        table.validate(full=True)  # Arrow's JSON reader lets invalid UTF-8 into a string column
        if not strict or _complete(table, fields):
            return table, 0
    except pa.ArrowInvalid:
        pass
    return parse_slowly(piece, fields, strict, check or (lambda rec: problem(rec, fields)))


_FIRST_TOKEN = re.compile(rb"[^ \t\r\n]")


def _arrow_crashes_on(data: memoryview) -> bool:
    """pyarrow's JSON reader (26.0) dies of a segmentation fault when the first value of its
    buffer is `null` (found by tests/test_fuzz_cli.py): such a piece goes to the slow path."""
    first = _FIRST_TOKEN.search(data)
    return first is not None and bytes(data[first.start():first.start() + 4]) == b"null"


def _complete(table, fields: dict[str, str]) -> bool:
    """No required field missing or null, no number NaN: else the records are read again slowly."""
    import pyarrow.compute as pc

    for f, kind in fields.items():
        col = table.column(f)
        if not kind.endswith("?") and col.null_count:
            return False
        if kind.rstrip("?") == "number" and pc.any(pc.is_nan(col)).as_py():
            return False
    return True


def parse_slowly(piece: Piece, fields: dict[str, str], strict: bool, check: Check) -> tuple[Any, int]:
    import pyarrow as pa

    records, bad = [], 0
    for n, line in enumerate(piece.data.tobytes().split(b"\n")):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            wrong = check(rec)
        except ValueError as exc:
            wrong = f"not JSON ({exc})"
        if wrong is None:
            # a field the check let pass is null where it has another kind
            records.append({f: rec[f] for f, kind in fields.items() if _fits(rec.get(f), kind.rstrip("?"))})
        elif strict:
            raise EvidenceError(f"{piece.path}: line {piece.line_of(n)}: {wrong}")
        else:
            bad += 1
    return pa.Table.from_pylist(records, schema=arrow_schema(fields)), bad


def read_columns(path: str | os.PathLike[str], fields: dict[str, str]) -> dict[str, Any]:
    """A whole (small or large) JSONL file's `fields` as Arrow chunked arrays, strictly: a bad
    record is an EvidenceError naming its file and line."""
    import pyarrow as pa

    tables = [parse(p, fields, strict=True)[0] for p in pieces(Path(path))]
    table = pa.concat_tables(tables) if tables else arrow_schema(fields).empty_table()
    return {f: table.column(f) for f in fields}
