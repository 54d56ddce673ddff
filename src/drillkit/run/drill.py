"""`drillkit run`: scenario → system → load + chaos → evidence → measure → report, one direction.

Every ending (pass, fail, error, SIGINT, SIGTERM, safeguard) runs the rollbacks, stops the load,
tears the system down and keeps the evidence gathered so far.
"""

from __future__ import annotations

import _thread
import contextlib
import getpass
import hashlib
import json
import logging
import logging.handlers
import os
import platform
import queue
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from drillkit import __version__
from drillkit import evidence as ev
from drillkit import targets
from drillkit.chaos import CONFIG_KEY, ENV_KEY, EVENTS_CONFIG_KEY, EVENTS_ENV_KEY
from drillkit.errors import DrillAborted, EnvironmentProblem, EvidenceError, InputError, one_line
from drillkit.load import ENV_WORKLOAD, LoadRun, LoadSettings
from drillkit.load.canary import Canary, canary_workload
from drillkit.evidence import register
from drillkit.evidence.manifest import signing_key, write_manifest
from drillkit.evidence.signing import canonical_json
from drillkit.redact import redact_evidence
from drillkit.run.audit import write_final_state, write_final_table
from drillkit.run.preflight import check_environment, check_operator
from drillkit.run.safeguards import Limits, SafeguardMonitor
from drillkit.run.sampler import AlarmEvaluator, LagSampler
from drillkit.scenario import LoadedScenario, apply_vars, controls, load_experiment
from drillkit.targets.capabilities import (AwsApi, ClientConfigSpec, ClientRouting, FinalStateAudit, GlobalTable,
                                          ReplicationObservation, has, require)
from drillkit.targets.processes import MARK_ENV, shielded, start_ticks

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
        self._deferring = False
        self._deferred: BaseException | None = None

    def __enter__(self):
        self._read, self._write = os.pipe()
        for fd in (self._read, self._write):
            os.set_blocking(fd, False)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        # each handler saved before it is replaced, so __exit__ (or the except below) restores all
        self.previous = {}
        try:
            for sig, handler in ((signal.SIGTERM, self._on_term), (signal.SIGINT, self._on_int)):
                self.previous[sig] = signal.getsignal(sig)
                signal.signal(sig, handler)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _on_term(self, signum, frame):
        self._raise(DrillAborted("SIGTERM received"), signum, frame)

    def _on_int(self, signum, frame):
        self._raise(KeyboardInterrupt(), signum, frame)

    def _raise(self, exc: BaseException, signum: int, frame) -> None:
        if self._deferring:
            self._deferred = self._deferred or exc
        elif not _importing(frame, signum):
            raise exc

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A write that must land whole (an evidence file opened, truncated and not yet written is
        worse than none): a signal during it raises once it is done."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
            exc, self._deferred = self._deferred, None
        if exc is not None:
            raise exc

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


IMPORT_RETRY_S = 0.05


