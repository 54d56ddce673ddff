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
import io
import json
import logging
import os
import threading
import time
from typing import Any

from drillkit.net import add_service_arguments, local_client, start_service
from drillkit.targets.sandbox.replication import ChangeReplicator, serve

TABLE = "drillkit-items"
NEWER = "attribute_not_exists(#k) OR #ts < :ts OR (#ts = :ts AND #o < :o)"
"""LWW: an item is written only over an older one (a tie on ts goes to the greater region name)."""


def table_client(port: int, timeout: float = 2.0, attempts: int = 1):
    """A boto3 DynamoDB client for one region's table; `attempts` in all."""
    return local_client("dynamodb", port, timeout, attempts)


def streams_client(port: int, timeout: float = 2.0):
    return local_client("dynamodbstreams", port, timeout, 1)


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
    from werkzeug.serving import make_server

    from drillkit.net import serve_until_signalled

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", port, table_app(), threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=_create_table, args=(server, ready_file), name="table setup", daemon=True).start()
    return serve_until_signalled(server, None)


def table_app():
    """The WSGI application a region's table serves: moto's DynamoDB, one request at a time."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return one_at_a_time(DomainDispatcherApplication(create_backend_app))


def one_at_a_time(app):
    """The table's WSGI application serving one request at a time once its body has arrived.

    DynamoDB applies a conditional write atomically. moto checks the condition, then writes, with
    no lock between: two conditional puts on one key in flight at once could both pass, and the
    older one land last, over the newer. Seen in a drill: two writes of one key 1 ms apart, both
    acknowledged, the older one kept. The body is read before the lock, so a request held in a
    cut link holds up nobody else; the answer is sent after it."""
    lock = threading.Lock()

    def serve(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(length) if length else b"")
        with lock:
            return list(app(environ, start_response))

    return serve


def _create_table(server, ready_file: str | None) -> None:
    """The store is ready once its table exists, with its stream: only then is the ready file written."""
    from drillkit.net import write_ready_file

    client = table_client(server.server_address[1], attempts=3)
    client.create_table(TableName=TABLE, KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST",
                        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    if ready_file:
        write_ready_file(ready_file, server.server_address[1])


# -- the replicator -------------------------------------------------------------------------


class TableReplicator(ChangeReplicator):
    """Sends the source region's own changes to the destination, each `delay` after the stream
    reader saw it (its `t`), through ChangeReplicator's queue: in parallel across keys, in stream
    order within a key."""

    def __init__(self, source_port: int, destination_port: int, source: str, destination: str, delay: float,
                 log: str | None, poll: float = 0.02):
        super().__init__(delay, poll)
        self.table, self.streams = table_client(source_port), streams_client(source_port)
        # one client shared by the delivery workers: boto3 clients are thread-safe
        self.destination = table_client(destination_port, timeout=1.0)
        self.source_region, self.destination_region = source, destination
        self.log = log
        self.log_lock = threading.Lock()
        self.seq = 0
        self.counts.update({"applied": 0, "discarded": 0})

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
                    if item["origin"] == self.source_region:   # replicas it received are not sent back
                        self.seq += 1
                        self.pending.append(dict(item, t=now, seq=self.seq))
            if not mine:
                stop.wait(self.poll)

    def deliver(self, change: dict[str, Any]) -> None:
        written = put_if_newer(self.destination, change["key"], change["value"], change["ts"], change["origin"])
        if not written:   # a retry of a put a cut link held and delivered later took effect
            held = get_item(self.destination, change["key"])
            written = held is not None and all(held[f] == change[f] for f in ("value", "ts", "origin"))
        outcome = "applied" if written else "discarded"
        self.count(outcome)
        if self.log:
            record = {"t": time.time(), "key": change["key"], "value": change["value"], "ts": change["ts"],
                      "from": self.source_region, "to": self.destination_region, "outcome": outcome}
            with self.log_lock, open(self.log, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")


def serve_replicator(args: argparse.Namespace) -> int:
    return serve(TableReplicator(args.source_port, args.destination_port, args.source, args.destination,
                                 args.delay, args.log), args)


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
