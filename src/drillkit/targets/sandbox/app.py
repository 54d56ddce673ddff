"""The sandbox's regional app tier: a small HTTP service over its region's PostgreSQL.

It never decides by itself whether it may write: it asks the database, so a hot standby
refuses writes exactly until the moment its promotion completes, as a real app would see it.
Every response names the serving region in ``X-Region``, which is how the evidence tells
which region answered. Run as ``python -m drillkit.targets.sandbox.app``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import psycopg
from psycopg import errors
from psycopg_pool import ConnectionPool, PoolTimeout

from drillkit.targets.sandbox import postgres as pg
from drillkit.targets.sandbox import s3_service as objects
from drillkit.targets.sandbox import table_service as table
from drillkit.targets.sandbox.net import LoopbackServer, add_service_arguments, serve_until_signalled, start_service
from drillkit.targets.sandbox.site import SITE_PATH

UPSERT = """
INSERT INTO records (key, payload, checksum, region) VALUES (%s, %s, %s, %s)
ON CONFLICT (key) DO UPDATE
SET payload = EXCLUDED.payload, checksum = EXCLUDED.checksum,
    written_at = clock_timestamp(), region = EXCLUDED.region
"""
READ = "SELECT payload FROM records WHERE key = %s"
LIST = "SELECT key, payload FROM records WHERE key > %s ORDER BY key LIMIT %s"
PAGE = 1000
OBJECT_PAGE = 200
"""Objects a page of `/objects` lists: each is read from the store, so a page of 1000 could outlast
a router's upstream timeout on a busy host, and the audit would see a 504 for a slow page."""
ROLE = "SELECT pg_is_in_recovery()"


