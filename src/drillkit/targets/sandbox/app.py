"""The sandbox's regional app tier: a small HTTP service over its region's PostgreSQL.

It never decides by itself whether it may write: it asks the database, so a hot standby
refuses writes exactly until the moment its promotion completes, as a real app would see it.
Every response names the serving region in ``X-Region``, which is how the evidence tells
which region answered, and the instance in ``X-Instance``, by which the router's load balancing
keeps its connections per instance. Run as ``python -m drillkit.targets.sandbox.app``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import asyncpg
from aiohttp import web

from drillkit.targets.sandbox import s3_service as objects
from drillkit.targets.sandbox import table_service as table
from drillkit.net import add_service_arguments, serve_web_until_signalled, start_service
from drillkit.targets.sandbox.site import SITE_PATH

UPSERT = """
INSERT INTO records (key, payload, checksum, region) VALUES ($1, $2, $3, $4)
ON CONFLICT (key) DO UPDATE
SET payload = EXCLUDED.payload, checksum = EXCLUDED.checksum,
    written_at = clock_timestamp(), region = EXCLUDED.region
"""
READ = "SELECT payload FROM records WHERE key = $1"
LIST = "SELECT key, payload FROM records WHERE key > $1 ORDER BY key LIMIT $2"
PAGE = 1000
OBJECT_PAGE = 50
"""Objects a page of `/objects` lists: each is read from the store, so a page of 1000 could outlast
a router's upstream timeout on a busy host, and the audit would see a 504 for a slow page (CI saw
one with 200 on a busy 2-core machine, behind the emulated AWS account's 2 s upstream timeout)."""
ROLE = "SELECT pg_is_in_recovery()"


def checksum(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()


class Unavailable(Exception):
    """The region's database cannot answer: down, restarting, refusing or out of connections."""


UNAVAILABLE = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
               asyncpg.OperatorInterventionError, asyncpg.InsufficientResourcesError)
"""What asyncpg raises when the database, not the query, is the problem (SQLSTATE classes 08, 53, 57)."""


async def _session_unchanged(conn: asyncpg.Connection) -> None:
    """The app's queries change no session state, so a connection goes back to the pool as it is,
    without asyncpg's reset query (RESET ALL, UNLISTEN *, ...), a second round trip per request."""


class Database:
    """A pool of connections shared by the requests in flight (asyncpg, PostgreSQL's asyncio driver).

    A burst of new client connections (a healed partition releasing its backlog) must not
    fork one PostgreSQL backend per connection. The pool keeps all its connections open, as
    production pools do by default (HikariCP's minimumIdle is its maximumPoolSize): opened at
    start, and reopened in the background when broken, so a burst after a quiet spell finds them
    ready instead of waiting while PostgreSQL forks a backend for each, one after the other (tens
    of milliseconds). An app whose database is down at start still starts, and opens its
    connections as requests need them.
    """

    def __init__(self, dsn: str, size: int = 16):
        # the `key=value` words drillkit.targets.sandbox.postgres.dsn writes (psycopg's parser would
        # cost each app 0.15 s of start: the sandbox waits for its apps)
        info = dict(word.split("=", 1) for word in dsn.split())
        self.connect = {"host": info.get("host"), "port": int(info.get("port", 5432)), "user": info.get("user"),
                        "database": info.get("dbname"), "timeout": float(info.get("connect_timeout", 1))}
        self.size = size
        self.pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        pool = functools.partial(asyncpg.create_pool, max_size=self.size, reset=_session_unchanged, **self.connect)
        try:
            self.pool = await pool(min_size=self.size)
        except UNAVAILABLE:  # opened as requests come, once the database answers
            self.pool = await pool(min_size=0)

    async def execute(self, query: str, params: tuple = ()) -> list[asyncpg.Record]:
        try:
            async with self.pool.acquire(timeout=1.0) as conn:
                return await conn.fetch(query, *params)
        except UNAVAILABLE as exc:
            raise Unavailable(_first_line(exc) if str(exc) else f"no database connection: {type(exc).__name__}") from None

    async def shutdown(self) -> None:
        if self.pool is not None:
            try:
                await asyncio.wait_for(self.pool.close(), 0.5)
            except TimeoutError:
                self.pool.terminate()


