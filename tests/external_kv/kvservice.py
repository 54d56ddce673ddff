#!/usr/bin/env python3
"""kvservice: a tiny key-value service that drillkit did not build, for drilling an external system.

Two subcommands:

  serve --region NAME --dsn DSN --ready-file PATH [--flush-interval 0.25]
      One region of the service over PostgreSQL (table kv_items). Writes are acknowledged from
      an in-memory write-behind buffer that a flusher thread upserts into the table every
      --flush-interval seconds: an acknowledged write not yet flushed is lost when the process
      is SIGKILLed (the deliberate data-loss bug).

      PUT  /kv/{id}     {"value": str, "sha256": str} -> 200 {"id", "state": "buffered"}
      GET  /kv/{id}     -> 200 {"id", "value", "sha256"} | 404 {"error": "not found"}
      GET  /healthz     -> 200 {"ok": true, "region": NAME}
      POST /admin/hold {"min_pending": N} -> quiesce for an exact crash: flushing stops, then (once
                           N acknowledged writes are buffered, or after 10 s) new requests block
                           forever and requests in flight finish; 200 {"pending": [ids still buffered],
                           "t": time at the response, "t_gate": time new requests began to block}

  lb --upstream NAME=HOST:PORT ... --active NAME --ready-file PATH --switch-log PATH
      The endpoint clients use: forwards every non-admin request to the active upstream.

      POST /admin/route {"to": NAME} -> 200 {"active": NAME, "t": switch time}, after appending
                                        {"t", "to"} to --switch-log (flushed and fsynced)
      GET  /admin/route              -> 200 {"active": NAME}

Every response carries Content-Length; the regions' responses carry X-Served-By: NAME, which the
lb passes back. Only the standard library and psycopg.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS kv_items (
    id text PRIMARY KEY,
    value text NOT NULL,
    sha256 text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""
UPSERT = """
INSERT INTO kv_items (id, value, sha256) VALUES (%s, %s, %s)
ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value, sha256 = EXCLUDED.sha256, updated_at = now()
"""
SCHEMA_LOCK = 0x6B76_0001  # serializes CREATE TABLE IF NOT EXISTS of regions starting together
UPSTREAM_TIMEOUT = 1.0
HOLD_WAIT = 10.0  # the longest a hold waits for buffered writes


def write_ready(path: str, port: int) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump({"port": port, "pid": os.getpid()}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class JsonHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive: every response has a Content-Length."""

    protocol_version = "HTTP/1.1"
    served_by: str | None = None

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet
        pass

    def _serve(self, method: str) -> None:
        raise NotImplementedError

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def read_json(self) -> dict | None:
        """The body as a JSON object, or None after answering 400."""
        try:
            body = json.loads(self.read_body() or b"null")
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            self.send_json(400, {"error": "body must be a JSON object"})
            return None
        return body

    def send_raw(self, status: int, body: bytes, content_type: str = "application/json",
                 served_by: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        served = served_by or self.served_by
        if served:
            self.send_header("X-Served-By", served)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status: int, payload: dict) -> None:
        self.send_raw(status, json.dumps(payload).encode())


# -- serve ------------------------------------------------------------------------------------


