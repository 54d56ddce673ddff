"""The external test system itself (tests/external_kv over PostgreSQL): its API, and that its
crash fault's ground truth is exactly the acknowledged writes the crash lost."""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import pytest

from support.kvsystem import CRASH, KvSystem, pid_gone, running_kv_system, table_rows

WAIT = 60.0  # generous bound for conditions on a busy machine


def request(url: str, method: str, path: str, body: dict | None = None,
            conn: http.client.HTTPConnection | None = None, timeout: float = 30):
    """(status, JSON body, X-Served-By); a fresh connection unless one is given."""
    own = conn is None
    if own:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        payload = resp.read()
        return resp.status, json.loads(payload) if payload else None, resp.getheader("X-Served-By")
    finally:
        if own:
            conn.close()


def put(system: KvSystem, key: str, value: str, conn=None):
    return request(system.endpoint, "PUT", f"/kv/{key}",
                   {"value": value, "sha256": hashlib.sha256(value.encode()).hexdigest()}, conn=conn)


def wait_for(condition, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def crash(system: KvSystem) -> dict:
    out = subprocess.run([sys.executable, CRASH, "--url", system.primary_url, "--pid", str(system.primary_pid),
                          "--ground-truth", str(system.ground_truth)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    truth = json.loads(system.ground_truth.read_text())
    assert json.loads(out.stdout) == truth
    assert pid_gone(system.primary_pid)
    return truth


def switch_to_west(system: KvSystem) -> None:
    status, body, _ = request(system.endpoint, "POST", "/admin/route", {"to": "west"})
    assert status == 200 and body["active"] == "west", body
    assert request(system.endpoint, "GET", "/admin/route")[1] == {"active": "west"}


def assert_all_gone(system: KvSystem) -> None:
    for pid in (system.primary_pid, system.standby_pid, system.lb_pid):
        assert pid_gone(pid), f"kvservice process {pid} still running"


def test_write_read_flush(kv_folder, no_leftovers):
    with running_kv_system(kv_folder) as system:
        status, body, served = put(system, "alpha", "first value")
        assert (status, body, served) == (200, {"id": "alpha", "state": "buffered"}, "east")
        status, body, served = request(system.endpoint, "GET", "/kv/alpha")
        assert status == 200 and served == "east"
        assert body == {"id": "alpha", "value": "first value",
                        "sha256": hashlib.sha256(b"first value").hexdigest()}
        rows = wait_for(lambda: (r := table_rows(system.dsn)) and "alpha" in r and r, "the flush of alpha")
        assert rows["alpha"] == ("first value", hashlib.sha256(b"first value").hexdigest())
        # read back from the table once flushed, too
        assert request(system.endpoint, "GET", "/kv/alpha")[1]["value"] == "first value"
        status, body, served = request(system.endpoint, "GET", "/kv/no-such-key")
        assert (status, body, served) == (404, {"error": "not found"}, "east")
        assert request(system.endpoint, "GET", "/healthz")[:3] == (200, {"ok": True, "region": "east"}, "east")
        assert request(system.standby_url, "GET", "/healthz")[1] == {"ok": True, "region": "west"}
        # bad input
        parts = urlsplit(system.endpoint)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:  # keep-alive: several requests on one connection
            conn.request("PUT", "/kv/bad", body=b"{not json", headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 400 and resp.getheader("X-Served-By") == "east"
            resp.read()
            assert request(system.endpoint, "GET", "/nowhere", conn=conn)[0] == 404
            assert request(system.endpoint, "POST", "/admin/route", {"to": "nowhere"}, conn=conn)[0] == 400
            assert request(system.endpoint, "GET", "/admin/route", conn=conn)[1] == {"active": "east"}
        finally:
            conn.close()
    assert_all_gone(system)


def test_hold_and_crash_lose_exactly_the_buffered_writes(kv_folder, no_leftovers):
    keys = [f"k{i}" for i in range(5)]
    with running_kv_system(kv_folder, flush_interval=30) as system:
        for key in keys:
            assert put(system, key, f"value of {key}")[0] == 200
        truth = crash(system)
        assert truth["pending"] == sorted(keys)
        assert truth["t_gate"] <= truth["t_hold"] <= truth["t_kill"]
        status, body, _ = put(system, "after-crash", "x")
        assert status == 502 and "error" in body
        switch_to_west(system)
        status, body, served = put(system, "after-switch", "y")
        assert (status, served) == (200, "west")
        assert request(system.endpoint, "GET", "/kv/after-switch")[1]["value"] == "y"
        lines = system.switch_log.read_text().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["to"] == "west"
        assert not set(keys) & set(table_rows(system.dsn))
    assert_all_gone(system)


class Writers:
    """Threads writing fresh keys through the lb as fast as they can, recording every outcome."""

    def __init__(self, system: KvSystem, threads: int = 8):
        self.system = system
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.outcomes: dict[str, tuple[int, str | None]] = {}  # key -> (status or 0, served by)
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, n: int) -> None:
        parts = urlsplit(self.system.endpoint)
        conn = None
        i = 0
        while not self.stop.is_set():
            key = f"w{n}-{i}"
            i += 1
            if conn is None:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            try:
                status, _, served = put(self.system, key, f"value {key}", conn=conn)
            except (OSError, http.client.HTTPException, ValueError):
                status, served = 0, None
                conn.close()
                conn = None
            with self.lock:
                self.outcomes[key] = (status, served)
        if conn is not None:
            conn.close()

    def count(self, served_by: str) -> int:
        with self.lock:
            return sum(1 for status, served in self.outcomes.values() if status == 200 and served == served_by)

    def __enter__(self) -> "Writers":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads)


@pytest.mark.parametrize("attempt", range(2))
def test_ground_truth_is_exact_under_concurrent_writes(kv_folder, no_leftovers, attempt):
    with running_kv_system(kv_folder, flush_interval=0.1) as system:
        with Writers(system) as writers:
            wait_for(lambda: writers.count("east") >= 300, "300 writes acknowledged by east")
            truth = crash(system)
            with writers.lock:
                at_crash = len(writers.outcomes)
            wait_for(lambda: len(writers.outcomes) >= at_crash + 16, "writes failing after the crash")
            switch_to_west(system)
            wait_for(lambda: writers.count("west") >= 100, "100 writes acknowledged by west")
        outcomes = dict(writers.outcomes)
        acknowledged = {k for k, (status, _) in outcomes.items() if status == 200}
        by_west = {k for k, (status, served) in outcomes.items() if status == 200 and served == "west"}
        rows = wait_for(lambda: (r := table_rows(system.dsn)) and by_west <= r.keys() and r,
                        "west's flush of its writes")
        lost = acknowledged - rows.keys()
        assert lost == set(truth["pending"])
        # the outage failed writes, none of which was stored; every stored row is intact
        assert {s for s, _ in outcomes.values()} <= {0, 200, 502}
        failed = {k for k, (status, _) in outcomes.items() if status != 200}
        assert failed, "no write failed during the outage"
        assert not failed & rows.keys() and not failed & set(truth["pending"])
        for key, (value, sha) in rows.items():
            assert value == f"value {key}" and sha == hashlib.sha256(value.encode()).hexdigest()
    assert_all_gone(system)
    print(f"attempt {attempt}: {len(acknowledged)} acknowledged, {len(lost)} lost, {len(failed)} failed")
