"""The router as the sandbox runs it: a subprocess in front of two fake regions."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from drillkit.evidence import read_jsonl
from drillkit.net import LoopbackServer

INTERVAL, THRESHOLD, TTL = 0.2, 3, 0.5


class FakeRegion(LoopbackServer):
    """A region's app tier reduced to what the router looks at: /health, status, X-Region (a
    LoopbackServer: a connection the router resets as it stops is not worth a traceback)."""

    def __init__(self, name: str, instance: str | None = None):
        self.name, self.healthy, self.status = name, True, 200
        self.instance, self.served = instance, 0
        super().__init__(("127.0.0.1", 0), FakeHandler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"


class FakeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeRegion

    def log_message(self, *args):
        pass

    def _answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/health":
            status, doc = (200, {"db": "ok"}) if self.server.healthy else (503, {"db": "down"})
        else:
            if self.path.startswith("/slow"):
                time.sleep(1.0)
            status = int(self.headers.get("X-Want-Status") or self.server.status)
            doc = {"method": self.command, "path": self.path, "body": body.decode(),
                   "headers": dict(self.headers.items())}
        data = json.dumps(doc).encode()
        self.server.served += self.path != "/health"
        self.send_response(status)
        self.send_header("X-Region", self.server.name)
        if self.server.instance:
            self.send_header("X-Instance", self.server.instance)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


@pytest.fixture(scope="module")
def regions():
    servers = {name: FakeRegion(name) for name in ("A", "B")}
    yield servers
    for server in servers.values():
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _regions_healthy(regions):
    for server in regions.values():
        server.healthy, server.status = True, 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def start_router(tmp_path):
    """Start routers as subprocesses; every one is killed at teardown, whatever happened."""
    procs: list[subprocess.Popen] = []

    def start(policy: str, a: str, b: str, *extra: str) -> tuple[int, subprocess.Popen, Path]:
        ready = tmp_path / f"router{len(procs)}.ready"
        events = tmp_path / f"events{len(procs)}.jsonl"
        proc = subprocess.Popen([
            sys.executable, "-m", "drillkit.targets.sandbox.router", "--port", "0",
            "--region", f"A={a}", "--region", f"B={b}", "--primary", "A", "--policy", policy,
            "--interval", str(INTERVAL), "--failure-threshold", str(THRESHOLD), "--ttl", str(TTL),
            "--events", str(events), "--ready-file", str(ready), *extra])
        procs.append(proc)
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert proc.poll() is None, f"router exited with {proc.returncode}"
            assert time.monotonic() < deadline, "router never became ready"
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        assert info["pid"] == proc.pid
        return info["port"], proc, events

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def call(port: int, method: str = "GET", path: str = "/records/k", body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict(resp.getheaders()), json.loads(data) if data else {}
    finally:
        conn.close()


def serving_region(port: int) -> str | None:
    return call(port)[1].get("X-Region")


def wait_for_region(port: int, region: str, timeout: float = 5.0) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if serving_region(port) == region:
            return time.time()
        time.sleep(0.01)
    raise AssertionError(f"traffic never reached {region}")


def test_forwards_method_path_body_headers_and_status(regions, start_router):
    port, _, _ = start_router("manual", regions["A"].addr, regions["B"].addr)
    status, headers, doc = call(port, "POST", "/records?x=1", b'{"key": "k"}',
                                {"X-Want-Status": "201", "X-Trace": "t-1", "Connection": "keep-alive"})
    assert status == 201
    assert headers["X-Region"] == "A"
    assert (doc["method"], doc["path"], doc["body"]) == ("POST", "/records?x=1", '{"key": "k"}')
    assert doc["headers"]["X-Trace"] == "t-1"
    assert "Connection" not in doc["headers"]
    assert call(port, "DELETE", "/objects/o", headers={"X-Want-Status": "404"})[0] == 404


def test_keeps_client_connection_alive(regions, start_router):
    port, _, _ = start_router("manual", regions["A"].addr, regions["B"].addr)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    for i in range(20):
        conn.request("POST", "/records", body=json.dumps({"i": i}).encode())
        resp = conn.getresponse()
        assert json.loads(resp.read())["body"] == json.dumps({"i": i})
    conn.close()


def test_dns_fails_over_after_threshold_plus_ttl_and_fails_back(regions, start_router):
    port, _, events = start_router("dns", regions["A"].addr, regions["B"].addr)
    assert serving_region(port) == "A"
    regions["A"].healthy = False
    t_down = time.time()
    elapsed = wait_for_region(port, "B") - t_down
    assert INTERVAL * (THRESHOLD - 1) <= elapsed <= INTERVAL * (THRESHOLD + 1) + TTL + 0.5
    state = call(port, "GET", "/_drillkit/router")[2]
    assert state["health"] == {"A": False, "B": True}
    assert (state["answer"], state["published"]) == ("B", "B")

    regions["A"].healthy = True
    wait_for_region(port, "A")
    kinds = [(e["kind"], e.get("region") or e.get("to")) for e in read_jsonl(events)]
    assert kinds == [("health.change", "A"), ("routing.published", "B"), ("routing.switch", "B"),
                     ("health.change", "A"), ("routing.published", "A"), ("routing.switch", "A")]
    log = read_jsonl(events)
    assert log[0]["healthy"] is False and log[3]["healthy"] is True
    assert log[2]["t"] - log[1]["t"] == pytest.approx(TTL, abs=0.05)
    assert {k: log[2][k] for k in ("from", "to", "policy")} == {"from": "A", "to": "B", "policy": "dns"}
    assert log[2]["reason"] == "health-check: A unhealthy"
    assert [s["to"] for s in call(port, "GET", "/_drillkit/router")[2]["switches"]] == ["B", "A"]


def test_origin_group_retries_get_at_secondary_but_never_post(regions, start_router):
    port, _, events = start_router("origin-group", regions["A"].addr, regions["B"].addr)
    regions["A"].status = 503
    status, headers, _ = call(port, "GET")
    assert (status, headers["X-Region"], headers["X-Router-Failover"]) == (200, "B", "A")
    status, headers, _ = call(port, "POST", "/records", b"{}")
    assert (status, headers["X-Region"]) == (503, "A")
    regions["A"].status = 200
    assert serving_region(port) == "A"
    assert events.read_text() == "", "origin-group failover is per request: no routing event"


def test_origin_group_fails_over_on_connect_failure(regions, start_router):
    port, _, _ = start_router("origin-group", f"127.0.0.1:{free_port()}", regions["B"].addr)
    status, headers, _ = call(port, "GET")
    assert (status, headers["X-Region"]) == (200, "B")
    status, headers, _ = call(port, "PUT", "/objects/o", b"x")
    assert (status, headers["X-Router-Error"]) == (502, "connect")


def test_manual_moves_only_on_runbook_switch(regions, start_router):
    port, _, events = start_router("manual", regions["A"].addr, regions["B"].addr)
    regions["A"].healthy = False
    time.sleep(INTERVAL * (THRESHOLD + 1))
    assert serving_region(port) == "A"
    status, _, state = call(port, "POST", "/_drillkit/router/switch", b'{"to": "B", "reason": "runbook step 3"}')
    assert (status, state["answer"]) == (200, "B")
    assert serving_region(port) == "B"
    assert call(port, "POST", "/_drillkit/router/switch", b'{"to": "Z"}')[0] == 400
    assert call(port, "POST", "/_drillkit/router/switch", b"not json")[0] == 400
    switch = [e for e in read_jsonl(events) if e["kind"] == "routing.switch"]
    assert [(e["from"], e["to"], e["policy"], e["reason"]) for e in switch] == [("A", "B", "manual", "runbook step 3")]


def test_dns_runbook_switch_honours_ttl(regions, start_router):
    port, _, _ = start_router("dns", regions["A"].addr, regions["B"].addr)
    t_switch = time.time()
    state = call(port, "POST", "/_drillkit/router/switch", b'{"to": "B"}')[2]
    assert (state["published"], state["answer"]) == ("B", "A")
    assert wait_for_region(port, "B") - t_switch == pytest.approx(TTL, abs=0.2)


def test_dead_upstream_is_502_and_slow_upstream_504(regions, start_router):
    port, _, _ = start_router("manual", f"127.0.0.1:{free_port()}", regions["B"].addr)
    status, headers, doc = call(port)
    assert (status, headers["X-Router-Error"]) == (502, "connect")
    assert "error" in doc and "X-Region" not in headers
    port, _, _ = start_router("manual", regions["A"].addr, regions["B"].addr, "--upstream-timeout", "0.3")
    status, headers, _ = call(port, "GET", "/slow")
    assert (status, headers["X-Router-Error"]) == (504, "timeout")
    assert serving_region(port) == "A"


def test_sigterm_exits_zero_quickly_and_frees_the_port(regions, start_router):
    port, proc, _ = start_router("dns", regions["A"].addr, regions["B"].addr)
    held = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    held.request("GET", "/records/k")
    held.getresponse().read()
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0
    assert time.monotonic() - t0 < 2.0
    held.close()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_bad_flags_exit_2(regions):
    run = subprocess.run([sys.executable, "-m", "drillkit.targets.sandbox.router", "--region", "A=nohost",
                          "--primary", "A"], capture_output=True, text=True, timeout=10)
    assert run.returncode == 2 and "NAME=HOST:PORT" in run.stderr
    run = subprocess.run([sys.executable, "-m", "drillkit.targets.sandbox.router", "--region", "A=127.0.0.1:1",
                          "--primary", "B"], capture_output=True, text=True, timeout=10, env=os.environ)
    assert run.returncode == 2 and "--primary" in run.stderr


def test_read_shift_sends_a_share_of_reads_and_no_write(regions, start_router):
    port, _, events = start_router("manual", regions["A"].addr, regions["B"].addr)

    def shift(region: str, percent: object) -> tuple[int, dict, dict]:
        return call(port, "POST", "/_drillkit/router/reads", json.dumps({"region": region, "percent": percent}).encode())

    status, _, state = shift("B", 50)
    assert (status, state["read_shares"], state["answer"]) == (200, {"B": 50.0}, "A")
    reads = [serving_region(port) for _ in range(200)]
    assert 60 <= reads.count("B") <= 140, reads.count("B")
    assert {call(port, "POST", "/records", b"{}")[1]["X-Region"] for _ in range(20)} == {"A"}

    assert shift("B", 100)[0] == 200
    assert {serving_region(port) for _ in range(20)} == {"B"}
    assert shift("B", 100)[0] == 200  # a repeated step changes nothing and records nothing
    assert shift("A", 10)[0] == 400  # 110 %
    assert shift("Z", 10)[0] == 400 and shift("B", 101)[0] == 400 and shift("B", "x")[0] == 400
    assert shift("B", 0)[2]["read_shares"] == {}
    assert {serving_region(port) for _ in range(20)} == {"A"}
    log = [(e["region"], e["percent"]) for e in read_jsonl(events) if e["kind"] == "routing.shift"]
    assert log == [("B", 50), ("B", 100), ("B", 0)]


def test_runbook_switch_makes_the_target_the_primary_record(regions, start_router):
    """After a runbook switch to B, A turning healthy again must not pull traffic back."""
    port, _, _ = start_router("dns", regions["A"].addr, regions["B"].addr)
    regions["A"].healthy = False
    wait_for_region(port, "B")
    assert call(port, "POST", "/_drillkit/router/switch", b'{"to": "B"}')[2]["primary"] == "B"
    regions["A"].healthy = True
    time.sleep(INTERVAL * (THRESHOLD + 1) + TTL)
    state = call(port, "GET", "/_drillkit/router")[2]
    assert state["health"]["A"] is True and state["answer"] == "B"


@pytest.fixture
def start_link(tmp_path):
    """A region's client link (the real link proxy) in front of its instances; killed at teardown."""
    procs: list[subprocess.Popen] = []

    def start(*upstreams: str) -> dict:
        ready = tmp_path / f"link{len(procs)}.ready"
        proc = subprocess.Popen([sys.executable, "-m", "drillkit.targets.sandbox.linkproxy", "--name", "client-A",
                                 "--listen-port", "0", *[a for u in upstreams for a in ("--upstream", u)],
                                 "--ready-file", str(ready)])
        procs.append(proc)
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "link never became ready"
            time.sleep(0.02)
        return json.loads(ready.read_text())

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_region_balances_requests_over_its_instances_and_a_scaled_up_one_takes_its_turn(
        regions, start_router, start_link):
    """As an application load balancer does: one client's kept-alive connection, yet after a
    scale-up from one instance to three every instance serves a third of its requests."""
    from drillkit.targets.sandbox.linkproxy import LinkControl

    instances = [FakeRegion("A", f"app-A-{n}") for n in (1, 2, 3)]
    try:
        link = start_link(instances[0].addr)
        port, _, _ = start_router("manual", f"127.0.0.1:{link['port']}", regions["B"].addr)
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

        def send() -> dict:
            client.request("GET", "/records/k")
            resp = client.getresponse()
            resp.read()
            assert resp.status == 200 and resp.getheader("X-Region") == "A"
            return dict(resp.getheaders())

        assert all("X-Instance" not in send() for _ in range(20))   # the router keeps its targets to itself
        assert [i.served for i in instances] == [20, 0, 0]
        LinkControl(link["control_port"]).balance([i.server_address[1] for i in instances])
        sent = 0
        while not all(i.served for i in instances):   # the new instances are reached through the link
            send()
            sent += 1
            assert sent < 500, [i.served for i in instances]
        before = [i.served for i in instances]
        for _ in range(90):
            send()
        shares = [i.served - b for i, b in zip(instances, before)]
        assert sum(shares) == 90 and min(shares) >= 20, shares   # 30 each in turn, a few to new connections
        client.close()
    finally:
        for server in instances:
            server.shutdown()
            server.server_close()
