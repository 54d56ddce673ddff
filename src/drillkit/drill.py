"""`drillkit run`: scenario → system → load + chaos → evidence → measure → report, one direction.

Every ending (pass, fail, error, SIGINT, SIGTERM, safeguard) runs the rollbacks, stops the load,
tears the system down and keeps the evidence gathered so far.
"""

from __future__ import annotations

import getpass
import json
import logging
import logging.handlers
import os
import platform
import queue
import signal
import socket
import subprocess
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import yaml

from drillkit import __version__
from drillkit import evidence as ev
from drillkit.audit import write_final_state
from drillkit.chaos import CONFIG_KEY, ENV_KEY
from drillkit.errors import DrillAborted, EnvironmentProblem, InputError, one_line
from drillkit.load import LoadRun
from drillkit.load.canary import Canary
from drillkit.manifest import signing_key, write_manifest
from drillkit.preflight import check_environment
from drillkit.redact import redact_evidence
from drillkit.safeguards import Limits, SafeguardMonitor
from drillkit.sampler import LagSampler
from drillkit.sandbox.processes import shielded
from drillkit.sandbox.system import Sandbox, reap_stale
from drillkit.scenario import LoadedScenario, apply_vars, load_experiment

Progress = Callable[[str], None]


@dataclass
class DrillOutcome:
    folder: Path
    summary: dict
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return self.summary.get("verdict", "aborted")


def default_out(name: str, base: Path = Path("reports")) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return base / f"{stamp}-{name}"


def prepare_out(out: Path) -> Path:
    if out.exists() and any(out.iterdir()):
        raise InputError("output folder exists and is not empty", field="--out", file=str(out))
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise EnvironmentProblem(f"output folder is not writable: {exc.strerror}", file=str(out)) from None
    return out


class _Signals:
    """SIGTERM becomes DrillAborted in the main thread; SIGINT stays KeyboardInterrupt.

    During the experiment chaoslib installs its own handlers, and the exception they raise
    can be swallowed (by logging's handleError when the signal lands inside a log write, by
    an activity's `except Exception`). So every signal is also noted through a wakeup fd,
    which the interpreter writes at C level whatever the Python handler does; `check`
    turns a signal that was caught but never acted on into the abort it should have been.
    """

    def __init__(self):
        self.received: list[str] = []

    def __enter__(self):
        self._read, self._write = os.pipe()
        for fd in (self._read, self._write):
            os.set_blocking(fd, False)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        self.previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, self._on_term),
                         signal.SIGINT: signal.signal(signal.SIGINT, self._on_int)}
        return self

    def _on_term(self, signum, frame):
        raise DrillAborted("SIGTERM received")

    def _on_int(self, signum, frame):
        raise KeyboardInterrupt

    def caught(self) -> list[str]:
        """Names of every signal delivered so far, in order."""
        try:
            while chunk := os.read(self._read, 512):
                self.received += [signal.Signals(n).name for n in chunk]
        except BlockingIOError:
            pass
        return self.received

    def check(self, watchdog: SafeguardMonitor) -> None:
        caught = self.caught()
        if "SIGTERM" in caught:
            raise DrillAborted("SIGTERM received")
        if watchdog.tripped:
            raise DrillAborted(watchdog.tripped)
        if caught:
            raise DrillAborted(f"{caught[-1]} received")

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._read)
        os.close(self._write)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"drillkit": __version__, "python": platform.python_version()}
    for dist in ("chaostoolkit", "chaostoolkit-lib", "locust", "psycopg", "pandas"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "absent"
    return out


def _git_commit(where: Path) -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5)
        return res.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _resolved_scenario(loaded: LoadedScenario, variables: dict[str, str]) -> dict:
    data = loaded.scenario.model_dump(mode="json", exclude_none=True)
    data["experiment"] = str(loaded.experiment_path)
    data["load"]["locustfile"] = str(loaded.locustfile_path)
    data["source"] = str(loaded.path)
    data["vars"] = variables
    return data


