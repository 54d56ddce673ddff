"""The link proxy on real sockets: a real proxy process in front of a threaded echo server."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from drillkit.errors import FaultError
from drillkit.evidence import read_jsonl
from drillkit.targets.sandbox.linkproxy import LinkControl


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.accepted += 1
        try:
            while data := self.request.recv(65536):
                self.request.sendall(data)
        except OSError:
            pass


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    accepted = 0


@pytest.fixture
def echo():
    server = EchoServer(("127.0.0.1", 0), EchoHandler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def start_proxy(tmp_path: Path):
    """Starts proxy processes and stops every one of them, whatever the test did."""
    procs: list[subprocess.Popen] = []

    def start(upstream_port: int, name: str = "client-A", events: Path | None = None,
              failure_file: Path | None = None) -> tuple[subprocess.Popen, dict]:
        ready = tmp_path / f"{name}-{len(procs)}.ready.json"
        cmd = [sys.executable, "-m", "drillkit.targets.sandbox.linkproxy", "--name", name, "--listen-port", "0",
               "--upstream", f"127.0.0.1:{upstream_port}", "--ready-file", str(ready)]
        if events:
            cmd += ["--events", str(events)]
        if failure_file:
            cmd += ["--failure-file", str(failure_file)]
        proc = subprocess.Popen(cmd)
        procs.append(proc)
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, "proxy exited before it was ready"
            assert time.monotonic() < deadline, "proxy not ready within 60 s"
            time.sleep(0.01)
        return proc, json.loads(ready.read_text())

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def connect(port: int, timeout: float = 2.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        assert chunk, f"EOF after {len(buf)} of {n} bytes"
        buf += chunk
    return buf


def round_trip(sock: socket.socket, payload: bytes) -> float:
    t0 = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - t0


def assert_closed(sock: socket.socket, within: float = 1.0) -> str:
    """A reset link shows up as ECONNRESET or EOF, never as a hang or data."""
    sock.settimeout(within)
    try:
        assert sock.recv(1024) == b""
    except ConnectionResetError:
        return "reset"
    return "eof"


def connect_and_read(port: int) -> str:
    """On loopback the proxy's RST can beat connect() itself; either way the caller sees a reset."""
    try:
        sock = connect(port)
    except ConnectionResetError:
        return "reset"
    with sock:
        return assert_closed(sock)


def test_pass_through_and_control_api(echo, start_proxy, tmp_path):
    events = tmp_path / "events.jsonl"
    _, info = start_proxy(echo.server_address[1], events=events)
    link = LinkControl(info["control_port"])
    with connect(info["port"]) as sock:
        round_trip(sock, b"hello")
        status = link.status()
        assert status["name"] == "client-A" and status["connections"] == 1
        assert status["bytes_up"] == status["bytes_down"] == 5
    assert link.inject("latency", ms=5, jitter_ms=1)["faults"] == {"latency": {"ms": 5, "jitter_ms": 1}}
    link.inject("latency", ms=7)
    assert link.inject("bandwidth", bytes_per_s=10**6)["faults"]["latency"] == {"ms": 7}
    assert set(link.clear("latency")["faults"]) == {"bandwidth"}
    assert link.clear()["faults"] == {}
    for bad in ({"kind": "flood"}, {"kind": "latency"}, {"kind": "latency", "ms": "x"}, {"kind": "reset", "x": 1}):
        with pytest.raises(FaultError, match="HTTP 400"):
            link.inject(**bad)
    lines = read_jsonl(events)
    assert [(e["kind"], e["action"], e["fault"]["kind"]) for e in lines] == [
        ("link.fault", "inject", "latency"), ("link.fault", "inject", "latency"), ("link.fault", "inject", "bandwidth"),
        ("link.fault", "clear", "latency"), ("link.fault", "clear", "bandwidth"),
    ]
    assert lines[0]["link"] == "client-A" and lines[1]["fault"] == {"kind": "latency", "ms": 7}


def test_latency_delays_each_direction(echo, start_proxy):
    _, info = start_proxy(echo.server_address[1])
    with connect(info["port"]) as sock:
        base = round_trip(sock, b"ping")
        LinkControl(info["control_port"]).inject("latency", ms=150)
        slow = round_trip(sock, b"ping")
    assert 0.3 <= slow < base + 1.0