def _importing(frame, signum: int) -> bool:
    """True, and the signal delivered again IMPORT_RETRY_S later, when it landed inside an import.

    An exception raised inside the first import of a C extension leaves it half-initialised for
    the rest of the process (see IMPORTED_AHEAD): the signal waits for the import to end."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            retry = threading.Timer(IMPORT_RETRY_S, _thread.interrupt_main, args=(signum,))
            retry.daemon = True
            retry.start()
            return True
        frame = frame.f_back
    return False


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
    if loaded.controls_path is not None:
        data["readiness"]["controls"] = controls.EVIDENCE_FILE
    data["load"]["locustfile"] = str(loaded.locustfile_path)
    if loaded.workload_path is not None:
        data["load"]["workload"] = str(loaded.workload_path)
    data["source"] = str(loaded.path)
    data["vars"] = variables
    return data


class Environment:
    """Everything a running drill holds, in one place (Locust's Environment is the model): the
    scenario, the target, the event log, the progress sink, the stage timings, and the teardown
    stack on which every part that starts registers how it stops, so every ending unwinds the
    same way, in reverse order of starting."""

    def __init__(self, loaded: LoadedScenario, out: Path, progress: Progress):
        self.loaded = loaded
        self.scenario = loaded.scenario
        self.out = out
        self.events = out / ev.EVENTS
        self.progress = progress
        self.plugin = targets.plugin(self.scenario.system.kind)
        self.target = None
        self.stages: dict[str, float] = {}
        self.monitor: SafeguardMonitor | None = None
        self.teardown = ExitStack()
        self._last_seen = (0, 0)
        self.best_effort = False
        """Set for the teardown: from then on an event that cannot be written (the evidence folder
        gone, the disk full) is dropped, and the teardown goes on."""
        self.unrecorded: list[str] = []
        self._held: tuple[int, int] | None = None

    def hold_evidence(self) -> None:
        """Note which folder the evidence folder is, so that one deleted or replaced is noticed."""
        st = os.lstat(self.out)
        self._held = (st.st_dev, st.st_ino)

    def evidence_lost(self) -> bool:
        """The evidence folder is gone or another one took its place (something recreated its path)."""
        try:
            st = os.lstat(self.out)
        except OSError:
            return True
        return self._held is not None and (st.st_dev, st.st_ino) != self._held

    def event(self, kind: str, **fields) -> None:
        try:
            ev.append_event(self.events, kind, **fields)
        except OSError as exc:
            if not self.best_effort:
                raise
            self.unrecorded.append(f"{kind}: {exc.strerror or exc}")

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if not self.best_effort and self.evidence_lost():
            raise DrillAborted(f"the evidence folder {self.out} was deleted or replaced during the drill")
        self.progress(f"▶ {name}")
        self.event(ev.STAGE_START, stage=name)
        t0 = time.monotonic()
        try:
            yield
        finally:
            took = time.monotonic() - t0
            self.stages[name] = took
            self.event(ev.STAGE_END, stage=name, took_s=round(took, 6))
            seen = self.monitor.seen() if self.monitor else (0, 0)
            ops = f" · {sum(seen)} ops so far, {seen[1]} failed" if seen != self._last_seen else ""
            self._last_seen = seen
            self.progress(f"  {name} {took:.2f} s{ops}")

    def started(self, stop: Callable[[], object]) -> None:
        """Register how a part that just started stops."""
        self.teardown.callback(stop)

    def chaos_configuration(self) -> dict[str, str]:
        return {CONFIG_KEY: str(self.target.state_file), EVENTS_CONFIG_KEY: str(self.events)}


class _InterruptibleQueueHandler(logging.handlers.QueueHandler):
    """A signal handler that raises (chaoslib's SIGTERM handler raises InterruptExecution, ours
    DrillAborted) may land while a log record is being queued; logging would catch that exception
    as a failure to log, print it, and carry on as if no signal came. Let it through instead."""

    def handleError(self, record: logging.LogRecord) -> None:
        from chaoslib.exceptions import InterruptExecution

        exc = sys.exc_info()[1]
        if isinstance(exc, (InterruptExecution, DrillAborted)):
            raise exc
        super().handleError(record)


class Drill:
    def __init__(self, loaded: LoadedScenario, out: Path, variables: dict[str, str] | None = None,
                 progress: Progress | None = None, judge_with_probes: bool = True, confirmed: bool = False):
        self.judge_with_probes = judge_with_probes
        self.signing_key = signing_key()
        self.loaded = loaded
        self.scenario = loaded.scenario
        self.variables = variables or {}
        self.experiment = apply_vars(load_experiment(loaded.experiment_path), self.variables, str(loaded.path))
        targets.check_fit(loaded, self.experiment)
        check_operator(loaded, self.experiment)
        # absolute: the sandbox's services and Locust run in other working directories
        self.out = Path(out).absolute()
        check_environment(loaded, self.out, confirmed=confirmed)
        self.env = Environment(loaded, self.out, progress or (lambda _msg: None))
        self.abort_reason: str | None = None
        # on a system that holds data of its own, every key the drill's users write starts with the
        # drill's own prefix (a workload mapping, a locustfile's DrillUser), and the audit reads
        # only those: none of the other data is this drill's. A system born with the drill (the
        # sandbox) holds only the drill's keys, as they were written.
        self.key_prefix = "" if self.env.plugin.born_with_the_drill else f"dk{secrets.token_hex(4)}-"

    @property
    def stages(self) -> dict[str, float]:
        return self.env.stages

    def _register(self, event: str, **fields: Any) -> dict:
        """One entry in the register beside the evidence folder (drillkit.evidence.register)."""
        return register.append(self.out.parent, event, {"drill": self.out.name, "run_id": self.run_id,
                                                        "scenario": self.scenario.name, **fields}, self.signing_key)

    def _register_start(self, existed: bool) -> dict:
        """The `started` entry, before anything is started: a drill that cannot be registered does
        not run (and leaves no folder it made)."""
        readiness = self.scenario.readiness
        targets = self.scenario.targets
        try:
            return self._register(
                register.STARTED, kind=self.scenario.system.kind, system=readiness.system, owner=readiness.owner,
                cadence=readiness.cadence, objectives={"rto_s": targets.rto, "rpo_s": targets.rpo},
                operator=getpass.getuser(), host=socket.gethostname())
        except (InputError, EvidenceError) as exc:
            if not existed:
                with contextlib.suppress(OSError):
                    self.out.rmdir()
            raise InputError(f"the drill could not be registered, so it did not start: {exc}",
                             file=str(self.out.parent / register.REGISTER)) from exc

    def _register_end(self, event: str, **fields: Any) -> None:
        """The `sealed` or `discarded` entry. The folder is complete whatever happens here; a
        register that cannot take the entry is said, and `drillkit verify --register` names the
        drill as unsealed."""
        try:
            self._register(event, **fields)
        except (InputError, EvidenceError, OSError) as exc:
            self.env.progress(f"✗ not registered ({event}): {one_line(exc)}")

    def run(self) -> DrillOutcome:
        env = self.env
        existed = self.out.exists()
        prepare_out(self.out)
        self.run_id = secrets.token_hex(8)
        entry = self._register_start(existed)
        env.hold_evidence()
        env.events.touch()
        (self.out / ev.SCENARIO).write_text(yaml.safe_dump(_resolved_scenario(self.loaded, self.variables),
                                                           sort_keys=False))
        if self.loaded.workload is not None:
            (self.out / ev.WORKLOAD).write_text(self.loaded.workload.model_dump_json(indent=2))
        if self.loaded.controls_path is not None:  # the mapping this drill's report is rendered with, kept
            shutil.copyfile(self.loaded.controls_path, self.out / controls.EVIDENCE_FILE)
        provenance = {
            "operator": getpass.getuser(), "host": socket.gethostname(),
            "started_utc": datetime.now(timezone.utc).isoformat(), "versions": _versions(),
            "git_commit": _git_commit(self.loaded.path.parent), "command": "drillkit run",
            "scenario_file": str(self.loaded.path), "target": self.scenario.system.kind,
        }
        env.event(ev.DRILL_START, scenario=self.scenario.name, scope=self.key_prefix, pid=os.getpid(),
                  pid_start=start_ticks(os.getpid()))
        env.event(ev.DRILL_REGISTERED, register=register.REGISTER, seq=entry["seq"],
                  entry_sha256=hashlib.sha256(canonical_json(entry)).hexdigest(), signer=entry.get("signer"))
        reaped = targets.reap_stale()
        if reaped:
            env.event(ev.SANDBOX_REAPED, folders=reaped)
            env.progress(f"reaped {len(reaped)} sandbox(es) left by a killed drill")
        watchdog = env.monitor = SafeguardMonitor(self.out, self._limits())
        import_ahead(self.experiment)
        signals = _Signals()
        not_started: EnvironmentProblem | None = None
        try:
            with signals, watchdog:
                try:
                    self._drive(env, watchdog, signals, provenance)
                except KeyboardInterrupt:
                    signals.check(watchdog)
                    raise DrillAborted("SIGINT received")
        except DrillAborted as exc:
            self.abort_reason = exc.reason
        except EnvironmentProblem as exc:
            if env.target is None:  # the load's workers never all joined: the system was not touched
                not_started = exc
            else:
                self.abort_reason = f"harness error: {one_line(exc)}"
        except Exception as exc:
            self.abort_reason = f"harness error: {one_line(exc)}"
            with contextlib.suppress(OSError), open(self.out / ev.HARNESS_ERROR, "w") as fh:
                traceback.print_exc(file=fh)
        finally:
            with shielded():
                # the teardown never depends on the evidence folder: recording is best effort
                env.best_effort = True
                if self.abort_reason is not None:
                    env.event(ev.DRILL_ABORTED, reason=self.abort_reason)
                    env.progress(f"✗ aborted: {self.abort_reason}")
                with env.stage("teardown"):
                    if self.abort_reason is not None and env.target is None:
                        env.event(ev.ROLLBACKS_SKIPPED, reason="the system never came up: nothing to roll back")
                    env.teardown.close()
                env.event(ev.DRILL_END)
                provenance["ended_utc"] = datetime.now(timezone.utc).isoformat()
                if not env.evidence_lost():
                    with contextlib.suppress(OSError):
                        (self.out / ev.PROVENANCE).write_text(json.dumps(provenance, indent=2))
        if env.unrecorded or env.evidence_lost():
            why = env.unrecorded[0] if env.unrecorded else "deleted or replaced during the drill"
            aborted = f" (aborted: {self.abort_reason})" if self.abort_reason and not env.evidence_lost() else ""
            self._register_end(register.DISCARDED, reason=f"the evidence folder could not be kept ({why})")
            raise DrillAborted(f"{self.out}: the evidence folder could not be kept ({why}){aborted}; nothing judged, "
                               "the system was torn down all the same")
        if not_started is not None:
            shutil.rmtree(self.out, ignore_errors=True)
            self._register_end(register.DISCARDED, reason=f"not started: {one_line(not_started)}")
            raise not_started.in_file(str(self.loaded.path))
        with shielded():
            redact_evidence(self.out, self.experiment)
            summary = self._judge()
        return DrillOutcome(self.out, summary, self.stages)

    def _drive(self, env: Environment, watchdog: SafeguardMonitor, signals: "_Signals", provenance: dict) -> None:
        """Up, load, experiment, cooldown, audit: each part registers its stop as it starts."""
        spec = self.scenario.system
        load = self._prepare_load()
        env.started(load.stop)
        with env.stage(f"{spec.kind}_up"):
            target = env.target = env.plugin.up(spec, events_file=env.events, scenario_dir=self.loaded.path.parent)
        env.started(target.down)  # unwound last
        env.started(self._rollbacks_if_aborted)
        provenance["versions"].update(target.facts())
        watchdog.watch(env.plugin.attach(target.state_file).service_failure)  # its own handle too
        if has(target, AwsApi):
            watchdog.stop_when(env.plugin.attach(target.state_file).stop_condition, target.alarm_poll)
        for kind, fields in target.ready():
            env.event(kind, **fields)
        sampler = self._start_sampler(env)
        load = self._start_load(load, target.endpoint)
        env.started(load.stop)  # again: stopped before the system goes down
        for pid in load.pids():
            target.adopt("locust", pid)
        canary = self._start_canary(target.endpoint)
        with env.stage("warmup"):
            load.wait_first_ops()
            time.sleep(self.scenario.load.warmup)
        with env.stage("experiment"):
            journal = self._run_experiment(signals)
        status = journal.get("status")
        signals.check(watchdog)
        if status in ("interrupted", "aborted"):
            raise DrillAborted(f"experiment {status}")
        with env.stage("cooldown"):
            time.sleep(self._cooldown())
        signals.check(watchdog)
        for part in (load, canary, sampler):  # the audit sees the final state, not a moving one
            if part is not None:
                part.stop()
        with env.stage("audit"):
            (records, outside), source = self._audit(target)
        env.event(ev.AUDIT_DONE, records=records, region=source,
                  **({"scope": self.key_prefix, "outside_scope": outside} if self.key_prefix else {}))
        signals.check(watchdog)

    def _audit(self, target) -> tuple[tuple[int, int], str]:
        """Read the final state. When that fails, nothing is known of the data: the drill is
        aborted and its data measures are null ("not audited"), never losses."""
        try:
            auditor = require(target, FinalStateAudit)
            source = auditor.audit_source()
            written = write_final_state(auditor, self.out / ev.FINAL_STATE, self.key_prefix)
            if has(target, GlobalTable):
                write_final_table(target, self.out / ev.FINAL_TABLE)
            return written, source
        except Exception as exc:
            error = one_line(exc)
            self.env.event(ev.AUDIT_FAILED, error=error)
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

    def _start_sampler(self, env: Environment) -> LagSampler | None:
        """Replication lag, where the target can observe it; otherwise lag.csv holds only its header."""
        if not has(env.target, ReplicationObservation):
            LagSampler.write_header(self.out / ev.LAG)
            return None
        # its own handle: sampling re-reads the state file, which must never race this thread's
        # registry updates (adopt) on a shared one
        alarms = AlarmEvaluator(self.scenario.alarms, env.events) if self.scenario.alarms else None
        sampler = LagSampler(env.plugin.attach(env.target.state_file), self.out / ev.LAG,
                             interval=env.target.lag_interval, alarms=alarms).start()
        env.started(sampler.stop)
        return sampler

    def _prepare_load(self) -> LoadRun:
        """The drill's Locust, before the system is touched: distributed, the master and its local
        workers up and every expected worker joined (else an EnvironmentProblem, exit 2)."""
        spec = self.scenario.load
        extra = {ENV_WORKLOAD: str(self.out / ev.WORKLOAD)} if self.loaded.workload is not None else {}
        extra[MARK_ENV] = secrets.token_hex(16)  # what proves its processes ours to a reaper
        run = LoadRun(self.loaded.locustfile_path,
                      LoadSettings(events=str(self.env.events), request_timeout=spec.request_timeout),
                      spec.users, spec.spawn_rate or float(spec.users), spec.warmup + spec.duration, self.out,
                      workers=spec.workers, external_workers=spec.external_workers, master_bind=spec.master_bind,
                      master_port=spec.master_port, worker_timeout=spec.worker_timeout, extra_env=extra)
        if run.distributed:
            with self.env.stage("load_workers"):
                run.prepare(on_master=lambda host, port: self.env.event(
                    ev.LOAD_MASTER, host=host, port=port, workers=spec.workers, external_workers=spec.external_workers))
        return run

    def _start_load(self, run: LoadRun, endpoint: str) -> LoadRun:
        """Swarm the endpoint, with the settings only the system up can tell."""
        config = self._client_config()
        run.settings = replace(
            run.settings, request_timeout=self.scenario.load.request_timeout, key_prefix=self.key_prefix,
            region_header=self.env.target.region_header,
            client_config={"path": config.path, "ttl": config.ttl} if config is not None else None,
            home_regions=tuple(self.env.target.home_regions()) if has(self.env.target, GlobalTable) else ())
        run.start(endpoint)
        return run

    def _start_canary(self, endpoint: str) -> Canary | None:
        spec = self.scenario.load
        workload, off = canary_workload(self.loaded)
        if workload is None:
            if off:
                self.env.progress(f"note: {off}")
            return None
        canary = Canary(endpoint, self.out, interval=spec.canary, timeout=spec.request_timeout,
                        workload=workload, region_header=self.env.target.region_header,
                        key_prefix=self.key_prefix,
                        client_config=(config.path, config.ttl) if (config := self._client_config()) else None
                        ).start()
        self.env.started(canary.stop)
        return canary

    def _client_config(self) -> ClientConfigSpec | None:
        target = self.env.target
        return target.client_config() if has(target, ClientRouting) else None

    def _cooldown(self) -> float:
        spec = self.scenario.load.cooldown
        return spec if spec is not None else self.scenario.stable + 1.0

    def _run_experiment(self, signals: "_Signals") -> dict:
        """chaoslib logs to chaostoolkit.log through a queue: its SIGTERM handler logs too,
        and a signal landing in the middle of a file write would make that a reentrant write."""
        from chaoslib.experiment import run_experiment

        chaos_logger = logging.getLogger("chaostoolkit")
        chaos_logger.setLevel(logging.INFO)
        chaos_logger.propagate = False
        handler = logging.FileHandler(self.out / ev.CHAOS_LOG)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        records: queue.SimpleQueue = queue.SimpleQueue()
        to_queue = _InterruptibleQueueHandler(records)
        listener = logging.handlers.QueueListener(records, handler)
        chaos_logger.addHandler(to_queue)
        listener.start()
        try:
            return self._run_chaoslib(run_experiment, signals)
        finally:
            chaos_logger.removeHandler(to_queue)
            listener.stop()
            handler.close()

    def _run_chaoslib(self, run_experiment, signals: "_Signals") -> dict:
        """The journal as chaoslib returned it is kept at once, then again with the tolerances held:
        a safeguard's trip or a Ctrl-C landing in between leaves the first, never a truncated file."""
        config = self.env.chaos_configuration()
        os.environ[ENV_KEY] = config[CONFIG_KEY]
        os.environ[EVENTS_ENV_KEY] = config[EVENTS_CONFIG_KEY]
        settings = {"runtime": {"rollbacks": {"strategy": "always"}, "hypothesis": {"strategy": "default"}}}
        journal = run_experiment(self.experiment, settings=settings, experiment_vars=(config, {}))
        with signals.deferred():
            ev.write_atomic(self.out / ev.JOURNAL, json.dumps(journal, indent=2, default=str))
        _hold_tolerances(self.experiment, journal, config)
        with signals.deferred():
            ev.write_atomic(self.out / ev.JOURNAL, json.dumps(journal, indent=2, default=str))
        return journal

    def _rollbacks_if_aborted(self) -> None:
        """An abort outside chaoslib's run skipped its rollbacks: run them here, recorded as events."""
        from chaoslib.rollback import run_rollbacks

        if self.abort_reason is None:
            return
        kinds = {e["kind"] for e in ev.read_events(self.out)}
        if not self.experiment.get("rollbacks") or ev.ROLLBACKS_END in kinds:
            return
        self.env.event(ev.ROLLBACKS_START, reason="abort")
        try:
            for _ in run_rollbacks(self.experiment, self.env.chaos_configuration(), {}, None, None):
                pass
        except Exception as exc:
            self.env.event(ev.ROLLBACKS_ERROR, error=str(exc))
        self.env.event(ev.ROLLBACKS_END)

    def _run_probes(self, summary: dict) -> dict:
        """The shipped probes hold every check as one test (junit.xml, the file a CI job reads).
        They judge the same evidence through the same summarize(): when they disagree with the
        verdict, or could not run, the harness broke and the drill is aborted (still measured and
        reported)."""
        from drillkit.judge.summary import summarize
        from drillkit.judge.verdict import run_probes

        code = run_probes(self.out)
        probes = {"exit_code": code, "junit": ev.JUNIT, "log": "probes.log"}
        expected = {"pass": 0, "fail": 1}.get(summary["verdict"])
        if expected is not None and code != expected:
            reason = (f"the probes could not run (pytest exit {code}); see probes.log" if code not in (0, 1)
                      else f"the probes gave pytest exit {code} on a drill judged {summary['verdict']}; see probes.log")
            self.env.event(ev.DRILL_ABORTED, reason=reason)
            self.env.progress(f"✗ aborted: {reason}")
            summary = summarize(self.out)
        summary["probes"] = probes
        return summary

    def _judge(self) -> dict:
        from drillkit.judge.summary import summarize, write_summary

        with self.env.stage("measure"):
            summary = summarize(self.out)
            write_summary(self.out, summary)
        if self.judge_with_probes:
            with self.env.stage("probes"):
                summary = self._run_probes(summary)
                write_summary(self.out, summary)
        with self.env.stage("report"):
            from drillkit.report import render_report

            render_report(self.out)
        manifest = write_manifest(self.out, key=self.signing_key)
        measures = summary.get("measures") or {}
        self._register_end(register.SEALED, verdict=summary["verdict"],
                           manifest_sha256=hashlib.sha256(manifest.read_bytes()).hexdigest(),
                           measures={k: measures.get(k) for k in ("rto_s", "rpo_s", "writes_lost")})
        return summary


IMPORTED_AHEAD = ("numpy", "pandas", "pyarrow", "pyarrow.compute", "pyarrow.csv", "pyarrow.json", "psycopg",
                  "chaoslib.rollback", "drillkit.judge.checks", "drillkit.judge.summary", "drillkit.measure")
"""What the drill's window (from its signal handlers going in to their coming out) may import.

A signal during the window raises in the main thread wherever it stands (that is how an
interrupt or a safeguard stops chaoslib). Landing inside the first import of a C extension it
leaves that extension half-initialised: the next import in the same process then got
`SystemError: ... returned a result with an exception set` out of numpy, or a SIGSEGV in
pandas' CSV parser, and the drill ended in an internal error with no summary. Imported here,
before the window, an interrupt can only land in Python code that unwinds cleanly."""


def import_ahead(experiment: dict) -> None:
    """Import IMPORTED_AHEAD and the module of every Python activity of `experiment` (chaoslib
    would import them inside the window)."""
    import importlib

    for name in IMPORTED_AHEAD:
        importlib.import_module(name)
    activities = [*experiment.get("method", []), *experiment.get("rollbacks", []),
                  *(experiment.get("steady-state-hypothesis") or {}).get("probes", [])]
    for activity in activities:
        provider = activity.get("provider") if isinstance(activity, dict) else None
        if isinstance(provider, dict) and provider.get("type") == "python" and isinstance(provider.get("module"), str):
            with contextlib.suppress(ImportError):  # chaoslib reports it, in its journal, as the user's error
                importlib.import_module(provider["module"])


def _hold_tolerances(experiment: dict, journal: dict, extra: dict) -> None:
    """The verdict of each method probe's tolerance, taken as chaoslib takes it, while the system is up."""
    from chaoslib.configuration import load_configuration
    from chaoslib.exceptions import ChaosException
    from chaoslib.secret import load_secrets

    from drillkit.judge.checks import hold_tolerances

    try:
        configuration = load_configuration(experiment.get("configuration") or {}, extra)
        secrets = load_secrets(experiment.get("secrets") or {}, configuration)
    except ChaosException:  # chaoslib refused them, and so ended the experiment: its status judges it
        return
    hold_tolerances(journal, configuration, secrets)