class Region:
    """The state of one serving region: its buffer, the flusher and the hold gate."""

    def __init__(self, name: str, dsn: str, flush_interval: float):
        import psycopg  # imported here: `lb` does not need it

        self.psycopg = psycopg
        self.name = name
        self.dsn = dsn
        self.flush_interval = flush_interval
        self.buffer: dict[str, tuple[str, str]] = {}
        self.buffer_lock = threading.Lock()
        self.flush_lock = threading.Lock()
        self.gate = threading.Condition()
        self.holding = False
        self.in_flight = 0
        self.read_lock = threading.Lock()
        self.read_conn = None
        self.flush_conn = None

    # schema and flushing

    def create_schema(self) -> None:
        with self.psycopg.connect(self.dsn) as conn:  # one transaction: lock, create, commit
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            conn.execute(TABLE_DDL)

    def flush_once(self) -> None:
        with self.flush_lock:
            with self.buffer_lock:
                batch = dict(self.buffer)
            if not batch:
                return
            try:
                if self.flush_conn is None or self.flush_conn.closed:
                    self.flush_conn = self.psycopg.connect(self.dsn, autocommit=False)
                with self.flush_conn.cursor() as cur:
                    cur.executemany(UPSERT, [(k, v, s) for k, (v, s) in batch.items()])
                self.flush_conn.commit()
            except self.psycopg.Error as exc:
                print(f"kvservice {self.name}: flush failed, will retry: {exc}", file=sys.stderr, flush=True)
                self._drop_flush_conn()
                return
            with self.buffer_lock:
                for key, entry in batch.items():
                    if self.buffer.get(key) == entry:  # re-written meanwhile: stays for the next flush
                        del self.buffer[key]

    def _drop_flush_conn(self) -> None:
        conn, self.flush_conn = self.flush_conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def flusher(self) -> None:
        while True:
            time.sleep(self.flush_interval)
            try:
                self.flush_once()
            except Exception as exc:  # never let the flusher die silently
                print(f"kvservice {self.name}: flusher error: {exc!r}", file=sys.stderr, flush=True)

    # the data

    def put(self, key: str, value: str, sha: str) -> None:
        with self.buffer_lock:
            self.buffer[key] = (value, sha)

    def get(self, key: str) -> tuple[str, str] | None:
        with self.buffer_lock:
            entry = self.buffer.get(key)
        if entry is not None:
            return entry
        with self.read_lock:
            try:
                if self.read_conn is None or self.read_conn.closed:
                    self.read_conn = self.psycopg.connect(self.dsn, autocommit=True)
                row = self.read_conn.execute("SELECT value, sha256 FROM kv_items WHERE id = %s",
                                             (key,)).fetchone()
            except self.psycopg.Error:
                conn, self.read_conn = self.read_conn, None
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
                raise
        return (row[0], row[1]) if row else None

    # the hold gate

    def enter(self) -> None:
        """Count a request in flight, or block it forever once a hold was received."""
        with self.gate:
            while self.holding:
                self.gate.wait()  # nobody ever releases a hold: the process is about to be killed
            self.in_flight += 1

    def leave(self) -> None:
        with self.gate:
            self.in_flight -= 1
            self.gate.notify_all()

    def hold(self, min_pending: int = 0) -> dict:
        """Stop flushing, wait (up to HOLD_WAIT s) until at least `min_pending` acknowledged writes
        are buffered, so the crash is sure to lose some, then gate new requests and let those in
        flight finish."""
        self.flush_lock.acquire()  # never released: no flush after this
        deadline = time.time() + HOLD_WAIT
        while time.time() < deadline:
            with self.buffer_lock:
                if len(self.buffer) >= min_pending:
                    break
            time.sleep(0.005)
        with self.gate:
            self.holding = True
            t_gate = time.time()
            while self.in_flight > 0:
                self.gate.wait()
        with self.buffer_lock:
            pending = sorted(self.buffer)
        return {"pending": pending, "t": time.time(), "t_gate": t_gate}


