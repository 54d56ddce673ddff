"""The replication-lag sampler: a thread writing lag.csv while the drill runs, and the live
evaluator of the scenario's alarms over each sample (`alarm.raised` / `alarm.cleared` events)."""

from __future__ import annotations

import csv
import threading
from pathlib import Path
from typing import Any

from drillkit.evidence import ALARM_CLEARED, ALARM_METRICS, ALARM_RAISED, LAG_COLUMNS, append_event
from drillkit.scenario.schema import Alarm
from drillkit.targets.capabilities import LagSample, ReplicationObservation


class AlarmEvaluator:
    """Each alarm is raised at the first sample over its threshold and cleared at the first one at
    or under it, per region, as CloudWatch evaluates a one-datapoint alarm."""

    def __init__(self, alarms: list[Alarm], events: Path | None):
        self.alarms = alarms
        self.events = events
        self.raised: set[tuple[str, str]] = set()

    def observe(self, sample: LagSample) -> None:
        for alarm in self.alarms:
            if alarm.region is not None and alarm.region != sample.region:
                continue
            value = getattr(sample, ALARM_METRICS[alarm.metric])  # LagSample's fields are lag.csv's columns
            if value is None:
                continue
            key = (alarm.name, sample.region)
            fields: dict[str, Any] = {"alarm": alarm.name, "metric": alarm.metric, "region": sample.region,
                                      "value": value, "threshold": alarm.above}
            if value > alarm.above and key not in self.raised:
                self.raised.add(key)
                append_event(self.events, ALARM_RAISED, t=sample.t, **fields)
            elif value <= alarm.above and key in self.raised:
                self.raised.discard(key)
                append_event(self.events, ALARM_CLEARED, t=sample.t, **fields)


class LagSampler:
    def __init__(self, system: ReplicationObservation, path: Path, interval: float = 0.2,
                 alarms: AlarmEvaluator | None = None):
        self.system = system
        self.path = path
        self.interval = interval
        self.alarms = alarms
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
                if self.alarms is not None:
                    for s in rows:
                        self.alarms.observe(s)
                self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


def _cell(value: float | int | None, spec: str) -> str:
    return "" if value is None else format(value, spec)
