"""Safeguards: stop a drill before it does harm, judged live from the evidence being written.

The monitor tails requests/*.jsonl and events.jsonl; when a limit trips it records a
`safeguard.tripped` event and interrupts the main thread, which aborts the drill the same
way Ctrl-C does (rollbacks, teardown, exit 3).

It also watches the harness itself: once told what to `watch`, a part of the system under test
that drillkit provides and that stopped doing its job (the sandbox's router whose health checker
died, say) records `service.failed` and aborts the drill the same way, at once, rather than
letting the runbook wait out its timeouts and the audit count the damage as lost data.
"""

from __future__ import annotations

import _thread
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from drillkit.errors import one_line
from drillkit.evidence import EVENTS, FAULT_INJECTED, READ_OPS, SAFEGUARD_TRIPPED, SERVICE_FAILED, append_event
from drillkit.evidence.history import HistoryTail, JsonlTail

SLICE = 0.5


@dataclass
class Limits:
    max_duration: float
    error_rate: float | None = None
    error_rate_sustained: float = 0.0
    expected_outage: float = 0.0
    max_lost_writes: int | None = None


@dataclass
class _Slices:
    """Ops per time slice; running totals kept beside them, since the progress display reads
    them from another thread while this one adds slices."""

    ok: dict[int, int] = field(default_factory=dict)
    failed: dict[int, int] = field(default_factory=dict)
    n_ok: int = 0
    n_failed: int = 0

    def add(self, t1: float, ok: bool) -> None:
        bucket = self.ok if ok else self.failed
        key = int(t1 // SLICE)
        bucket[key] = bucket.get(key, 0) + 1
        if ok:
            self.n_ok += 1
        else:
            self.n_failed += 1

    def totals(self) -> tuple[int, int]:
        return self.n_ok, self.n_failed

    def rate(self, key: int) -> float | None:
        ok, failed = self.ok.get(key, 0), self.failed.get(key, 0)
        return failed / (ok + failed) if ok + failed else None


class SafeguardMonitor:
    def __init__(self, folder: Path, limits: Limits, interval: float = 0.1):
        self.folder = folder
        self.limits = limits
        self.interval = interval
        self.started = time.time()
        self.tripped: str | None = None
        self.t_fault: float | None = None
        self.lost_keys: set[str] = set()
        self._history = HistoryTail(folder)
        self._events = JsonlTail(folder / EVENTS)
        self._slices = _Slices()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="safeguards", daemon=True)
        self._service_failure: Callable[[], str | None] = lambda: None
        self._stop_condition: Callable[[], str | None] = lambda: None
        self._stop_every = 1.0
        self._stop_next = 0.0

    def __enter__(self) -> "SafeguardMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(2)

    def seen(self) -> tuple[int, int]:
        """Operations recorded so far, (succeeded, failed), for the progress display."""
        return self._slices.totals()

    def watch(self, service_failure: Callable[[], str | None]) -> None:
        """From now on, abort the drill as soon as `service_failure()` names a reason."""
        self._service_failure = service_failure

    def stop_when(self, condition: Callable[[], str | None], every: float = 1.0) -> None:
        """From now on, every `every` seconds, abort the drill as a safeguard when `condition()`
        names a reason (an AWS target's CloudWatch alarm in ALARM)."""
        self._stop_condition, self._stop_every = condition, every

    def _stop_condition_due(self) -> str | None:
        now = time.monotonic()
        if now < self._stop_next:
            return None
        self._stop_next = now + self._stop_every
        return self._stop_condition()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                failure = self._service_failure()
                reason = None if failure else (self.check(time.time()) or self._stop_condition_due())
            except Exception as exc:  # a watchdog that cannot look must not stop looking in silence
                self._trip(SERVICE_FAILED, f"harness failure: the watchdog could not check the drill: "
                                             f"{one_line(exc)}")
                return
            if failure:
                self._trip(SERVICE_FAILED, f"harness failure: {failure}")
                return
            if reason:
                self._trip(SAFEGUARD_TRIPPED, reason)
                return

    def _trip(self, kind: str, reason: str) -> None:
        if self._stop.is_set():
            return
        self.tripped = reason
        try:
            append_event(self.folder / EVENTS, kind, reason=reason)
        except OSError as exc:  # the evidence folder is gone or full: the drill must stop all the same
            self.tripped = f"{reason} (not recorded: {exc.strerror or exc})"
        finally:
            _thread.interrupt_main()

    def check(self, now: float) -> str | None:
        """The first limit broken at `now`, in words, or None."""
        limits = self.limits
        if now - self.started > limits.max_duration:
            return f"safeguard max_duration exceeded ({limits.max_duration:g} s)"
        self._read()
        if limits.max_lost_writes is not None and len(self.lost_keys) > limits.max_lost_writes:
            return (f"safeguard max_lost_writes exceeded: {len(self.lost_keys)} acknowledged writes read back "
                    f"as missing (limit {limits.max_lost_writes})")
        if limits.error_rate is not None:
            return self._error_rate_tripped(now)
        return None

    def _read(self) -> None:
        if self.t_fault is None:
            for e in self._events.new_records():
                if e.get("kind") == FAULT_INJECTED and not e.get("precondition"):
                    self.t_fault = float(e["t"])
                    break
        for op in self._history.new_records():
            self._slices.add(float(op["t1"]), bool(op["ok"]))
            if op.get("op") in READ_OPS and op.get("ok") and op.get("found") is False:
                self.lost_keys.add(op["key"])

    def _error_rate_tripped(self, now: float) -> str | None:
        """Trips when every completed slice of the last `sustained` seconds, none inside the
        expected outage, failed more than the limit."""
        limits = self.limits
        needed = max(1, round(limits.error_rate_sustained / SLICE))
        last_complete = int(now // SLICE) - 1
        keys = range(last_complete - needed + 1, last_complete + 1)
        for key in keys:
            start = key * SLICE
            if self.t_fault is not None and self.t_fault - SLICE < start < self.t_fault + limits.expected_outage:
                return None
            rate = self._slices.rate(key)
            if rate is None or rate <= limits.error_rate:
                return None
        return (f"safeguard max_error_rate exceeded: above {limits.error_rate:.0%} for "
                f"{limits.error_rate_sustained:g} s outside the expected outage")