def region_handler(region: Region) -> type[JsonHandler]:
    class Handler(JsonHandler):
        served_by = region.name

        def _serve(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            if path.startswith("/admin/"):
                self._admin(method, path)
                return
            region.enter()
            try:
                self._data(method, path)
            finally:
                region.leave()  # the response is written (or the client is gone)

        def _admin(self, method: str, path: str) -> None:
            raw = self.read_body()
            if method == "POST" and path == "/admin/hold":
                try:
                    min_pending = int((json.loads(raw or b"{}") or {}).get("min_pending", 0))
                except (ValueError, TypeError, AttributeError):
                    return self.send_json(400, {"error": 'body must be {"min_pending": int}'})
                self.send_json(200, region.hold(min_pending))
            else:
                self.send_json(404, {"error": "not found"})

        def _data(self, method: str, path: str) -> None:
            if path == "/healthz" and method == "GET":
                self.read_body()
                self.send_json(200, {"ok": True, "region": region.name})
                return
            key = path[len("/kv/"):] if path.startswith("/kv/") else ""
            if not key or "/" in key:
                self.read_body()
                self.send_json(404, {"error": "not found"})
                return
            if method == "PUT":
                body = self.read_json()
                if body is None:
                    return
                value, sha = body.get("value"), body.get("sha256")
                if not isinstance(value, str) or not isinstance(sha, str):
                    self.send_json(400, {"error": "value and sha256 must be strings"})
                    return
                region.put(key, value, sha)
                self.send_json(200, {"id": key, "state": "buffered"})
            elif method == "GET":
                self.read_body()
                try:
                    entry = region.get(key)
                except region.psycopg.Error as exc:
                    self.send_json(503, {"error": f"database unavailable: {exc}".strip()})
                    return
                if entry is None:
                    self.send_json(404, {"error": "not found"})
                else:
                    self.send_json(200, {"id": key, "value": entry[0], "sha256": entry[1]})
            else:
                self.read_body()
                self.send_json(404, {"error": "not found"})

    return Handler


def serve(args: argparse.Namespace) -> int:
    region = Region(args.region, args.dsn, args.flush_interval)
    region.create_schema()
    server = ThreadingHTTPServer(("127.0.0.1", 0), region_handler(region))
    server.daemon_threads = True
    threading.Thread(target=region.flusher, name="flusher", daemon=True).start()
    write_ready(args.ready_file, server.server_address[1])
    server.serve_forever()
    return 0


# -- lb ---------------------------------------------------------------------------------------


class Balancer:
    def __init__(self, upstreams: dict[str, tuple[str, int]], active: str, switch_log: str):
        self.upstreams = upstreams
        self.active = active
        self.switch_log = switch_log
        self.lock = threading.Lock()

    def route(self, to: str) -> dict:
        with self.lock:
            t = time.time()
            self.active = to
            with open(self.switch_log, "a") as fh:
                fh.write(json.dumps({"t": t, "to": to}) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        return {"active": to, "t": t}

    def target(self) -> tuple[str, int]:
        with self.lock:
            return self.upstreams[self.active]


def lb_handler(lb: Balancer) -> type[JsonHandler]:
    class Handler(JsonHandler):
        def _serve(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            body = self.read_body()
            if path.startswith("/admin/"):
                self._admin(method, path, body)
            else:
                self._forward(method, body)

        def _admin(self, method: str, path: str, body: bytes) -> None:
            if path != "/admin/route":
                self.send_json(404, {"error": "not found"})
            elif method == "GET":
                with lb.lock:
                    self.send_json(200, {"active": lb.active})
            elif method == "POST":
                try:
                    request = json.loads(body or b"null")
                except (ValueError, UnicodeDecodeError):
                    request = None
                if not isinstance(request, dict):
                    self.send_json(400, {"error": "body must be a JSON object"})
                elif request.get("to") not in lb.upstreams:
                    self.send_json(400, {"error": f"unknown upstream {request.get('to')!r}; "
                                                  f"known: {sorted(lb.upstreams)}"})
                else:
                    self.send_json(200, lb.route(request["to"]))
            else:
                self.send_json(404, {"error": "not found"})

        def _forward(self, method: str, body: bytes) -> None:
            host, port = lb.target()
            headers = {"Connection": "close"}
            if self.headers.get("Content-Type"):
                headers["Content-Type"] = self.headers["Content-Type"]
            conn = http.client.HTTPConnection(host, port, timeout=UPSTREAM_TIMEOUT)
            try:
                conn.request(method, self.path, body=body if body or method in ("PUT", "POST") else None,
                             headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                status = resp.status
                content_type = resp.getheader("Content-Type") or "application/json"
                served_by = resp.getheader("X-Served-By")
            except (OSError, http.client.HTTPException) as exc:
                self.send_json(502, {"error": f"upstream {host}:{port}: {type(exc).__name__}: {exc}"})
                return
            finally:
                conn.close()
            self.send_raw(status, payload, content_type, served_by)

    return Handler


def parse_upstream(text: str) -> tuple[str, tuple[str, int]]:
    name, sep, address = text.partition("=")
    host, sep2, port = address.rpartition(":")
    if not (sep and sep2 and name and host and port.isdigit()):
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT, got {text!r}")
    return name, (host, int(port))


def run_lb(args: argparse.Namespace) -> int:
    upstreams = dict(args.upstream)
    if args.active not in upstreams:
        print(f"kvservice lb: --active {args.active!r} is not an upstream ({sorted(upstreams)})", file=sys.stderr)
        return 2
    lb = Balancer(upstreams, args.active, args.switch_log)
    server = ThreadingHTTPServer(("127.0.0.1", 0), lb_handler(lb))
    server.daemon_threads = True
    write_ready(args.ready_file, server.server_address[1])
    server.serve_forever()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kvservice", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="one region of the service")
    s.add_argument("--region", required=True)
    s.add_argument("--dsn", required=True)
    s.add_argument("--ready-file", required=True)
    s.add_argument("--flush-interval", type=float, default=0.25)
    b = sub.add_parser("lb", help="the client endpoint, forwarding to the active region")
    b.add_argument("--upstream", type=parse_upstream, action="append", required=True)
    b.add_argument("--active", required=True)
    b.add_argument("--ready-file", required=True)
    b.add_argument("--switch-log", required=True)
    args = parser.parse_args(argv)
    return serve(args) if args.command == "serve" else run_lb(args)


if __name__ == "__main__":
    sys.exit(main())
