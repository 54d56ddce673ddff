"""The canary: one write and one read through the global endpoint every `interval`, on a fixed clock.

Recovery resolution then depends on the canary's tick, not on how busy the Locust users are.
A request that hangs (a blackholed link) never delays the next tick: each runs on a pool thread.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from drillkit.evidence.recorder import CANARY_CLIENT, OpRecorder, client_file
from drillkit.load import ClientConfig
from drillkit.load.workload import DR_RECORDS, Workload, checksum, read_outcome, render

if TYPE_CHECKING:
    from drillkit.scenario.loader import LoadedScenario


def canary_workload(loaded: "LoadedScenario") -> tuple[Workload | None, str | None]:
    """What the canary drives: the drill's own workload mapping (`load.workload`), or the API every
    system of its kind serves whatever the locustfile (the target plug-in's `own_workload`: the
    sandbox's records API). Neither
    (a custom Locust file against a system drillkit did not build): no canary, and the one line
    that says why. No canary asked for (`load.canary: 0`): none, and nothing to say."""
    load = loaded.scenario.load
    if not load.canary:
        return None, None
    if loaded.workload is not None:
        return loaded.workload, None
    from drillkit.targets import plugin

    kind = loaded.scenario.system.kind
    own = plugin(kind).own_workload
    if own is not None:
        return own, None
    return None, (f"canary off: load.locustfile is the user's own Locust file and system.kind is {kind}, so the "
                  "canary has no workload mapping (load.workload) to drive; RTO's resolution is the Locust users' "
                  "(set load.canary: 0 to say so)")


class Canary:
    def __init__(self, endpoint: str, evidence: Path, interval: float = 0.02, timeout: float = 1.0,
                 workload: Workload = DR_RECORDS, region_header: str | None = "X-Region", key_prefix: str = "",
                 client_config: tuple[str, float] | None = None):
        """`client_config` (routing config-json): the path of config.json on the endpoint and how
        long the canary keeps its copy, as every client does; its calls go where the copy says."""
        self.workload = workload
        self.region_header = region_header
        self.endpoint = _address(endpoint)
        self.config = ClientConfig(*client_config, fetch=self._fetch_config) if client_config else None
        self.interval = interval
        self.timeout = timeout
        self.path = client_file(evidence, CANARY_CLIENT)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._last_acked: str | None = None
        self._seq = 0
        self._prefix = f"{key_prefix}canary-{os.getpid()}-{int(time.time())}"
        workers = int(timeout / interval) * 2 + 4
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="canary")
        self._clock = threading.Thread(target=self._tick, name="canary-clock", daemon=True)
        self._recorder: OpRecorder | None = None

    def start(self) -> "Canary":
        self._recorder = OpRecorder.to_file(self.path)
        self._clock.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._clock.is_alive():
            self._clock.join(5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._recorder is not None:
            self._recorder.close()

    def _tick(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            self._pool.submit(self._write)
            self._pool.submit(self._read)
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay < 0:
                next_at = time.monotonic()
            elif self._stop.wait(delay):
                break

    def _conn(self, address: tuple[str, int]) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and (conn.host, conn.port) != address:
            conn.close()
            conn = None
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(*address, timeout=self.timeout)
        return conn

    def _fetch_config(self, path: str) -> dict | None:
        conn = http.client.HTTPConnection(*self.endpoint, timeout=self.timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            data = resp.read()
            return json.loads(data) if resp.status == 200 else None
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            conn.close()

    def _backend(self) -> tuple[str, int] | None:
        """Where the next call goes: the endpoint, or the backend the canary's copy of config.json
        names (fetched first when it is stale: a client's wait for config.json is not the call's)."""
        if self.config is None:
            return self.endpoint
        base = self.config.api_url()
        return None if base is None else _address(base)

    def _request(self, address: tuple[str, int] | None, method: str, path: str, body: bytes | None
                 ) -> tuple[int | None, bytes, str | None, str | None]:
        if address is None:
            return None, b"", None, "no copy of config.json yet"
        conn = self._conn(address)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            region = resp.getheader(self.region_header) if self.region_header else None
            return resp.status, data, region, None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            conn.close()
            self._local.conn = None
            return None, b"", None, (str(exc) or type(exc).__name__)[:200]

    def _record(self, t0: float, op: str, key: str, ok: bool, status, region, checksum, error, **extra) -> None:
        if self._recorder is not None:
            self._recorder.record(t0, time.time(), op, key, ok, status, region, checksum, error, client=CANARY_CLIENT,
                                  **extra)

    def _write(self) -> None:
        with self._lock:
            self._seq += 1
            key = f"{self._prefix}-{self._seq:08d}"
        payload = os.urandom(16).hex()
        address = self._backend()
        t0 = time.time()
        status, _, region, error = self._request(address, *render(self.workload.write, key, payload))
        ok = status in self.workload.write.ok
        if ok:
            with self._lock:
                self._last_acked = key
        self._record(t0, "write", key, ok, status, region, checksum(payload), error or (None if ok else f"{status}"))

    def _read(self) -> None:
        key = self._last_acked
        if key is None or self.workload.read is None:
            return
        address = self._backend()
        t0 = time.time()
        status, body, region, error = self._request(address, *render(self.workload.read, key))
        ok, found, digest = read_outcome(self.workload.read, status, body)
        # found only when the region answered: a failed read says nothing of the key
        self._record(t0, "read", key, ok, status, region, digest, error or (None if ok else f"{status}"),
                     found=found)


def _address(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or 80
