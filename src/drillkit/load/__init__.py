"""Load: Locust in subprocesses (never in the drill's process: gevent), recording every op.

One headless process, or Locust's distributed mode (a master and its workers, here or on other
hosts). The recording user base class lives in drillkit.load.users and the Locust side of the
recording in drillkit.load.recording, imported only by locustfiles.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from drillkit.errors import EnvironmentProblem, ServiceError
from drillkit.evidence import REQUESTS_DIR
from drillkit.evidence.recorder import CANARY_CLIENT, client_file
from drillkit.targets.processes import shielded

SETTINGS_ENV = "DRILLKIT_LOAD"
"""The drill's settings for its Locust processes, as JSON (LoadSettings): Locust's custom argument
--drillkit-load reads it, and a master forwards it to every worker that connects, wherever it runs."""
ENV_WORKLOAD = "DRILLKIT_WORKLOAD"
"""The workload mapping's file (the mapped locustfile reads it when Locust imports it)."""
HOME_HEADER = "X-Home-Region"
"""The header a user names its home region in (the sandbox router's latency policy reads it)."""


@dataclass(frozen=True)
class LoadSettings:
    """What every Locust process of a drill needs to know. `evidence` and `events` are the
    harness's folder and event log: written by the process that records (one process, or the
    master), never by a worker on another host."""

    evidence: str | None = None
    events: str | None = None
    request_timeout: float = 1.0
    key_prefix: str = ""
    """Prefixed to every key the drill's users write, so the audit of a system that holds other
    data reads only this drill's keys."""
    region_header: str | None = "X-Region"
    client_config: dict[str, Any] | None = None
    """Routing config-json: `{"path": config.json on the endpoint, "ttl": seconds a client keeps it}`."""
    home_regions: tuple[str, ...] = ()
    """Routing latency (active-active): the regions users are homed in, in turn."""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "LoadSettings":
        doc = json.loads(text)
        doc["home_regions"] = tuple(doc.get("home_regions") or ())
        return cls(**doc)


class ClientConfig:
    """A client's copy of the frontend's config.json, as a single-page app keeps it: fetched when
    it has none or its copy is `ttl` old (counted from the answer), and kept when a fetch fails. `api_url` is the backend
    the client calls now; `fetch(path)` returns the document, or None when the fetch failed.

    The first copy counts as already between 0 and `ttl` old (drawn uniformly): a population of
    clients loaded the page at different times, so their copies expire spread over the TTL, not
    together when the load generator happened to start them."""

    def __init__(self, path: str, ttl: float, fetch: Callable[[str], dict[str, Any] | None]):
        self.path, self.ttl, self.fetch = path, ttl, fetch
        self.doc: dict[str, Any] | None = None
        self.fetched_at = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: LoadSettings, fetch: Callable[[str], dict[str, Any] | None]
                      ) -> "ClientConfig | None":
        spec = settings.client_config
        return None if not spec else cls(spec["path"], float(spec["ttl"]), fetch)

    def api_url(self) -> str | None:
        with self._lock:
            if self.doc is None or time.monotonic() - self.fetched_at >= self.ttl:
                doc = self.fetch(self.path)
                if doc is not None and isinstance(doc.get("apiUrl"), str):
                    # a copy's age counts from its answer, as a browser's cache counts it: the
                    # next fetch starts at least `ttl` after this one ended
                    age = random.uniform(0.0, self.ttl) if self.doc is None else 0.0
                    self.doc, self.fetched_at = doc, time.monotonic() - age
            return None if self.doc is None else self.doc["apiUrl"].rstrip("/")