def test_blackhole_holds_bytes_and_delivers_them_in_order(echo, start_proxy):
    _, info = start_proxy(echo.server_address[1])
    link = LinkControl(info["control_port"])
    with connect(info["port"]) as existing:
        round_trip(existing, b"warm")
        link.inject("blackhole")
        with connect(info["port"]) as fresh:
            sent = []
            for i in range(20):
                msg = f"<{i:03d}>".encode()
                existing.sendall(msg)
                fresh.sendall(msg)
                sent.append(msg)
            for sock, quiet in ((existing, 0.5), (fresh, 0.05)):
                sock.settimeout(quiet)
                with pytest.raises(socket.timeout):
                    sock.recv(1024)
            link.clear("blackhole")
            for sock in (existing, fresh):
                sock.settimeout(2)
                assert recv_exactly(sock, len(b"".join(sent))) == b"".join(sent)


def test_reset_closes_connections_and_refuses_new_ones(echo, start_proxy):
    _, info = start_proxy(echo.server_address[1])
    link = LinkControl(info["control_port"])
    with connect(info["port"]) as sock:
        round_trip(sock, b"before")
        link.inject("reset")
        assert assert_closed(sock) == "reset"
    assert link.status()["connections"] == 0
    assert connect_and_read(info["port"]) == "reset"
    link.clear()
    with connect(info["port"]) as sock:
        round_trip(sock, b"after")


def test_bandwidth_throttles_a_transfer(echo, start_proxy):
    _, info = start_proxy(echo.server_address[1])
    LinkControl(info["control_port"]).inject("bandwidth", bytes_per_s=25_000)
    payload = bytes(range(256)) * 200
    with connect(info["port"], timeout=10) as sock:
        elapsed = round_trip(sock, payload[:50_000])
    assert 1.5 <= elapsed < 6


def test_upstream_down_closes_client_promptly(start_proxy):
    _, info = start_proxy(free_port())
    t0 = time.monotonic()
    assert connect_and_read(info["port"]) == "reset"
    assert time.monotonic() - t0 < 0.5


def test_retarget_moves_new_connections(echo, start_proxy):
    _, info = start_proxy(free_port())
    status = LinkControl(info["control_port"]).retarget("127.0.0.1", echo.server_address[1])
    assert status["upstream"] == f"127.0.0.1:{echo.server_address[1]}"
    with connect(info["port"]) as sock:
        round_trip(sock, b"failback")
    assert echo.accepted == 1
    with pytest.raises(FaultError, match="HTTP 400"):
        LinkControl(info["control_port"])._call("PUT", "/upstream", {"host": "127.0.0.1"})


def test_sigterm_stops_promptly_and_frees_ports(echo, start_proxy):
    proc, info = start_proxy(echo.server_address[1])
    sock = connect(info["port"])
    try:
        round_trip(sock, b"busy")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert time.monotonic() - t0 < 10
        assert_closed(sock)
    finally:
        sock.close()
    for port in (info["port"], info["control_port"]):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises(FaultError):
        LinkControl(info["control_port"], timeout=0.5).status()


def test_a_link_that_cannot_record_its_events_fails_loudly(echo, start_proxy, tmp_path):
    """A fault the evidence would not show is worse than none: the link dies at once, saying why
    in its failure file (which the drill's watchdog reads), instead of going on unrecorded."""
    folder = tmp_path / "evidence"
    folder.mkdir()
    failure = tmp_path / "client-A.failed.json"
    proc, info = start_proxy(echo.server_address[1], events=folder / "events.jsonl", failure_file=failure)
    shutil.rmtree(folder)
    try:
        LinkControl(info["control_port"], timeout=5).inject("latency", ms=10)
    except FaultError:
        pass  # the link may die before it answers
    assert proc.wait(60) == 70
    doc = json.loads(failure.read_text())
    assert doc["service"] == "link client-A" and doc["pid"] == proc.pid
    assert "cannot record link.fault in" in doc["reason"] and "events.jsonl" in doc["reason"]


def test_a_relative_events_path_is_refused_at_start(tmp_path):
    """Services run in /: a relative path would land somewhere else, so it is refused outright."""
    proc = subprocess.run([sys.executable, "-m", "drillkit.targets.sandbox.linkproxy", "--name", "client-A",
                           "--upstream", "127.0.0.1:9", "--ready-file", str(tmp_path / "ready.json"),
                           "--events", "reports/x/events.jsonl"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--events must be an absolute path" in proc.stderr
    assert not (tmp_path / "ready.json").exists()
