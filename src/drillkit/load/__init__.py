"""Load: Locust runs headless in a subprocess (never in the drill's process: gevent), recording every op.

The recording user base class lives in drillkit.load.users, imported only by locustfiles.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from drillkit.errors import SandboxError
from drillkit.evidence import REQUESTS_DIR

ENV_EVIDENCE = "DRILLKIT_EVIDENCE"
ENV_TIMEOUT = "DRILLKIT_REQUEST_TIMEOUT"
ENV_WORKLOAD = "DRILLKIT_WORKLOAD"
ENV_REGION_HEADER = "DRILLKIT_REGION_HEADER"
ENV_KEY_PREFIX = "DRILLKIT_KEY_PREFIX"
"""Prefixed to every key the drill's users write, so the audit of a system that holds other data
reads only this drill's keys."""
ENV_CLIENT_CONFIG = "DRILLKIT_CLIENT_CONFIG"
ENV_HOME_REGIONS = "DRILLKIT_HOME_REGIONS"
"""Routing latency (active-active): the regions users are homed in, comma-separated, in turn."""
HOME_HEADER = "X-Home-Region"
"""The header a user names its home region in (the sandbox router's latency policy reads it)."""
"""Routing config-json: `{"path": config.json on the endpoint, "ttl": seconds a client keeps it}`."""


class ClientConfig:
    """A client's copy of the frontend's config.json, as a single-page app keeps it: fetched when
    it has none or its copy is `ttl` old, and kept when a fetch fails. `api_url` is the backend
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
    def from_environment(cls, fetch: Callable[[str], dict[str, Any] | None]) -> "ClientConfig | None":
        spec = os.environ.get(ENV_CLIENT_CONFIG)
        if not spec:
            return None
        doc = json.loads(spec)
        return cls(doc["path"], float(doc["ttl"]), fetch)

    def api_url(self) -> str | None:
        with self._lock:
            now = time.monotonic()
            if self.doc is None or now - self.fetched_at >= self.ttl:
                doc = self.fetch(self.path)
                if doc is not None and isinstance(doc.get("apiUrl"), str):
                    age = random.uniform(0.0, self.ttl) if self.doc is None else 0.0
                    self.doc, self.fetched_at = doc, now - age
            return None if self.doc is None else self.doc["apiUrl"].rstrip("/")


class LoadRun:
    """One headless Locust process driving the global endpoint for at most `run_time` seconds."""

    def __init__(self, locustfile: Path, host: str, users: int, spawn_rate: float, run_time: float,
                 evidence: Path, request_timeout: float, extra_env: dict[str, str] | None = None):
        self.locustfile = Path(locustfile).absolute()
        self.host = host
        self.users = users
        self.spawn_rate = spawn_rate
        self.run_time = run_time
        self.evidence = Path(evidence).absolute()  # Locust runs in the locustfile's folder
        self.request_timeout = request_timeout
        self.extra_env = dict(extra_env or {})
        self.process: subprocess.Popen | None = None
        self.log = evidence / "locust.log"

    @property
    def requests_dir(self) -> Path:
        return self.evidence / REQUESTS_DIR

    def start(self) -> None:
        self.requests_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.extra_env, ENV_EVIDENCE: str(self.evidence),
               ENV_TIMEOUT: str(self.request_timeout)}
        cmd = [sys.executable, "-m", "locust", "-f", str(self.locustfile), "--headless",
               "-u", str(self.users), "-r", str(self.spawn_rate), "-t", f"{max(1, int(self.run_time + 0.999))}s",
               "--host", self.host, "--only-summary", "--stop-timeout", "2", "--loglevel", "WARNING",
               "--exit-code-on-error", "0", "--skip-log-setup"]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, start_new_session=True, cwd=str(self.locustfile.parent))

    def wait_first_ops(self, timeout: float = 20) -> float:
        """Block until the first operation is on disk; returns when it happened."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(f.stat().st_size > 0 for f in self.requests_dir.glob("*.jsonl")):
                return time.time()
            if self.process is not None and self.process.poll() is not None:
                raise SandboxError(f"Locust exited ({self.process.returncode}) before its first request; "
                                   f"see {self.log}: {self._log_tail()}")
            time.sleep(0.02)
        raise SandboxError(f"Locust made no request within {timeout:.0f}s; see {self.log}")

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10) -> int | None:
        """Graceful stop (Locust flushes its recorders on `quitting`), then kill the group if it hangs."""
        proc = self.process
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
