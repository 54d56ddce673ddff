"""Load workers' clocks against the harness: measured, recorded in clocks.jsonl, corrected on reading.

A worker on another host stamps its operations with its own clock, which may disagree with the
harness's by milliseconds or more: the resolution drillkit claims. So each worker's offset is
measured NTP-style (the harness asks for the worker's time at `h0`, the answer `w` arrives at
`h1`: offset = w - (h0 + h1) / 2, uncertain by (h1 - h0) / 2; the best of several round trips)
when the worker joins, every few seconds while the load runs and when it stops. The records in
requests/<worker>.jsonl stay as the worker stamped them; the one reader
(drillkit.evidence.history) corrects them on the way in, with the offset interpolated linearly
between the measurements around each time (a clock that drifts).

One writer (`append_clock_sample`, the load master's side) and one reader (`corrections`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Literal

import numpy as np

CLOCKS = "clocks.jsonl"
"""One line per clock measurement of a load worker (ClockSample)."""


@dataclass(frozen=True)
class ClockSample:
    """One measurement of a worker's clock: `offset_s` = worker clock - harness clock, within
    ± `uncertainty_s` (half the best round trip); `t` the harness time, `worker_t` the worker's
    at that moment; `phase`: start (the worker joined), during, or end (the load stopped)."""

    worker: str
    phase: Literal["start", "during", "end"]
    t: float
    worker_t: float
    offset_s: float
    uncertainty_s: float
    rtt_s: float
    samples: int


def best_of(worker: str, phase: str, exchanges: Iterable[tuple[float, float, float]]) -> ClockSample | None:
    """The measurement from the round trip with the least delay: each exchange is (h0, w, h1),
    the harness's send time, the worker's answer, the harness's receive time."""
    rounds = [(h1 - h0, h0, w, h1) for h0, w, h1 in exchanges if h1 >= h0]
    if not rounds:
        return None
    rtt, h0, w, h1 = min(rounds)
    mid = (h0 + h1) / 2
    return ClockSample(worker=worker, phase=phase, t=mid, worker_t=w, offset_s=w - mid,  # type: ignore[arg-type]
                       uncertainty_s=rtt / 2, rtt_s=rtt, samples=len(rounds))


def append_clock_sample(folder: str | os.PathLike[str], sample: ClockSample) -> None:
    from drillkit.evidence import append_record

    append_record(Path(folder) / CLOCKS, asdict(sample))


def read_clock_samples(folder: str | os.PathLike[str]) -> list[ClockSample]:
    path = Path(folder) / CLOCKS
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(ClockSample(**json.loads(line)))
                except (ValueError, TypeError) as exc:
                    from drillkit.errors import EvidenceError

                    raise EvidenceError(f"{path}: line {n}: not a clock sample ({exc})") from None
    return out


@dataclass(frozen=True)
class ClockCorrection:
    """How to bring one worker's timestamps onto the harness clock: its offset interpolated
    linearly between the measurements around each time (held flat before the first and after
    the last), so a clock that drifts during an hour-long drill is followed."""

    worker: str
    samples: tuple[ClockSample, ...]

    @property
    def start(self) -> ClockSample:
        return self.samples[0]

    @property
    def end(self) -> ClockSample:
        return self.samples[-1]

    @property
    def uncertainty_s(self) -> float:
        """How far a corrected time may be off: the largest of the measurements' uncertainties."""
        return max(s.uncertainty_s for s in self.samples)

    @property
    def offset_s(self) -> float:
        """The offset first measured."""
        return self.start.offset_s

    @property
    def drift_s(self) -> float | None:
        """How much the offset moved between the first and the last measurement."""
        return None if len(self.samples) < 2 else self.end.offset_s - self.start.offset_s

    def offset_at(self, worker_t: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(worker_t, float), [s.worker_t for s in self.samples],
                         [s.offset_s for s in self.samples])

    def apply(self, worker_t: np.ndarray) -> np.ndarray:
        """Worker times on the harness clock."""
        worker_t = np.asarray(worker_t, float)
        return worker_t - self.offset_at(worker_t)


def corrections(folder: str | os.PathLike[str]) -> dict[str, ClockCorrection]:
    """Each measured worker's correction, by the stem of its requests/<worker>.jsonl. A file with
    no measurement (a local load process, the canary) is on the harness clock already."""
    by_worker: dict[str, list[ClockSample]] = {}
    for sample in read_clock_samples(folder):
        by_worker.setdefault(sample.worker, []).append(sample)
    return {w: ClockCorrection(w, tuple(sorted(m, key=lambda s: s.worker_t))) for w, m in by_worker.items()}
