"""The app tier over a real primary and hot standby, started the way the sandbox starts them."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from drillkit.targets.sandbox import postgres as pg
from drillkit.targets.sandbox.app import checksum


@pytest.fixture(scope="module")
def cluster():
    """A primary in region A and a hot standby streaming from it in region B."""
    try:
        bins = pg.find_binaries()
    except Exception as exc:
        pytest.skip(f"no PostgreSQL: {exc}")
    run_as = pg.RunAs.for_postgres()
    root = Path(tempfile.mkdtemp(prefix="drillkit-test-app-"))
    root.chmod(0o755)
    servers: list[pg.PgServer] = []
    try:
        primary = pg.init_primary(bins, run_as, root / "pg-A", root / "archive", root / "A.log")
        servers.append(pg.start(bins, run_as, primary, root / "A.log", dbname="postgres"))
        pg.create_schema(primary.port)
        standby = pg.init_standby(bins, run_as, root / "pg-B", primary.port, root / "archive", root / "B.log")
        servers.append(pg.start(bins, run_as, standby, root / "B.log", dbname="postgres"))
        yield {"A": primary, "B": standby,
               "restart": lambda s: pg.start(bins, run_as, s, root / f"{s.name}.log", dbname="postgres")}
    finally:
        for server in servers:
            if server.pid:
                pg.stop_process_group(server.pid)
            pg.drop_shared_memory(server.datadir)
        shutil.rmtree(root, ignore_errors=True)


def start_app(region: str, db_port: int, ready: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "drillkit.targets.sandbox.app", "--region", region, "--port", "0",
                             "--dsn", pg.dsn(db_port), "--ready-file", str(ready)])
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"app {region} never became ready")
        time.sleep(0.02)
    return proc, json.loads(ready.read_text())["port"]


@pytest.fixture(scope="module")
def apps(cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("apps")
    procs = {}
    try:
        for region in ("A", "B"):
            procs[region] = start_app(region, cluster[region].port, folder / f"{region}.ready")
        yield {region: port for region, (_, port) in procs.items()} | {"procs": procs}
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def call(port: int, method: str, path: str, doc: dict | None = None, raw: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        body = raw if raw is not None else (json.dumps(doc).encode() if doc is not None else None)
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.getheader("X-Region"), json.loads(resp.read())
    finally:
        conn.close()


def eventually(fn, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def test_write_then_read_back_with_checksum(apps):
    status, region, doc = call(apps["A"], "POST", "/records", {"key": "k/1 é", "payload": "hello"})
    assert (status, region) == (201, "A")
    assert doc == {"key": "k/1 é", "checksum": checksum("hello"), "region": "A"}
    status, region, doc = call(apps["A"], "GET", "/records/k%2F1%20%C3%A9")
    assert (status, region) == (200, "A")
    assert doc == {"key": "k/1 é", "payload": "hello", "checksum": checksum("hello")}


def test_upsert_overwrites(apps):
    call(apps["A"], "POST", "/records", {"key": "up", "payload": "v1"})
    assert call(apps["A"], "POST", "/records", {"key": "up", "payload": "v2"})[0] == 201
    assert call(apps["A"], "GET", "/records/up")[2]["payload"] == "v2"


def test_read_recomputes_checksum_so_corruption_shows(apps, cluster):
    import psycopg

    call(apps["A"], "POST", "/records", {"key": "rot", "payload": "good"})
    with psycopg.connect(pg.dsn(cluster["A"].port), autocommit=True) as conn:
        conn.execute("UPDATE records SET payload = 'bad' WHERE key = 'rot'")
    assert call(apps["A"], "GET", "/records/rot")[2]["checksum"] == checksum("bad")


@pytest.mark.parametrize("method,path,body,expected", [
    ("GET", "/records/never-written", None, 404),
    ("GET", "/nowhere", None, 404),
    ("POST", "/records", b"not json", 400),
    ("POST", "/records", b'{"key": "k"}', 400),
    ("POST", "/records", b'{"key": 1, "payload": "p"}', 400),
])
def test_errors_are_json_and_name_the_region(apps, method, path, body, expected):
    status, region, doc = call(apps["B"], method, path, raw=body)
    assert (status, region) == (expected, "B")
    assert "error" in doc


def test_health_reports_the_role_the_database_has(apps):
    assert call(apps["A"], "GET", "/health") == (200, "A", {"region": "A", "role": "primary", "db": "ok"})
    assert call(apps["B"], "GET", "/health") == (200, "B", {"region": "B", "role": "standby", "db": "ok"})


def test_standby_serves_replicated_reads_and_refuses_writes(apps):
    written = call(apps["A"], "POST", "/records", {"key": "rep", "payload": "across"})[2]
    read = eventually(lambda: (r := call(apps["B"], "GET", "/records/rep"))[0] == 200 and r)
    assert read and read[1:] == ("B", {"key": "rep", "payload": "across", "checksum": written["checksum"]})
    assert call(apps["B"], "POST", "/records", {"key": "x", "payload": "y"}) == \
        (503, "B", {"error": "read-only region"})


def test_database_down_is_503_and_the_app_recovers_when_it_is_back(apps, cluster):
    primary = cluster["A"]
    call(apps["A"], "GET", "/health")
    pg.stop_process_group(primary.pid)
    try:
        for method, path, doc in (("GET", "/health", None), ("POST", "/records", {"key": "d", "payload": "p"}),
                                  ("GET", "/records/up", None)):
            status, region, body = call(apps["A"], method, path, doc)
            assert (status, region) == (503, "A") and body["error"]
    finally:
        cluster["restart"](primary)
    assert eventually(lambda: call(apps["A"], "GET", "/health")[0] == 200)
    assert call(apps["A"], "POST", "/records", {"key": "after", "payload": "p"})[0] == 201


def test_writes_succeed_on_the_standby_once_promoted(apps, cluster):
    """No restart, no role cache: the same app and sessions accept writes after promotion."""
    assert call(apps["B"], "POST", "/records", {"key": "p", "payload": "1"})[0] == 503
    pg.promote(cluster["B"].port)
    assert call(apps["B"], "POST", "/records", {"key": "p", "payload": "1"})[:2] == (201, "B")
    assert call(apps["B"], "GET", "/health")[2]["role"] == "primary"


def test_sigterm_exits_zero_quickly(apps):
    for proc, port in apps["procs"].values():
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - t0 < 10


def test_a_taken_port_makes_postgres_start_on_another(tmp_path):
    """PostgreSQL cannot bind port 0, so its port is chosen before it starts: when another
    process takes that port first, the start tries another one instead of failing the drill."""
    import socket

    bins, run_as = pg.find_binaries(), pg.RunAs.for_postgres()
    root = Path(tempfile.mkdtemp(prefix="drillkit-test-port-"))
    root.chmod(0o755)
    server = None
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        try:
            server = pg.init_primary(bins, run_as, root / "pg", root / "archive", root / "pg.log")
            server.port = taken
            pg.start(bins, run_as, server, root / "pg.log", dbname="postgres")
            assert server.port != taken
            assert "could not bind" in (root / "pg.log").read_text()
            with psycopg.connect(pg.dsn(server.port, dbname="postgres")) as conn:
                assert conn.execute("SELECT current_setting('port')::int").fetchone()[0] == server.port
        finally:
            if server is not None and server.pid:
                pg.stop_process_group(server.pid)
                pg.drop_shared_memory(server.datadir)
            shutil.rmtree(root, ignore_errors=True)
