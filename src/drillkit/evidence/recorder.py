"""The one writer of the client history, requests/<client>.jsonl and invocations/<client>.jsonl
(docs/evidence.md#requestsjsonl).

Every client writes through `OpRecorder`: the Locust users (drillkit.load.recording, in each
Locust process or, in distributed mode, on the master for the workers' shipped lines) and the
canary. A line is written whole in one call; the files are line-buffered, so a client killed
hard loses at most the line it was writing. The reader is drillkit.evidence.history.

An operation is invoked, then completed (Jepsen's history). Its invocation (an `id` unique to
the client, `t0`, op, key, the checksum of the payload it sends) goes to
invocations/<client>.jsonl before the request leaves; its completion, the v1 line plus the same
`id` and its `outcome` (ok, fail or indeterminate), to requests/<client>.jsonl, which so stays a
v1 file every v1 reader can read. An invocation no completion names (in flight when the load
stopped, its process killed) is read as indeterminate.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Callable

from drillkit.evidence import INVOCATIONS_DIR, REQUESTS_DIR

CLOCK_SKEW_ENV = "DRILLKIT_CLOCK_SKEW"
"""Seconds added to every time a load process stamps (its records, its answers to the master's
clock pings): a rehearsal of a load worker whose clock is off, to see the correction undo it."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


CANARY_CLIENT = "canary"
"""The canary's client name: its history is requests/canary.jsonl, beside the load's clients'."""


def client_file(folder: str | os.PathLike[str], client: str) -> Path:
    """requests/<client>.jsonl in an evidence folder (the name made safe for a file name)."""
    return Path(folder) / REQUESTS_DIR / f"{_UNSAFE.sub('_', client) or 'client'}.jsonl"


def invocations_of(requests_file: str | os.PathLike[str]) -> Path:
    """invocations/<client>.jsonl beside requests/<client>.jsonl."""
    path = Path(requests_file)
    return path.parent.parent / INVOCATIONS_DIR / path.name


def clock_skew() -> float:
    """How far this process's stamps are set off the host's clock ($DRILLKIT_CLOCK_SKEW, seconds)."""
    return float(os.environ.get(CLOCK_SKEW_ENV) or 0.0)


COMPLETION_FIELDS = {"t0": "number", "t1": "number", "op": "string", "key": "string", "ok": "bool",
                     "status": "number?", "region": "string?", "checksum": "string?", "error": "string?"}
"""Every completion line (requests/<client>.jsonl), in the order written, with its JSON type
(`?`: may be null). The one place the record's fields are defined: the reader
(drillkit.evidence.history) checks what it reads against these, docs/evidence.md describes them."""
CONTEXT_FIELDS = {"found": "bool?", "client": "string?", "value": "string?", "ts": "number?", "home": "string?"}
"""Fields an op adds to its completion when it has them: a read's `found`, the `client` (the
load user's prefix), an item write's `value` and the region's timestamp `ts`, the user's `home`."""
INVOKED_FIELDS = {"id": "number?", "outcome": "string?"}
"""Fields a completion of an invoked operation adds: its invocation's `id` and its `outcome` (a v1
completion has neither)."""
INVOCATION_FIELDS = {"id": "number", "t0": "number", "op": "string", "key": "string", "checksum": "string?",
                     "client": "string?"}
"""Every invocation line (invocations/<client>.jsonl), in the order written."""
RECORD_FIELDS = {**COMPLETION_FIELDS, **CONTEXT_FIELDS, **INVOKED_FIELDS}


def fields(*names: str, required: tuple[str, ...] = ()) -> dict[str, str]:
    """Some of the record's fields with their types, those in `required` made non-null."""
    return {n: RECORD_FIELDS[n].rstrip("?") if n in required else RECORD_FIELDS[n] for n in names}


OK, FAIL, INDETERMINATE = "ok", "fail", "indeterminate"
"""An operation's outcome: acknowledged; known not applied (refused, an error answer); or unknown
(no answer: timed out, the connection lost after the request left, in flight at the stop)."""
OUTCOMES = (OK, FAIL, INDETERMINATE)


def _text(value: str | None) -> str:
    """A JSON string (or null), as json.dumps writes it, at a fraction of its cost (the hot path)."""
    return "null" if value is None else _encode_string(value)


_encode_string = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


class OpRecorder:
    """Encodes client operations as lines (an invocation, then its completion) and hands each
    whole line to `write`."""

    def __init__(self, write: Callable[[str], Any], skew: float = 0.0,
                 write_invocation: Callable[[str], Any] | None = None):
        self._write = write
        self._write_invocation = write_invocation or (lambda _line: None)
        self.skew = skew
        self.count = 0
        self.invoked = 0

    @classmethod
    def to_file(cls, path: str | os.PathLike[str], skew: float = 0.0) -> "OpRecorder":
        """Completions to `path` (requests/<client>.jsonl), invocations beside it in
        invocations/<client>.jsonl (opened at the first)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a", buffering=1, encoding="utf-8")
        calls: list[Any] = []
        lock = threading.Lock()

        def write(line: str) -> None:
            with lock:
                if not fh.closed:
                    fh.write(line)

        def write_invocation(line: str) -> None:
            with lock:
                if not calls:
                    where = invocations_of(path)
                    where.parent.mkdir(parents=True, exist_ok=True)
                    calls.append(open(where, "a", buffering=1, encoding="utf-8"))
                if not fh.closed:
                    calls[0].write(line)

        def close() -> None:
            with lock:
                for f in (fh, *calls):
                    f.close()

        recorder = cls(write, skew, write_invocation)
        recorder.close = close  # type: ignore[method-assign]
        return recorder

    def invoke(self, t0: float, op: str, key: str, checksum: str | None = None, client: str | None = None) -> int:
        """An operation about to be sent: its invocation line; returns the id its completion names."""
        self.invoked += 1
        self._write_invocation(f'{{"id": {self.invoked}, "t0": {t0 + self.skew!r}, "op": {_text(op)}, '
                               f'"key": {_text(key)}, "checksum": {_text(checksum)}, "client": {_text(client)}}}\n')
        return self.invoked

    def record(self, t0: float, t1: float, op: str, key: str, ok: bool, status: int | None = None,
               region: str | None = None, checksum: str | None = None, error: str | None = None,
               **extra: Any) -> None:
        """One operation: started `t0`, answered `t1` (this process's clock, plus the skew). With
        `id` (its invocation's) and `outcome` in `extra`, the completion of an invoked operation."""
        self.count += 1
        self._write(json.dumps({"t0": t0 + self.skew, "t1": t1 + self.skew, "op": op, "key": key, "ok": ok,
                                "status": status, "region": region, "checksum": checksum, "error": error,
                                **extra}) + "\n")

    def write_lines(self, text: str, count: int, invocations: str = "") -> None:
        """Lines another process encoded with an OpRecorder (a load worker's shipped history):
        `count` completions in `text`, and the `invocations` made since the last batch."""
        if invocations:
            self._write_invocation(invocations)
        if text:
            self.count += count
            self._write(text)

    def close(self) -> None:
        """Nothing to close for a recorder that hands its lines on."""