class Capacity:
    """What one instance can serve: `rate` requests a second, with a tenth of a second's burst
    (a token bucket). A request beyond it is refused at once, as an overloaded pod sheds load."""

    def __init__(self, rate: float | None):
        self.rate = rate
        self.burst = max(1.0, (rate or 0) / 10)
        self.tokens = self.burst
        self.at = time.monotonic()

    def admit(self) -> bool:
        if self.rate is None:
            return True
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class App:
    """One instance of a region's app tier: an aiohttp application on one event loop. The object
    store and the global table are reached through boto3, which blocks, so those requests run on
    a thread pool; the records API, the hot path of every drill, never leaves the loop."""

    def __init__(self, region: str, dsn: str, s3_port: int | None = None, capacity: float | None = None,
                 instance: str = "", table_port: int | None = None, clock_offset: float = 0.0):
        self.region, self.db = region, Database(dsn)
        self.table = table.table_client(table_port, timeout=1.0) if table_port else None
        self.clock_offset = clock_offset
        self.capacity, self.instance = Capacity(capacity), instance or f"app-{region}"
        self.objects = objects.s3_client(s3_port) if s3_port else None

    def application(self) -> web.Application:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)

        async def start(_: web.Application) -> None:
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(32, thread_name_prefix="app"))
            await self.db.open()

        async def stop(_: web.Application) -> None:
            await self.db.shutdown()

        app.on_startup.append(start)
        app.on_cleanup.append(stop)
        return app

    def _json(self, status: int, doc: dict[str, Any]) -> web.Response:
        return web.Response(status=status, body=json.dumps(doc).encode(), content_type="application/json",
                            headers={"X-Region": self.region, "X-Instance": self.instance})

    async def dispatch(self, request: web.Request) -> web.Response:
        body = await request.read()
        path, method = request.path, request.method
        try:
            if path == "/health" and method in ("GET", "HEAD"):
                return await self._health()
            if not self.capacity.admit():
                return self._json(503, {"error": "over capacity", "instance": self.instance})
            if path == "/records" and method == "POST":
                return await self._write(body)
            if path == "/records" and method == "GET":
                return await self._list(request.query.get("after", ""))
            if path.startswith("/records/") and len(path) > 9 and method in ("GET", "HEAD"):
                return await self._read(path[9:])
            if path == "/objects" and method == "GET" and self.objects is not None:
                return await asyncio.to_thread(self._list_objects, request.query.get("after", ""))
            if path.startswith("/objects/") and len(path) > 9 and self.objects is not None:
                return await self._object(method, path[9:], body)
            if path.startswith("/items/") and len(path) > 7 and self.table is not None:
                return await asyncio.to_thread(self._item, method, path[7:], body)
            if path.startswith(SITE_PATH) and len(path) > len(SITE_PATH) and method in ("GET", "HEAD"):
                return await asyncio.to_thread(self._site, path[len(SITE_PATH):])
            return self._json(404, {"error": "not found"})
        except asyncpg.ReadOnlySQLTransactionError:
            return self._json(503, {"error": "read-only region"})
        except Unavailable as exc:
            return self._json(503, {"error": str(exc)})
        except asyncpg.PostgresError as exc:
            return self._json(500, {"error": _first_line(exc)})

    async def _health(self) -> web.Response:
        region = self.region
        try:
            (in_recovery,), = await self.db.execute(ROLE)
        except (Unavailable, asyncpg.PostgresError) as exc:
            return self._json(503, {"region": region, "db": "down", "error": _first_line(exc)})
        return self._json(200, {"region": region, "role": "standby" if in_recovery else "primary", "db": "ok"})

    async def _write(self, body: bytes) -> web.Response:
        try:
            doc = json.loads(body)
            key, payload = doc["key"], doc["payload"]
            if not (isinstance(key, str) and isinstance(payload, str) and key):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return self._json(400, {"error": 'body must be {"key": non-empty str, "payload": str}'})
        digest = checksum(payload)
        await self.db.execute(UPSERT, (key, payload, digest, self.region))
        return self._json(201, {"key": key, "checksum": digest, "region": self.region})

    async def _read(self, key: str) -> web.Response:
        rows = await self.db.execute(READ, (key,))
        if not rows:
            return self._json(404, {"error": "not found"})
        payload = rows[0][0]
        return self._json(200, {"key": key, "payload": payload, "checksum": checksum(payload)})

    async def _list(self, after: str) -> web.Response:
        """Every record, in key order, a page at a time: `{"items": [{key, payload}], "next": URL | null}`
        (what an audit through the app's own API reads)."""
        rows = await self.db.execute(LIST, (after, PAGE))
        following = f"/records?after={quote(rows[-1][0], safe='')}" if len(rows) == PAGE else None
        return self._json(200, {"items": [{"key": k, "payload": p} for k, p in rows], "next": following})

    def _list_objects(self, after: str) -> web.Response:
        """Every current object of the region's bucket, in key order, a page at a time, as `/records` lists records."""
        store = self.objects
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
        return self._json(200, {"items": items, "next": following})

    def _site(self, key: str) -> web.Response:
        """The region's copy of the static site (drillkit.targets.sandbox.site), as its bucket has it."""
        if self.objects is None:
            return self._json(404, {"error": "this region serves no site (no object store)"})
        try:
            resp = self.objects.get_object(Bucket=objects.SITE_BUCKET, Key=key)
            data = resp["Body"].read()
        except Exception as exc:  # botocore: no such key, or the region's store is unreachable
            if objects.is_missing(exc):
                return self._json(404, {"error": "not found"})
            return self._json(503, {"error": f"object store: {_first_line(exc)}"})
        return web.Response(status=200, body=data, headers={
            "X-Region": self.region, "X-Instance": self.instance,
            "Content-Type": resp.get("ContentType") or "application/octet-stream"})

    async def _object(self, method: str, key: str, body: bytes) -> web.Response:
        """Objects live in the region's S3 bucket; the database decides, as for records, whether
        this region may write (a standby region's store is the replica's destination)."""
        if method in ("PUT", "DELETE"):
            (in_recovery,), = await self.db.execute(ROLE)
            if in_recovery:
                return self._json(503, {"error": "read-only region"})
        return await asyncio.to_thread(self._object_call, method, key, body)

    def _object_call(self, method: str, key: str, body: bytes) -> web.Response:
        store = self.objects
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
                                        "region": self.region})
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
        return self._json(405, {"error": f"{method} not allowed on objects"})

    def _item(self, method: str, key: str, body: bytes) -> web.Response:
        """The region's replica of the global table, written here whatever the database's role
        (active-active): a PUT is stamped with this region's clock (plus its offset) and kept only
        if newer than what the replica holds (LWW), and acknowledged either way, as a global table
        acknowledges a local write it will later lose."""
        client = self.table
        try:
            if method == "PUT":
                try:
                    value = json.loads(body)["value"]
                    if not isinstance(value, str) or not value:
                        raise TypeError
                except (ValueError, KeyError, TypeError):
                    return self._json(400, {"error": 'body must be {"value": non-empty str}'})
                ts = time.time() + self.clock_offset
                table.put_if_newer(client, key, value, ts, self.region)
                return self._json(200, {"key": key, "value": value, "ts": ts, "region": self.region})
            if method in ("GET", "HEAD"):
                item = table.get_item(client, key)
                if item is None:
                    return self._json(404, {"error": "not found"})
                return self._json(200, {**item, "checksum": item["value"]})
        except Exception as exc:  # botocore: the region's table is unreachable or failing
            return self._json(503, {"error": f"table: {_first_line(exc)}"})
        return self._json(405, {"error": f"{method} not allowed on items"})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def command(region: str, db_port: int, s3_ports: dict[str, int] | None = None, capacity: float | None = None,
            instance: str = "", table_port: int | None = None, clock_offset: float = 0.0) -> list[str]:
    """The arguments that start an instance of a region's app over its database (and its store
    and global table replica, when it has them), on a port it binds itself and reports in its
    ready file."""
    from drillkit.targets.sandbox import postgres as pg   # the app's own process needs none of it

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
    app = App(args.region, args.dsn, args.s3_port, args.capacity, name, args.table_port, args.clock_offset)
    return serve_web_until_signalled(app.application(), args.port, args.ready_file)


if __name__ == "__main__":
    raise SystemExit(main())
