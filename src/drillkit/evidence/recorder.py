"""The one writer of the client history, requests/<client>.jsonl (docs/evidence.md#requestsjsonl).

Every client writes through `OpRecorder`: the Locust users (drillkit.load.recording, in each
Locust process or, in distributed mode, on the master for the workers' shipped lines) and the
canary. A line is written whole in one call; the file is line-buffered, so a client killed hard
loses at most the line it was writing. The reader is drillkit.evidence.history.

An operation is two lines (Jepsen's history): its invocation (`invoke`: an `id` unique in the
file, `t0`, op, key, the checksum of the payload it sends), written before the request leaves,
and its completion (the v1 fields plus the same `id` and its `outcome`: ok, fail or
indeterminate). An invocation with no completion (still in flight when the load stopped, or its
process killed) is read as indeterminate. A completion without an `id` is a v1 line.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Callable

from drillkit.evidence import REQUESTS_DIR

CLOCK_SKEW_ENV = "DRILLKIT_CLOCK_SKEW"
"""Seconds added to every time a load process stamps (its records, its answers to the master's
clock pings): a rehearsal of a load worker whose clock is off, to see the correction undo it."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def client_file(folder: str | os.PathLike[str], client: str) -> Path:
    """requests/<client>.jsonl in an evidence folder (the name made safe for a file name)."""
    return Path(folder) / REQUESTS_DIR / f"{_UNSAFE.sub('_', client) or 'client'}.jsonl"


def clock_skew() -> float:
    """How far this process's stamps are set off the host's clock ($DRILLKIT_CLOCK_SKEW, seconds)."""
    return float(os.environ.get(CLOCK_SKEW_ENV) or 0.0)


OK, FAIL, INDETERMINATE = "ok", "fail", "indeterminate"
"""An operation's outcome: acknowledged; known not applied (refused, an error answer); or unknown
(no answer: timed out, the connection lost after the request left, in flight at the stop)."""
OUTCOMES = (OK, FAIL, INDETERMINATE)
_INVOKE_MARK = '"invoke": true'


class OpRecorder:
    """Encodes client operations as lines (an invocation, then its completion) and hands each
    whole line to `write`."""

    def __init__(self, write: Callable[[str], Any], skew: float = 0.0):
        self._write = write
        self.skew = skew
        self.count = 0
        self.invoked = 0

    @classmethod
    def to_file(cls, path: str | os.PathLike[str], skew: float = 0.0) -> "OpRecorder":
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a", buffering=1, encoding="utf-8")
        lock = threading.Lock()

        def write(line: str) -> None:
            with lock:
                if not fh.closed:
                    fh.write(line)

        recorder = cls(write, skew)
        recorder.close = fh.close  # type: ignore[method-assign]
        return recorder

    def invoke(self, t0: float, op: str, key: str, checksum: str | None = None, client: str | None = None) -> int:
        """An operation about to be sent: its invocation line; returns the id its completion names."""
        self.invoked += 1
        self._write(f'{{"id": {self.invoked}, "invoke": true, "t0": {t0 + self.skew!r}, "op": {json.dumps(op)}, '
                    f'"key": {json.dumps(key)}, "checksum": {json.dumps(checksum)}, "client": {json.dumps(client)}}}\n')
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

    def write_lines(self, text: str, count: int | None = None) -> None:
        """Lines another process encoded with an OpRecorder (a load worker's shipped history):
        `count` of them completions (by default counted: the lines less the invocations)."""
        if text:
            self.count += text.count("\n") - text.count(_INVOKE_MARK) if count is None else count
            self._write(text)

    def close(self) -> None:
        """Nothing to close for a recorder that hands its lines on."""
