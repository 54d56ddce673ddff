"""The replication-lag sampler: a thread writing lag.csv while the drill runs, and the live
evaluator of the scenario's alarms over each sample (`alarm.raised` / `alarm.cleared` events)."""

from __future__ import annotations

import csv
import json
import threading
import time
from pathlib import Path
from typing import Any

from drillkit.evidence import (ALARM_CLEARED, ALARM_METRICS, ALARM_RAISED, EVENT_METRICS, LAG_COLUMNS,
                               METRIC_EVENT_KINDS, append_event, metric_spans)
from drillkit.scenario.schema import Alarm
from drillkit.targets.capabilities import LagSample, ReplicationObservation


class AlarmEvaluator:
    """Each alarm is raised at the first sample over its threshold and cleared at the first one at
    or under it, per region, as CloudWatch evaluates a one-datapoint alarm. Lag metrics are sampled
    with lag.csv (`observe`); event metrics (EVENT_METRICS) on every tick of the sampler, from the
    events recorded so far (`tick`)."""

    def __init__(self, alarms: list[Alarm], events: Path | None):
        self.alarms = alarms
        self.events = events
        self.raised: set[tuple[str, str | None]] = set()
        self._seen: list[dict[str, Any]] = []
        self._offset = 0

    def observe(self, sample: LagSample) -> None:
        for alarm in self.alarms:
            if alarm.metric in EVENT_METRICS or (alarm.region is not None and alarm.region != sample.region):
                continue
            value = getattr(sample, ALARM_METRICS[alarm.metric])  # LagSample's fields are lag.csv's columns
            if value is not None:
                self._judge(alarm, sample.region, value, sample.t)

    def tick(self, now: float) -> None:
        watched = [a for a in self.alarms if a.metric in EVENT_METRICS]
        if not watched or self.events is None:
            return
        self._read_new_events()
        for alarm in watched:
            spans = metric_spans(self._seen, alarm.metric, alarm.region)
            open_ = [start for start, end in spans if end is None and start <= now]
            self._judge(alarm, alarm.region, now - max(open_) if open_ else 0.0, now)

    def _judge(self, alarm: Alarm, region: str | None, value: float, t: float) -> None:
        key = (alarm.name, region)
        fields: dict[str, Any] = {"alarm": alarm.name, "metric": alarm.metric, "region": region,
                                  "value": value, "threshold": alarm.above}
        if value > alarm.above and key not in self.raised:
            self.raised.add(key)
            append_event(self.events, ALARM_RAISED, t=t, **fields)
        elif value <= alarm.above and key in self.raised:
            self.raised.discard(key)
            append_event(self.events, ALARM_CLEARED, t=t, **fields)

    def _read_new_events(self) -> None:
        """The events metric_spans reads among those appended since the last tick (whole lines only:
        a line being written waits)."""
        try:
            with open(self.events, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError:
            return
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        for line in complete.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("kind") in METRIC_EVENT_KINDS:   # the rest is never read: memory stays bounded
                self._seen.append(event)


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
                    self.alarms.tick(time.time())
                self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


def _cell(value: float | int | None, spec: str) -> str:
    return "" if value is None else format(value, spec)
