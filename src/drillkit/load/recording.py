"""The Locust side of recording: every operation of every user into requests/<client>.jsonl.

Imported only by drillkit.load.users (so only by locustfiles: it imports locust, which
monkey-patches with gevent). It plugs into Locust through its event hooks:

- one process (`LocalRunner`): the process writes its own file, requests/<host>-<pid>.jsonl;
- distributed (`--master` plus `--worker`s, here or on other hosts): `events.request` fires only
  on the workers, and a worker on another host cannot write into the harness's evidence folder.
  So each worker ships its encoded lines to the master every `SHIP_EVERY` seconds over Locust's
  own master-worker connection (custom messages), and the master, which runs beside the harness,
  writes requests/<worker>.jsonl. Shipping as it goes, not uploading at the end: a worker that
  dies keeps all but its last fraction of a second, and the master sees it stop at once.
- the master also measures each worker's clock against its own (the harness host's) NTP-style,
  `CLOCK_ROUNDS` round trips every `CLOCK_EVERY` seconds and once more when the load stops, into
  clocks.jsonl; and it records each worker's arrival, end and loss in events.jsonl.

The harness reads the master's view of its workers at /drillkit/workers on Locust's web UI.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

import gevent
from gevent.event import AsyncResult
from locust import events
from locust.runners import STATE_RUNNING, STATE_SPAWNING, LocalRunner, MasterRunner, WorkerRunner

from drillkit.evidence import (LOAD_STOPPING, LOAD_WORKER_DONE, LOAD_WORKER_JOINED, LOAD_WORKER_LOST,
                               append_event)
from drillkit.evidence.clocks import append_clock_sample, best_of
from drillkit.evidence.recorder import CONTEXT_FIELDS, FAIL, INDETERMINATE, OK, OpRecorder, client_file, clock_skew
from drillkit.load import SETTINGS_ENV, LoadSettings

HISTORY, PING, PONG = "drillkit_history", "drillkit_clock_ping", "drillkit_clock_pong"
SHIP_EVERY = 0.1
CLOCK_EVERY = 5.0
CLOCK_ROUNDS = 5
LOST_AFTER = 3.0
"""A worker that has shipped nothing (not even an empty batch) for this long, and had not said it
was done, is lost."""

RECORDER = "drillkit_recorder"
"""The Environment attribute holding this process's OpRecorder: DrillUser writes each operation's
invocation through it, before the request leaves (drillkit.load.users)."""
STOPPING = "drillkit_stopping"
"""The Environment attribute set when the load begins to stop: from then on no user invokes
another operation (those in flight have Locust's stop timeout to end)."""
NO_ANSWER_STATUSES = frozenset({502, 504})
"""A gateway's answers that it lost the upstream (bad gateway, timeout): the request may have
reached the system and been applied, so the operation is indeterminate, not failed."""


def settings(environment) -> LoadSettings:
    """The drill's settings: from --drillkit-load ($DRILLKIT_LOAD), which a master forwards to
    its workers; defaults for a locustfile run by plain `locust` (then nothing is recorded)."""
    raw = getattr(environment.parsed_options, "drillkit_load", None) or os.environ.get(SETTINGS_ENV) or ""
    return LoadSettings.from_json(raw) if raw else LoadSettings()


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@events.init_command_line_parser.add_listener
def _arguments(parser) -> None:
    parser.add_argument("--drillkit-load", env_var=SETTINGS_ENV, default="", include_in_web_ui=False,
                        help="drillkit's settings for this load (JSON; drillkit run sets it)")


@events.init.add_listener
def _plug_in(environment, **_kwargs) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        _Master(environment)
    elif isinstance(runner, WorkerRunner):
        _Worker(environment)
    elif isinstance(runner, LocalRunner):
        folder = settings(environment).evidence
        if folder:
            recorder = OpRecorder.to_file(client_file(folder, worker_name()), clock_skew())
            _listen(environment, recorder)
            _note_stopping(environment, lambda: {"in_flight": recorder.invoked - recorder.count})
    if isinstance(runner, MasterRunner):
        _note_stopping(environment, dict)
    # closing is the file's end of the process: a request finishing during shutdown is still recorded


def _note_stopping(environment, counts) -> None:
    """load.stopping in the drill's events as the load begins to stop (before its users stop)."""
    events = settings(environment).events
    if events:
        environment.events.test_stopping.add_listener(lambda **_: append_event(
            events, LOAD_STOPPING, stop_timeout=environment.stop_timeout, **counts()))


def outcome(exception: BaseException | None, response: Any) -> str:
    """ok; fail when the system answered that it did not do it (an error status, the connection
    refused before the request left); indeterminate when no answer tells (a timeout, the
    connection lost after the request left, a gateway's 502/504)."""
    if exception is None:
        return OK
    status = getattr(response, "status_code", None) or 0
    if status:
        return INDETERMINATE if status in NO_ANSWER_STATUSES else FAIL
    error = getattr(response, "error", None) or exception
    return FAIL if isinstance(error, ConnectionRefusedError) else INDETERMINATE


def _listen(environment, recorder: OpRecorder) -> None:
    known: dict[str, Any] = {"raw": None, "header": None}
    setattr(environment, RECORDER, recorder)
    setattr(environment, STOPPING, False)
    environment.events.test_start.add_listener(lambda **_: setattr(environment, STOPPING, False))
    environment.events.test_stopping.add_listener(lambda **_: setattr(environment, STOPPING, True))

    def region_header() -> str | None:
        """The header naming the serving region, as the drill's settings say: a worker learns
        them from the master with the test's start, after this listener was added."""
        raw = getattr(environment.parsed_options, "drillkit_load", None)
        if raw is not known["raw"]:
            known.update(raw=raw, header=settings(environment).region_header)
        return known["header"]

    def on_request(request_type, name, response_time, response_length, response=None, context=None,
                   exception=None, start_time=None, **_kwargs) -> None:
        ctx = context or {}
        if "op" not in ctx or start_time is None:
            return
        headers = getattr(response, "headers", None) or {}
        header = region_header()
        invoked = {"id": ctx["id"], "outcome": outcome(exception, response)} if "id" in ctx else {}
        recorder.record(start_time, start_time + (response_time or 0) / 1000.0, ctx["op"], ctx["key"],
                        exception is None, getattr(response, "status_code", None) or None,
                        headers.get(header) if header else None, ctx.get("checksum"),
                        None if exception is None else _short(exception),
                        **{f: ctx[f] for f in CONTEXT_FIELDS if f in ctx}, **invoked)

    environment.events.request.add_listener(on_request)


def _short(exception: BaseException) -> str:
    text = str(exception).splitlines()[0] if str(exception) else type(exception).__name__
    return text[:200]


class _Worker:
    """Buffers the encoded lines and ships them to the master; answers its clock pings."""

    def __init__(self, environment):
        self.runner = environment.runner
        self.name = worker_name()
        self.skew = clock_skew()
        self.lines: list[str] = []
        self.calls: list[str] = []
        self.recorder = OpRecorder(self.lines.append, self.skew, self.calls.append)
        _listen(environment, self.recorder)
        self.runner.register_message(PING, self._pong)
        environment.events.test_stop.add_listener(lambda **_: self.ship(done=True))
        environment.events.quitting.add_listener(lambda **_: self.ship(done=True))
        gevent.spawn(self._loop)

    def _loop(self) -> None:
        while True:
            gevent.sleep(SHIP_EVERY)
            self.ship()

    def ship(self, done: bool = False) -> None:
        lines, self.lines[:] = "".join(self.lines), []
        calls, self.calls[:] = "".join(self.calls), []
        try:
            self.runner.send_message(HISTORY, {"worker": self.name, "host": socket.gethostname(), "lines": lines,
                                               "invoked": calls, "total": self.recorder.count, "done": done})
        except Exception:  # the master is gone: nothing to ship to
            pass

    def _pong(self, environment, msg, **_kwargs) -> None:
        self.runner.send_message(PONG, {"worker": self.name, "h0": msg.data["h0"], "seq": msg.data["seq"],
                                        "w": time.time() + self.skew})


class _Master:
    """Writes each worker's shipped history, measures its clock, and notes its arrival, end and loss."""

    def __init__(self, environment):
        self.runner = environment.runner
        self.workers: dict[str, dict[str, Any]] = {}
        self.recorders: dict[str, OpRecorder] = {}
        self.pending: dict[tuple[str, int], AsyncResult] = {}
        self.seq = 0
        self.settings = settings(environment)
        self.runner.register_message(HISTORY, self._history)
        self.runner.register_message(PONG, self._pong)
        environment.events.test_stop.add_listener(lambda **_: gevent.spawn(self._clock_round, "end"))
        if environment.web_ui is not None:
            environment.web_ui.app.add_url_rule("/drillkit/workers", "drillkit_workers",
                                                lambda: (json.dumps(self.status()), 200,
                                                         {"Content-Type": "application/json"}))
        gevent.spawn(self._watch)

    def status(self) -> dict[str, Any]:
        return {"connected": self.runner.worker_count, "workers": self.workers}

    def _event(self, kind: str, **fields: Any) -> None:
        if self.settings.events:
            append_event(self.settings.events, kind, **fields)

    def _history(self, environment, msg, **_kwargs) -> None:
        data, now = msg.data, time.time()
        name = str(data["worker"])
        w = self.workers.get(name)
        if w is None:
            w = self.workers[name] = {"client_id": msg.node_id, "host": data.get("host"), "joined": now,
                                      "ops": 0, "last_seen": now, "done": False, "lost": None}
            self._event(LOAD_WORKER_JOINED, worker=name, host=data.get("host"), client_id=msg.node_id)
            gevent.spawn(self._clock_round, "start", [name])
        w["last_seen"] = now
        if (data["lines"] or data.get("invoked")) and self.settings.evidence:
            recorder = self.recorders.get(name)
            if recorder is None:
                recorder = self.recorders[name] = OpRecorder.to_file(client_file(self.settings.evidence, name))
            recorder.write_lines(data["lines"], data["lines"].count("\n"), data.get("invoked") or "")
            w["ops"] = recorder.count
        if data.get("done") and not w["done"]:
            w["done"] = True
            self._event(LOAD_WORKER_DONE, worker=name, ops=w["ops"], sent=int(data.get("total") or 0))

    def _watch(self) -> None:
        """A worker that stopped shipping before it was done is lost: say which, when, with how much.
        (A live worker ships a batch every SHIP_EVERY, empty or not, from the moment it joins.)"""
        last_round = time.monotonic()
        while True:
            gevent.sleep(0.5)
            now = time.time()
            running = self.runner.state in (STATE_RUNNING, STATE_SPAWNING)
            for name, w in self.workers.items():
                if not w["done"] and w["lost"] is None and now - w["last_seen"] > LOST_AFTER:
                    w["lost"] = now
                    self._event(LOAD_WORKER_LOST, worker=name, host=w["host"], last_seen=w["last_seen"],
                                ops=w["ops"], silent_s=round(now - w["last_seen"], 3))
            if running and time.monotonic() - last_round >= CLOCK_EVERY:
                last_round = time.monotonic()
                gevent.spawn(self._clock_round, "during")

    def _clock_round(self, phase: str, names: list[str] | None = None) -> None:
        """CLOCK_ROUNDS pings to each live worker; the best round trip is its offset now."""
        for name in names or [n for n, w in self.workers.items() if w["lost"] is None]:
            client_id = self.workers[name]["client_id"]
            exchanges = []
            for _ in range(CLOCK_ROUNDS):
                self.seq += 1
                waiter = self.pending[(name, self.seq)] = AsyncResult()
                h0 = time.time()
                self.runner.send_message(PING, {"h0": h0, "seq": self.seq}, client_id)
                try:
                    w_t, h1 = waiter.get(timeout=1.0)
                except gevent.Timeout:
                    continue
                finally:
                    self.pending.pop((name, self.seq), None)
                exchanges.append((h0, w_t, h1))
            sample = best_of(name, phase, exchanges)
            if sample is not None and self.settings.evidence:
                append_clock_sample(self.settings.evidence, sample)

    def _pong(self, environment, msg, **_kwargs) -> None:
        waiter = self.pending.get((str(msg.data["worker"]), int(msg.data["seq"])))
        if waiter is not None:
            waiter.set((float(msg.data["w"]), time.time()))
