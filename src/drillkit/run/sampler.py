"""The replication-lag sampler: a thread writing lag.csv while the drill runs."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

from drillkit.evidence import LAG_COLUMNS
from drillkit.targets.capabilities import ReplicationObservation


class LagSampler:
    def __init__(self, system: ReplicationObservation, path: Path, interval: float = 0.2):
        self.system = system
        self.path = path
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)
        self.samples = 0

    @staticmethod
    def write_header(path: Path) -> None:
        """lag.csv for a target without replication to observe: the columns, no samples."""
        with open(path, "w", newline="") as fh:
            csv.writer(fh).writerow(LAG_COLUMNS)

    def start(self) -> "LagSampler":
        self._thread.start()
        return self

    def _run(self) -> None:
        with open(self.path, "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(LAG_COLUMNS)
            while not self._stop.is_set():
                try:
                    rows = self.system.replication_lag()
                except Exception:  # the primary may be dead: a gap in lag.csv is the truth
                    rows = []
                for s in rows:
                    out.writerow((f"{s.t:.6f}", s.region, _cell(s.replay_lag_s, ".6f"), _cell(s.lag_bytes, "d"),
                                  _cell(s.object_backlog, "d"), _cell(s.object_backlog_age_s, ".6f")))
                    self.samples += 1
                fh.flush()
                self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


def _cell(value: float | int | None, spec: str) -> str:
    return "" if value is None else format(value, spec)