class LoadRun:
    """The drill's Locust for at most `run_time` seconds: one headless process (`workers` 0 and
    `external_workers` 0), or Locust's distributed mode, a master with `workers` local worker
    processes plus `external_workers` started elsewhere (other hosts, the Locust operator on
    Kubernetes) that connect to `master_bind`:`master_port`.

    Distributed, `prepare()` starts the master and the local workers and waits until every
    expected worker has joined, before the system under test is touched; `start(host)` then
    swarms through the master's web API (Locust's own remote control)."""

    def __init__(self, locustfile: Path, settings: LoadSettings, users: int, spawn_rate: float,
                 run_time: float, evidence: Path, workers: int = 0, external_workers: int = 0,
                 master_bind: str = "127.0.0.1", master_port: int = 0, worker_timeout: float = 30.0,
                 extra_env: dict[str, str] | None = None):
        self.locustfile = Path(locustfile).absolute()
        self.evidence = Path(evidence).absolute()  # Locust runs in the locustfile's folder
        self.settings = replace(settings, evidence=str(self.evidence))
        self.users, self.spawn_rate, self.run_time = users, spawn_rate, run_time
        self.workers, self.external_workers = workers, external_workers
        self.master_bind, self.master_port, self.worker_timeout = master_bind, master_port, worker_timeout
        self.extra_env = dict(extra_env or {})
        self.process: subprocess.Popen | None = None
        self.worker_processes: list[subprocess.Popen] = []
        self.web_port: int | None = None
        self.swarmed = False
        self.log = self.evidence / "locust.log"

    @property
    def distributed(self) -> bool:
        return self.workers + self.external_workers > 0

    @property
    def expected_workers(self) -> int:
        return self.workers + self.external_workers

    @property
    def requests_dir(self) -> Path:
        return self.evidence / REQUESTS_DIR

    def pids(self) -> list[int]:
        return [p.pid for p in (self.process, *self.worker_processes) if p is not None]

    def _env(self) -> dict[str, str]:
        return {**os.environ, **self.extra_env, SETTINGS_ENV: self.settings.to_json()}

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "locust", "-f", str(self.locustfile), *args, "--loglevel", "WARNING",
               "--skip-log-setup"]
        with open(self.log, "ab") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env or self._env(), start_new_session=True, cwd=str(self.locustfile.parent))

    def _run_time(self) -> str:
        return f"{max(1, int(self.run_time + 0.999))}s"

    @property
    def stop_timeout(self) -> int:
        """Seconds Locust waits at the stop for the operations in flight (its --stop-timeout, whole
        seconds): no user starts another, and each in flight has its request timeout to end. What
        is still in flight after it is left invoked, never completed: indeterminate."""
        return math.ceil(self.settings.request_timeout) + 1

    def prepare(self, on_master: Callable[[str, int], None] | None = None) -> None:
        """Distributed: the master and the local workers up, every expected worker joined. A worker
        that does not join within `worker_timeout` is an EnvironmentProblem naming the field, with
        every process this started stopped again."""
        if not self.distributed:
            return
        from drillkit.net import free_port

        self.requests_dir.mkdir(parents=True, exist_ok=True)
        self.master_port = self.master_port or free_port()
        self.web_port = free_port()
        try:  # whatever ends the wait (a signal too), nothing this started outlives it
            self._start_master(on_master)
        except BaseException:
            with shielded():
                self.stop()
            raise

    def _start_master(self, on_master: Callable[[str, int], None] | None) -> None:
        self.process = self._spawn(["--master", "--master-bind-host", self.master_bind,
                                    "--master-bind-port", str(self.master_port), "--web-host", "127.0.0.1",
                                    "--web-port", str(self.web_port), "--stop-timeout", str(self.stop_timeout)])
        if on_master is not None:
            on_master(self.master_bind, self.master_port)
        for _ in range(self.workers):
            self.worker_processes.append(self._spawn(["--worker", "--master-host", "127.0.0.1",
                                                      "--master-port", str(self.master_port)]))
        deadline = time.monotonic() + self.worker_timeout
        joined: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"the Locust master exited ({self.process.returncode}) before its workers "
                                   f"joined; see {self.log}: {self._log_tail()}")
            joined = self.worker_status().get("workers") or {}
            if len(joined) >= self.expected_workers:
                return
            time.sleep(0.1)
        field = "load.external_workers" if self.external_workers else "load.workers"
        raise EnvironmentProblem(
            f"{len(joined)} of {self.expected_workers} Locust workers joined the master at "
            f"{self.master_bind}:{self.master_port} within {self.worker_timeout:g} s"
            + (f" (joined: {', '.join(sorted(joined))})" if joined else ""), field=field)

    def worker_status(self) -> dict[str, Any]:
        """The master's view of its workers (drillkit.load.recording): {} when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/drillkit/workers", timeout=2) as resp:
                return json.loads(resp.read())
        except (OSError, ValueError):
            return {}

    def start(self, host: str) -> None:
        self.requests_dir.mkdir(parents=True, exist_ok=True)
        if not self.distributed:
            self.process = self._spawn(["--headless", "-u", str(self.users), "-r", str(self.spawn_rate),
                                        "-t", self._run_time(), "--host", host, "--only-summary",
                                        "--stop-timeout", str(self.stop_timeout), "--exit-code-on-error", "0"])
            return
        form = urllib.parse.urlencode({"user_count": self.users, "spawn_rate": self.spawn_rate, "host": host,
                                       "run_time": self._run_time()}).encode()
        self.swarmed = True   # from here on the workers may be running: the stop is a graceful one
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/swarm", data=form, timeout=10) as resp:
                answer = json.loads(resp.read())
        except (OSError, ValueError) as exc:
            raise ServiceError(f"the Locust master did not start the load: {exc}; see {self.log}") from None
        if not answer.get("success"):
            raise ServiceError(f"the Locust master did not start the load: {answer.get('message')}")

    def wait_first_ops(self, timeout: float = 20) -> float:
        """Block until the load's first operation is on disk; returns when it happened. The canary's
        history (requests/canary.jsonl) is not the load's: counting it, a drill whose Locust took
        longer to start than the warmup lasted injected its fault before any user had sent a request
        (CI: every object write of the objects drill came after the region loss)."""
        canary = client_file(self.evidence, CANARY_CLIENT).name
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(f.name != canary and f.stat().st_size > 0 for f in self.requests_dir.glob("*.jsonl")):
                return time.time()
            if self.process is not None and self.process.poll() is not None:
                raise ServiceError(f"Locust exited ({self.process.returncode}) before its first request; "
                                   f"see {self.log}: {self._log_tail()}")
            time.sleep(0.02)
        raise ServiceError(f"Locust made no request within {timeout:.0f}s; see {self.log}")

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10) -> int | None:
        """Graceful stop, then kill what hangs. Distributed, the master first stops the test, so
        every worker ships what it recorded (load.worker_done) before anything is signalled. Locust
        is given its stop timeout to let the operations in flight end before anything is killed."""
        timeout = max(timeout, self.stop_timeout + 5)
        if self.swarmed and self.process is not None and self.process.poll() is None:
            deadline = time.monotonic() + timeout
            # Locust's /stop is POST only (a GET was a 405, so the workers were never told to stop:
            # the master's SIGTERM below quit them and cut off their last histories). It answers
            # once every worker has stopped, up to its stop timeout and more.
            stop = urllib.request.Request(f"http://127.0.0.1:{self.web_port}/stop", data=b"", method="POST")
            try:
                urllib.request.urlopen(stop, timeout=timeout).read()
            except OSError:
                pass  # the master is gone or slow: the wait below, then the signals, settle it
            while time.monotonic() < deadline:
                workers = (self.worker_status().get("workers") or {}).values()
                if all(w.get("done") or w.get("lost") for w in workers):
                    break
                time.sleep(0.1)
            # A stopped worker leaves the master's list and rejoins it stop_timeout later: a master
            # quitting in between never tells it to quit, and a worker on another host runs on.
            rejoin = time.monotonic() + self.stop_timeout + 5
            while time.monotonic() < rejoin:
                status = self.worker_status()
                live = [w for w in (status.get("workers") or {}).values() if not w.get("lost")]
                if int(status.get("connected") or 0) >= len(live):
                    break
                time.sleep(0.1)
        code = _stop_group(self.process, timeout)
        for worker in self.worker_processes:
            _stop_group(worker, timeout)
        return code


def _stop_group(proc: subprocess.Popen | None, timeout: float) -> int | None:
    """SIGTERM a process's group (Locust flushes on `quitting`), SIGKILL it if it hangs."""
    if proc is None:
        return None
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.returncode
