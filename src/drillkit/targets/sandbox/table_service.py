"""The sandbox's global table: a DynamoDB API per region and drillkit's two-way LWW replicator.

Each region runs moto's DynamoDB server with one table, `drillkit-items`, whose stream holds every
change (NEW_IMAGE). moto has global tables' API but replicates nothing, so the replicator is
ours, one per direction, running in the source region: it follows the source table's stream
(DynamoDB Streams' GetRecords), and `delay` seconds after it saw each change the source region
itself made (`origin` = the source; replicas it received are not sent back) it writes the item
to the destination, through the replication link, so link faults apply.

Every item carries `value`, `ts` (the writing region's clock, in seconds, with that region's
clock offset: what LWW compares) and `origin` (the writing region). Both local and replicated
writes are conditional on being newer — `ts` greater, or equal with a greater `origin` — so every
region converges on the same winner, as global tables do; a local write that loses is still
acknowledged (the client cannot tell), which is what the active-active checker counts.

A change that cannot be written (destination down or cut off) stays queued, in order, and is
retried: a region that comes back after an outage receives what it missed, and sends what it
had not yet sent. Each replicated change is logged (`--log`, JSON lines: t, key, value, from, to,
outcome `applied` or `discarded` by LWW) for the checker.

`python -m drillkit.targets.sandbox.table_service store ...` runs one region's table;
`python -m drillkit.targets.sandbox.table_service replicate ...` runs one direction's replicator.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any

from drillkit.targets.sandbox.net import add_service_arguments, start_service

TABLE = "drillkit-items"
NEWER = "attribute_not_exists(#k) OR #ts < :ts OR (#ts = :ts AND #o < :o)"
"""LWW: an item is written only over an older one (a tie on ts goes to the greater region name)."""


def table_client(port: int, timeout: float = 2.0, attempts: int = 1):
    """A boto3 DynamoDB client for one region's table (moto accepts any credentials)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id="drillkit", aws_secret_access_key="drillkit",
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": attempts},
                      max_pool_connections=32))


def streams_client(port: int, timeout: float = 2.0):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "dynamodbstreams", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id="drillkit", aws_secret_access_key="drillkit",
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 1}))


def put_if_newer(client, key: str, value: str, ts: float, origin: str) -> bool:
    """Write the item unless the table holds a newer one; True when it was written."""
    try:
        client.put_item(
            TableName=TABLE,
            Item={"key": {"S": key}, "value": {"S": value}, "ts": {"N": repr(ts)}, "origin": {"S": origin}},
            ConditionExpression=NEWER,
            ExpressionAttributeNames={"#k": "key", "#ts": "ts", "#o": "origin"},
            ExpressionAttributeValues={":ts": {"N": repr(ts)}, ":o": {"S": origin}})
    except client.exceptions.ConditionalCheckFailedException:
        return False
    return True


def get_item(client, key: str) -> dict[str, Any] | None:
    item = client.get_item(TableName=TABLE, Key={"key": {"S": key}}, ConsistentRead=True).get("Item")
    return None if item is None else _plain(item)


def scan(client) -> dict[str, dict[str, Any]]:
    """The whole table, key → {value, ts, origin}."""
    out = {}
    for page in client.get_paginator("scan").paginate(TableName=TABLE, ConsistentRead=True):
        for item in page.get("Items", []):
            plain = _plain(item)
            out[plain["key"]] = plain
    return out


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {"key": item["key"]["S"], "value": item["value"]["S"], "ts": float(item["ts"]["N"]),
            "origin": item["origin"]["S"]}


# -- the store ------------------------------------------------------------------------------


def serve_store(port: int, ready_file: str | None) -> int:
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from drillkit.targets.sandbox.net import serve_until_signalled

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", port, DomainDispatcherApplication(create_backend_app), threaded=True,
                         request_handler=MotoRequestHandler)
    threading.Thread(target=_create_table, args=(server, ready_file), name="table setup", daemon=True).start()
    return serve_until_signalled(server, None)