def checksum(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()


class Database:
    """A pool of autocommit connections shared by the handler threads.

    A burst of new client connections (a healed partition releasing its backlog) must not
    fork one PostgreSQL backend per connection; broken connections are dropped by the pool.
    """

    def __init__(self, dsn: str, size: int = 16):
        self.pool = ConnectionPool(dsn, min_size=2, max_size=size, open=False, timeout=1.0,
                                   kwargs={"autocommit": True, "connect_timeout": 1},
                                   reconnect_timeout=0, name="app")
        self.pool.open(wait=False)

    def execute(self, query: str, params: tuple = ()) -> list[tuple]:
        try:
            with self.pool.connection() as conn:
                cur = conn.execute(query, params)
                return cur.fetchall() if cur.description else []
        except PoolTimeout as exc:
            raise psycopg.OperationalError(f"no database connection: {exc}") from None

    def shutdown(self) -> None:
        self.pool.close(timeout=0.5)


class Capacity:
    """What one instance can serve: `rate` requests a second, with a tenth of a second's burst
    (a token bucket). A request beyond it is refused at once, as an overloaded pod sheds load."""

    def __init__(self, rate: float | None):
        self.rate = rate
        self.burst = max(1.0, (rate or 0) / 10)
        self.tokens = self.burst
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def admit(self) -> bool:
        if self.rate is None:
            return True
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens < 1:
                return False
            self.tokens -= 1
            return True


class AppHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: AppServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.close_connection = True
        self._json(code, {"error": message or str(code)})

    def _json(self, status: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        self.send_response_only(status)
        self.send_header("X-Region", self.server.region)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _dispatch(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?", 1)[0]
        try:
            if path == "/health" and self.command in ("GET", "HEAD"):
                return self._health()
            if not self.server.capacity.admit():
                return self._json(503, {"error": "over capacity", "instance": self.server.instance})
            if path == "/records" and self.command == "POST":
                return self._write(body)
            if path == "/records" and self.command == "GET":
                return self._list(parse_qs(self.path.partition("?")[2]).get("after", [""])[0])
            if path.startswith("/records/") and len(path) > 9 and self.command in ("GET", "HEAD"):
                return self._read(unquote(path[9:]))
            if path == "/objects" and self.command == "GET" and self.server.objects is not None:
                return self._list_objects(parse_qs(self.path.partition("?")[2]).get("after", [""])[0])
            if path.startswith("/objects/") and len(path) > 9 and self.server.objects is not None:
                return self._object(self.command, unquote(path[9:]), body)
            if path.startswith("/items/") and len(path) > 7 and self.server.table is not None:
                return self._item(self.command, unquote(path[7:]), body)
            if path.startswith(SITE_PATH) and len(path) > len(SITE_PATH) and self.command in ("GET", "HEAD"):
                return self._site(unquote(path[len(SITE_PATH):]))
            return self._json(404, {"error": "not found"})
        except errors.ReadOnlySqlTransaction:
            self._json(503, {"error": "read-only region"})
        except psycopg.OperationalError as exc:
            self._json(503, {"error": _first_line(exc)})
        except psycopg.Error as exc:
            self._json(500, {"error": _first_line(exc)})

    def _health(self) -> None:
        region = self.server.region
        try:
            (in_recovery,), = self.server.db.execute(ROLE)
        except psycopg.Error as exc:
            return self._json(503, {"region": region, "db": "down", "error": _first_line(exc)})
        self._json(200, {"region": region, "role": "standby" if in_recovery else "primary", "db": "ok"})

    def _write(self, body: bytes) -> None:
        try:
            doc = json.loads(body)
            key, payload = doc["key"], doc["payload"]
            if not (isinstance(key, str) and isinstance(payload, str) and key):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return self._json(400, {"error": 'body must be {"key": non-empty str, "payload": str}'})
        digest = checksum(payload)
        self.server.db.execute(UPSERT, (key, payload, digest, self.server.region))
        self._json(201, {"key": key, "checksum": digest, "region": self.server.region})

    def _read(self, key: str) -> None:
        rows = self.server.db.execute(READ, (key,))
        if not rows:
            return self._json(404, {"error": "not found"})
        payload = rows[0][0]
        self._json(200, {"key": key, "payload": payload, "checksum": checksum(payload)})

    def _list(self, after: str) -> None:
        """Every record, in key order, a page at a time: `{"items": [{key, payload}], "next": URL | null}`
        (what an audit through the app's own API reads)."""
        rows = self.server.db.execute(LIST, (after, PAGE))
        following = f"/records?after={quote(rows[-1][0], safe='')}" if len(rows) == PAGE else None
        self._json(200, {"items": [{"key": k, "payload": p} for k, p in rows], "next": following})

    def _list_objects(self, after: str) -> None:
        """Every current object of the region's bucket, in key order, a page at a time, as `/records` lists records."""
        store = self.server.objects
        try:
            page = store.list_objects_v2(Bucket=objects.BUCKET, StartAfter=after, MaxKeys=OBJECT_PAGE)
            keys = [item["Key"] for item in page.get("Contents", [])]
            with ThreadPoolExecutor(8) as pool:
                bodies = list(pool.map(lambda k: objects.read_object(store, k), keys))
        except Exception as exc:  # botocore: the region's store is unreachable or failing
            return self._json(503, {"error": f"object store: {_first_line(exc)}"})
        items = [{"key": k, "payload": found[0].decode(errors="replace")}
                 for k, found in zip(keys, bodies) if found is not None]
        following = f"/objects?after={quote(keys[-1], safe='')}" if page.get("IsTruncated") and keys else None
        self._json(200, {"items": items, "next": following})

    def _site(self, key: str) -> None:
        """The region's copy of the static site (drillkit.targets.sandbox.site), as its bucket has it."""
        if self.server.objects is None:
            return self._json(404, {"error": "this region serves no site (no object store)"})
        try:
            resp = self.server.objects.get_object(Bucket=objects.SITE_BUCKET, Key=key)
            data = resp["Body"].read()
        except Exception as exc:  # botocore: no such key, or the region's store is unreachable
            if objects.is_missing(exc):
                return self._json(404, {"error": "not found"})
            return self._json(503, {"error": f"object store: {_first_line(exc)}"})
        self.send_response_only(200)
        self.send_header("X-Region", self.server.region)
        self.send_header("Content-Type", resp.get("ContentType") or "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _object(self, method: str, key: str, body: bytes) -> None:
        """Objects live in the region's S3 bucket; the database decides, as for records, whether
        this region may write (a standby region's store is the replica's destination)."""
        store = self.server.objects
        if method in ("PUT", "DELETE"):
            (in_recovery,), = self.server.db.execute(ROLE)
            if in_recovery:
                return self._json(503, {"error": "read-only region"})
        try:
            if method == "PUT":
                try:
                    payload = json.loads(body)["payload"]
                    if not isinstance(payload, str):
                        raise TypeError
                except (ValueError, KeyError, TypeError):
                    return self._json(400, {"error": 'body must be {"payload": str}'})
                digest = checksum(payload)
                resp = store.put_object(Bucket=objects.BUCKET, Key=key, Body=payload.encode(),
                                        Metadata={objects.CHECKSUM_META: digest})
                return self._json(201, {"key": key, "checksum": digest, "version_id": resp.get("VersionId"),
                                        "region": self.server.region})
            if method == "DELETE":
                resp = store.delete_object(Bucket=objects.BUCKET, Key=key)
                return self._json(200, {"key": key, "version_id": resp.get("VersionId")})
            if method in ("GET", "HEAD"):
                found = objects.read_object(store, key)
                if found is None:
                    return self._json(404, {"error": "not found"})
                payload = found[0].decode(errors="replace")
                return self._json(200, {"key": key, "payload": payload, "checksum": objects.sha256(found[0])})
        except Exception as exc:  # botocore: the region's store is unreachable or failing
            return self._json(503, {"error": f"object store: {_first_line(exc)}"})
        self._json(405, {"error": f"{method} not allowed on objects"})

    def _item(self, method: str, key: str, body: bytes) -> None:
        """The region's replica of the global table, written here whatever the database's role
        (active-active): a PUT is stamped with this region's clock (plus its offset) and kept only
        if newer than what the replica holds (LWW), and acknowledged either way, as a global table
        acknowledges a local write it will later lose."""
        client = self.server.table
        try:
            if method == "PUT":
                try:
                    value = json.loads(body)["value"]
                    if not isinstance(value, str) or not value:
                        raise TypeError
                except (ValueError, KeyError, TypeError):
                    return self._json(400, {"error": 'body must be {"value": non-empty str}'})
                ts = time.time() + self.server.clock_offset
                table.put_if_newer(client, key, value, ts, self.server.region)
                return self._json(200, {"key": key, "value": value, "ts": ts, "region": self.server.region})
            if method in ("GET", "HEAD"):
                item = table.get_item(client, key)
                if item is None:
                    return self._json(404, {"error": "not found"})
                return self._json(200, {**item, "checksum": item["value"]})
        except Exception as exc:  # botocore: the region's table is unreachable or failing
            return self._json(503, {"error": f"table: {_first_line(exc)}"})
        self._json(405, {"error": f"{method} not allowed on items"})

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _dispatch


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class AppServer(LoopbackServer):
    def __init__(self, port: int, region: str, dsn: str, s3_port: int | None = None,
                 capacity: float | None = None, instance: str = "", table_port: int | None = None,
                 clock_offset: float = 0.0):
        self.region, self.db = region, Database(dsn)
        self.table = table.table_client(table_port, timeout=1.0) if table_port else None
        self.clock_offset = clock_offset
        self.capacity, self.instance = Capacity(capacity), instance or f"app-{region}"
        self.objects = objects.s3_client(s3_port) if s3_port else None
        super().__init__(("127.0.0.1", port), AppHandler)


def command(region: str, db_port: int, s3_ports: dict[str, int] | None = None, capacity: float | None = None,
            instance: str = "", table_port: int | None = None, clock_offset: float = 0.0) -> list[str]:
    """The arguments that start an instance of a region's app over its database (and its store
    and global table replica, when it has them), on a port it binds itself and reports in its
    ready file."""
    args = ["--region", region, "--port", "0", "--dsn", pg.dsn(db_port)]
    args += ["--capacity", repr(capacity)] if capacity is not None else []
    args += ["--instance", instance] if instance else []
    args += ["--table-port", str(table_port), "--clock-offset", repr(clock_offset)] if table_port else []
    return args + (["--s3-port", str(s3_ports[region])] if s3_ports and region in s3_ports else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drillkit.targets.sandbox.app", description=__doc__.split("\n")[0])
    parser.add_argument("--region", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dsn", required=True, help="libpq connection string of this region's database")
    parser.add_argument("--s3-port", type=int, help="this region's object store (S3 API)")
    parser.add_argument("--capacity", type=float, help="requests per second this instance serves (default: no limit)")
    parser.add_argument("--table-port", type=int, help="this region's replica of the global table (DynamoDB API)")
    parser.add_argument("--clock-offset", type=float, default=0.0,
                        help="seconds this region's clock is ahead of the host's (LWW timestamps)")
    parser.add_argument("--instance", default="", help="this instance's name (default app-REGION)")
    add_service_arguments(parser)
    args = parser.parse_args(argv)
    if args.capacity is not None and not args.capacity > 0:
        parser.error("--capacity must be positive")
    name = args.instance or f"app-{args.region}"
    start_service(name, args, parser)
    return serve_until_signalled(AppServer(args.port, args.region, args.dsn, args.s3_port, args.capacity, name,
                                           args.table_port, args.clock_offset), args.ready_file)


if __name__ == "__main__":
    raise SystemExit(main())