class Drill:
    def __init__(self, loaded: LoadedScenario, out: Path, variables: dict[str, str] | None = None,
                 progress: Progress | None = None, judge_with_probes: bool = True):
        self.judge_with_probes = judge_with_probes
        self.signing_key = signing_key()
        self.loaded = loaded
        self.scenario = loaded.scenario
        self.variables = variables or {}
        self.progress = progress or (lambda _msg: None)
        self.experiment = apply_vars(load_experiment(loaded.experiment_path), self.variables, str(loaded.path))
        # absolute: the sandbox's services and Locust run in other working directories
        self.out = Path(out).absolute()
        check_environment(self.scenario, self.out)
        self.events = self.out / ev.EVENTS
        self.stages: dict[str, float] = {}
        self.monitor: SafeguardMonitor | None = None
        self._last_seen = (0, 0)

    def event(self, kind: str, **fields) -> None:
        ev.append_event(self.events, kind, **fields)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.progress(f"▶ {name}")
        self.event("stage.start", stage=name)
        t0 = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - t0
            self.stages[name] = took
            self.event("stage.end", stage=name, took_s=round(took, 6))
            seen = self.monitor.seen() if self.monitor else (0, 0)
            ops = f" · {sum(seen)} ops so far, {seen[1]} failed" if seen != self._last_seen else ""
            self._last_seen = seen
            self.progress(f"  {name} {took:.2f} s{ops}")

    def run(self) -> DrillOutcome:
        prepare_out(self.out)
        self.events.touch()
        (self.out / ev.SCENARIO).write_text(yaml.safe_dump(_resolved_scenario(self.loaded, self.variables),
                                                           sort_keys=False))
        provenance = {
            "operator": getpass.getuser(), "host": socket.gethostname(),
            "started_utc": datetime.now(timezone.utc).isoformat(), "versions": _versions(),
            "git_commit": _git_commit(self.loaded.path.parent), "command": "drillkit run",
            "scenario_file": str(self.loaded.path),
        }
        self.event("drill.start", scenario=self.scenario.name)
        reaped = reap_stale()
        if reaped:
            self.event("sandbox.reaped", folders=reaped)
            self.progress(f"reaped {len(reaped)} sandbox(es) left by a killed drill")
        sandbox = load = sampler = canary = None
        abort_reason: str | None = None
        watchdog = self.monitor = SafeguardMonitor(self.out, self._limits())
        signals = _Signals()
        try:
            with signals, watchdog:
                try:
                    with self.stage("sandbox_up"):
                        sandbox = Sandbox.up(self.scenario.system, events_file=self.events)
                    provenance["versions"]["postgresql"] = sandbox.state.pg_version
                    watchdog.watch(Sandbox.attach(sandbox.state_file).service_failure)  # its own handle too
                    rows = sandbox.wait_streaming()
                    self.event("replication.streaming", standbys=rows)
                    # its own handle: sampling re-reads the state file, which must never race
                    # this thread's registry updates (adopt) on a shared one
                    sampler = LagSampler(Sandbox.attach(sandbox.state_file), self.out / ev.LAG).start()
                    load = self._start_load(sandbox.endpoint)
                    sandbox.adopt("locust", load.process.pid)
                    canary = self._start_canary(sandbox.endpoint)
                    with self.stage("warmup"):
                        load.wait_first_ops()
                        time.sleep(self.scenario.load.warmup)
                    with self.stage("experiment"):
                        journal = self._run_experiment(sandbox)
                    status = journal.get("status")
                    signals.check(watchdog)
                    if status in ("interrupted", "aborted"):
                        raise DrillAborted(f"experiment {status}")
                    with self.stage("cooldown"):
                        time.sleep(self._cooldown())
                    signals.check(watchdog)
                    self._stop_clients(load, canary, sampler)
                    with self.stage("audit"):
                        records, region = self._audit(sandbox)
                    self.event("audit.done", records=records, region=region)
                    signals.check(watchdog)
                except KeyboardInterrupt:
                    signals.check(watchdog)
                    raise DrillAborted("SIGINT received")
        except DrillAborted as exc:
            abort_reason = exc.reason
        except Exception as exc:
            abort_reason = f"harness error: {one_line(exc)}"
            with open(self.out / ev.HARNESS_ERROR, "w") as fh:
                traceback.print_exc(file=fh)
        finally:
            with shielded():
                if abort_reason is not None:
                    self.event("drill.aborted", reason=abort_reason)
                    self.progress(f"✗ aborted: {abort_reason}")
                self._teardown(load, canary, sampler, sandbox, rollback=abort_reason is not None)
                self.event("drill.end")
                provenance["ended_utc"] = datetime.now(timezone.utc).isoformat()
                (self.out / ev.PROVENANCE).write_text(json.dumps(provenance, indent=2))
        with shielded():
            redact_evidence(self.out, self.experiment)
            summary = self._judge()
        return DrillOutcome(self.out, summary, self.stages)

    def _audit(self, sandbox) -> tuple[int, str]:
        """Read the serving region's final state. When that fails, nothing is known of the data:
        the drill is aborted and its data measures are null ("not audited"), never losses."""
        try:
            region = sandbox.serving_region()
            return write_final_state(sandbox, self.out / ev.FINAL_STATE), region
        except Exception as exc:
            error = one_line(exc)
            self.event("audit.failed", error=error)
            raise DrillAborted(f"the audit could not read the final state ({error}); "
                               "the data measures are unknown (not audited)") from exc

    def _limits(self) -> Limits:
        guards = self.scenario.safeguards
        expected = guards.expected_outage
        if expected is None:
            expected = self.scenario.targets.rto or 30.0
        rate = guards.max_error_rate
        return Limits(max_duration=guards.max_duration, error_rate=rate.above if rate else None,
                      error_rate_sustained=rate.sustained if rate else 0.0, expected_outage=expected,
                      max_lost_writes=guards.max_lost_writes)

    def _start_load(self, endpoint: str) -> LoadRun:
        load_spec = self.scenario.load
        run = LoadRun(self.loaded.locustfile_path, endpoint, load_spec.users,
                      load_spec.spawn_rate or float(load_spec.users), load_spec.warmup + load_spec.duration,
                      self.out, load_spec.request_timeout)
        run.start()
        return run

    def _start_canary(self, endpoint: str) -> Canary | None:
        spec = self.scenario.load
        if not spec.canary:
            return None
        return Canary(endpoint, self.out, interval=spec.canary, timeout=spec.request_timeout).start()

    @staticmethod
    def _stop_clients(load, canary, sampler) -> None:
        for part in (load, canary, sampler):
            if part is not None:
                part.stop()

    def _cooldown(self) -> float:
        spec = self.scenario.load.cooldown
        return spec if spec is not None else self.scenario.stable + 1.0

    def _run_experiment(self, sandbox) -> dict:
        """chaoslib logs to chaostoolkit.log through a queue: its SIGTERM handler logs too,
        and a signal landing in the middle of a file write would make that a reentrant write."""
        from chaoslib.experiment import run_experiment

        chaos_logger = logging.getLogger("chaostoolkit")
        chaos_logger.setLevel(logging.INFO)
        chaos_logger.propagate = False
        handler = logging.FileHandler(self.out / ev.CHAOS_LOG)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        records: queue.SimpleQueue = queue.SimpleQueue()
        to_queue = logging.handlers.QueueHandler(records)
        listener = logging.handlers.QueueListener(records, handler)
        chaos_logger.addHandler(to_queue)
        listener.start()
        try:
            return self._run_chaoslib(run_experiment, sandbox)
        finally:
            chaos_logger.removeHandler(to_queue)
            listener.stop()
            handler.close()

    def _run_chaoslib(self, run_experiment, sandbox) -> dict:
        os.environ[ENV_KEY] = str(sandbox.state_file)
        settings = {"runtime": {"rollbacks": {"strategy": "always"}, "hypothesis": {"strategy": "default"}}}
        journal = run_experiment(self.experiment, settings=settings,
                                 experiment_vars=({CONFIG_KEY: str(sandbox.state_file)}, {}))
        (self.out / ev.JOURNAL).write_text(json.dumps(journal, indent=2, default=str))
        return journal

    def _teardown(self, load, canary, sampler, sandbox, rollback: bool) -> None:
        with self.stage("teardown"):
            self._stop_clients(load, canary, sampler)
            if rollback:
                if sandbox is not None:
                    self._emergency_rollbacks(sandbox)
                else:
                    self.event("rollbacks.skipped", reason="the system never came up: nothing to roll back")
            if sandbox is not None:
                sandbox.down()

    def _emergency_rollbacks(self, sandbox) -> None:
        """An abort outside chaoslib's run skipped its rollbacks: run them here, recorded as events."""
        from chaoslib.rollback import run_rollbacks

        kinds = {e["kind"] for e in ev.read_events(self.out)}
        if not self.experiment.get("rollbacks") or "rollbacks.end" in kinds:
            return
        self.event("rollbacks.start", reason="abort")
        try:
            config = {CONFIG_KEY: str(sandbox.state_file)}
            for _ in run_rollbacks(self.experiment, config, {}, None, None):
                pass
        except Exception as exc:
            self.event("rollbacks.error", error=str(exc))
        self.event("rollbacks.end")

    def _probe_verdict(self, summary: dict) -> dict:
        """The verdict is the probes' verdict: the same tests a CI job runs on the evidence."""
        from drillkit.measure import measure
        from drillkit.probes_plugin import run_probes

        code = run_probes(self.out)
        probes = {"exit_code": code, "junit": ev.JUNIT, "log": "probes.log"}
        if summary["verdict"] != "aborted":
            if code in (0, 1):
                summary["verdict"] = "pass" if code == 0 else "fail"
            else:  # the judge itself broke: the drill is aborted, and still measured and reported
                reason = f"the probes could not run (pytest exit {code}); see probes.log"
                self.event("drill.aborted", reason=reason)
                self.progress(f"✗ aborted: {reason}")
                summary = measure(self.out)
        summary["probes"] = probes
        return summary

    def _judge(self) -> dict:
        from drillkit.measure import measure, write_summary

        with self.stage("measure"):
            summary = measure(self.out)
            write_summary(self.out, summary)
        if self.judge_with_probes:
            with self.stage("probes"):
                summary = self._probe_verdict(summary)
                write_summary(self.out, summary)
        with self.stage("report"):
            from drillkit.report import render_report

            render_report(self.out)
        write_manifest(self.out, key=self.signing_key)
        return summary