def _create_table(server, ready_file: str | None) -> None:
    """The store is ready once its table exists, with its stream: only then is the ready file written."""
    from drillkit.targets.sandbox.net import write_ready_file

    client = table_client(server.server_address[1], attempts=3)
    client.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST",
                        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    if ready_file:
        write_ready_file(ready_file, server.server_address[1])


# -- the replicator -------------------------------------------------------------------------


class TableReplicator:
    """Sends the source region's own changes to the destination, each `delay` after it was seen:
    in parallel across keys, in stream order within a key; a change that cannot be written stays
    queued, and the key's later changes wait behind it."""

    workers = 8
    batch = 64

    def __init__(self, source_port: int, destination_port: int, source: str, destination: str, delay: float,
                 log: str | None, poll: float = 0.02):
        self.table, self.streams = table_client(source_port), streams_client(source_port)
        self.destination = table_client(destination_port, timeout=1.0)   # shared by the workers: boto3
        # clients are thread-safe
        self.source_region, self.destination_region = source, destination
        self.delay, self.poll, self.log = delay, poll, log
        self.pending: deque[dict[str, Any]] = deque()
        self.seq = 0
        self.lock = threading.Lock()
        self.log_lock = threading.Lock()
        self.counts = {"applied": 0, "discarded": 0, "errors": 0}
        self.last_error: str | None = None
        self.paused = False

    def status(self) -> dict[str, Any]:
        with self.lock:
            oldest = self.pending[0]["seen"] if self.pending else None
            return {"backlog": len(self.pending), "oldest_pending_s": None if oldest is None else time.time() - oldest,
                    "delay": self.delay, "paused": self.paused, "last_error": self.last_error, **self.counts}

    def configure(self, delay: float | None = None, paused: bool | None = None) -> dict[str, Any]:
        with self.lock:
            if delay is not None:
                self.delay = float(delay)
            if paused is not None:
                self.paused = bool(paused)
        return self.status()

    def follow(self, stop: threading.Event) -> None:
        arn = self.table.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
        shard = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = self.streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                                   ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while not stop.is_set():
            try:
                page = self.streams.get_records(ShardIterator=iterator, Limit=1000)
            except Exception as exc:  # noqa: BLE001 - botocore's errors: retried on the next poll
                self._failed(exc)
                stop.wait(self.poll)
                continue
            iterator = page["NextShardIterator"]
            now = time.time()
            mine = [_plain(r["dynamodb"]["NewImage"]) for r in page.get("Records", [])
                    if "NewImage" in r.get("dynamodb", {})]
            with self.lock:
                for item in mine:
                    if item["origin"] == self.source_region:
                        self.seq += 1
                        self.pending.append(dict(item, seen=now, seq=self.seq))
            if not mine:
                stop.wait(self.poll)

    def run(self, stop: threading.Event) -> None:
        threading.Thread(target=self.follow, args=(stop,), name="stream reader", daemon=True).start()
        with ThreadPoolExecutor(self.workers) as pool:
            while not stop.is_set():
                due = self._due()
                if not due:
                    stop.wait(self.poll)
                    continue
                by_key: dict[str, list[dict[str, Any]]] = {}
                for change in due:
                    by_key.setdefault(change["key"], []).append(change)
                done = {seq for seqs in pool.map(self._deliver_in_order, by_key.values()) for seq in seqs}
                with self.lock:
                    self.pending = deque(c for c in self.pending if c["seq"] not in done)
                if len(done) < len(due):   # the destination is down or cut off: retry after a pause
                    stop.wait(self.poll)

    def _due(self) -> list[dict[str, Any]]:
        """The changes whose delay has passed, oldest first, at most `batch` of them."""
        with self.lock:
            if self.paused:
                return []
            now, out = time.time(), []
            for change in self.pending:
                if change["seen"] + self.delay > now or len(out) >= self.batch:
                    break
                out.append(change)
            return out

    def _deliver_in_order(self, changes: list[dict[str, Any]]) -> list[int]:
        """One key's changes, in stream order; the first that cannot be written stops the rest."""
        done = []
        for change in changes:
            try:
                written = put_if_newer(self.destination, change["key"], change["value"], change["ts"], change["origin"])
                if not written:   # a retry of a put a cut link held and delivered later took effect
                    held = get_item(self.destination, change["key"])
                    written = held is not None and all(held[f] == change[f] for f in ("value", "ts", "origin"))
            except Exception as exc:  # noqa: BLE001 - the destination is down or cut off: retry, in order
                self._failed(exc)
                break
            outcome = "applied" if written else "discarded"
            with self.lock:
                self.counts[outcome] += 1
            self._log({"t": time.time(), "key": change["key"], "value": change["value"], "ts": change["ts"],
                       "from": self.source_region, "to": self.destination_region, "outcome": outcome})
            done.append(change["seq"])
        return done

    def _log(self, record: dict[str, Any]) -> None:
        if self.log:
            with self.log_lock, open(self.log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")

    def _failed(self, exc: Exception) -> None:
        with self.lock:
            self.counts["errors"] += 1
            self.last_error = (str(exc).splitlines() or [type(exc).__name__])[0][:200]


class ReplicatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._json(200, self.server.replicator.status())

    def do_POST(self) -> None:
        try:
            doc = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            status = self.server.replicator.configure(doc.get("delay"), doc.get("paused"))
        except (ValueError, TypeError, AttributeError) as exc:
            return self._json(400, {"error": str(exc)})
        self._json(200, status)

    def _json(self, code: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def serve_replicator(args: argparse.Namespace) -> int:
    from drillkit.targets.sandbox.net import LoopbackServer, serve_until_signalled

    replicator = TableReplicator(args.source_port, args.destination_port, args.source, args.destination,
                                 args.delay, args.log)
    server = LoopbackServer(("127.0.0.1", args.port), ReplicatorHandler)
    server.replicator = replicator
    stop = threading.Event()
    threading.Thread(target=replicator.run, args=(stop,), name="replication loop", daemon=True).start()
    try:
        return serve_until_signalled(server, args.ready_file)
    finally:
        stop.set()


def replicator_command(source_port: int, destination_port: int, source: str, destination: str, delay: float,
                       log: str | os.PathLike[str]) -> list[str]:
    """The arguments that start one direction's replicator (the destination port is its link's)."""
    return ["replicate", "--source-port", str(source_port), "--destination-port", str(destination_port),
            "--source", source, "--destination", destination, "--delay", str(delay), "--log", str(log)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drillkit.targets.sandbox.table_service",
                                     description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    store = sub.add_parser("store", help="one region's DynamoDB API with the global table")
    store.add_argument("--port", type=int, default=0)
    add_service_arguments(store)
    rep = sub.add_parser("replicate", help="one direction of the global table's replication")
    rep.add_argument("--port", type=int, default=0, help="status and configuration API")
    rep.add_argument("--source-port", type=int, required=True, help="the source region's table (local)")
    rep.add_argument("--destination-port", type=int, required=True, help="the destination's table (its link)")
    rep.add_argument("--source", required=True, help="the source region's name")
    rep.add_argument("--destination", required=True, help="the destination region's name")
    rep.add_argument("--delay", type=float, default=0.0)
    rep.add_argument("--log", help="JSON lines, one per replicated change (absolute path)")
    add_service_arguments(rep)
    args = parser.parse_args(argv)
    start_service("global table" if args.command == "store" else "table replicator", args, parser)
    if args.command == "store":
        return serve_store(args.port, args.ready_file)
    return serve_replicator(args)


if __name__ == "__main__":
    raise SystemExit(main())
