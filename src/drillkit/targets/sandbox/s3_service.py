"""The sandbox's object storage: an S3 API per region and drillkit's cross-region replicator.

Each region runs moto's S3 server with one versioned bucket. moto stores a replication
configuration but copies nothing, so the replicator is ours: it follows the source store's
change feed (every object version and delete marker the store acknowledged, with the moment it
did), copies each one to the destination after the configured delay, replicates delete markers
only when told to, and reports its backlog like S3 Replication Time Control's metrics.

The change feed is recorded by the store process itself (a WSGI layer around moto), because
listing every version of a bucket on each poll grows with the bucket and would be the lag.

`python -m drillkit.targets.sandbox.s3_service store ...` runs one region's store;
`python -m drillkit.targets.sandbox.s3_service replicate ...` runs the replicator.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import threading
import time
import urllib.request
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, unquote

from drillkit.net import add_service_arguments, local_client, start_service
from drillkit.targets.sandbox.replication import ChangeReplicator, serve

BUCKET = "drillkit-objects"
SITE_BUCKET = "drillkit-site"
"""Each region's static site (drillkit.targets.sandbox.site): not versioned, never replicated."""
CHECKSUM_META = "sha256"
"""User metadata the app writes with every object: the SHA-256 of the body it was given."""
FEED = "/_drillkit/changes"


def s3_client(port: int, timeout: float = 2.0, attempts: int = 2):
    """A boto3 client for one region's store; `attempts` in all."""
    return local_client("s3", port, timeout, attempts, s3={"addressing_style": "path"})


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def is_missing(exc: Exception) -> bool:
    """NoSuchKey, or a delete marker as the current version: the object is gone for its readers."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code")
    return code in ("NoSuchKey", "404", "NoSuchVersion")


def current_objects(client) -> Iterator[str]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for item in page.get("Contents", []):
            yield item["Key"]


def read_object(client, key: str, version_id: str | None = None) -> tuple[bytes, dict[str, str]] | None:
    try:
        resp = client.get_object(Bucket=BUCKET, Key=key, **({"VersionId": version_id} if version_id else {}))
    except Exception as exc:
        if is_missing(exc):
            return None
        raise
    return resp["Body"].read(), resp.get("Metadata", {})


def verifies(body: bytes, meta: dict[str, str]) -> bool:
    """The body is what the app wrote: its SHA-256 matches the checksum stored beside it."""
    return meta.get(CHECKSUM_META) == sha256(body)


def versions_by_key(client) -> dict[str, list[dict[str, Any]]]:
    """Every version and delete marker per key, newest first (S3 lists them in that order)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
        entries = [dict(v, delete_marker=False) for v in page.get("Versions", [])]
        entries += [dict(d, delete_marker=True) for d in page.get("DeleteMarkers", [])]
        for e in entries:
            out.setdefault(e["Key"], []).append(e)
    for versions in out.values():
        versions.sort(key=lambda v: not v["IsLatest"])
    return out


# -- the store ------------------------------------------------------------------------------


class ChangeFeed:
    """Every acknowledged object write and delete, numbered, with the moment the store answered."""

    def __init__(self) -> None:
        self.changes: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def record(self, key: str, version_id: str | None, delete_marker: bool) -> None:
        with self.lock:
            self.changes.append({"seq": len(self.changes) + 1, "t": time.time(), "key": key,
                                 "version_id": version_id, "delete_marker": delete_marker})

    def after(self, seq: int) -> list[dict[str, Any]]:
        with self.lock:
            return self.changes[seq:]


def feed_app(moto_app: Callable, feed: ChangeFeed) -> Callable:
    """WSGI layer around moto: serve the change feed, and record every object version moto acknowledges."""
    prefix = f"/{BUCKET}/"

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path == FEED:
            query = parse_qs(environ.get("QUERY_STRING", ""))
            if "head" in query:
                data = json.dumps({"seq": len(feed.changes)}).encode()
            else:
                data = json.dumps(feed.after(int(query.get("after", ["0"])[0]))).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
            return [data]
        method = environ["REQUEST_METHOD"]
        if method not in ("PUT", "DELETE") or not path.startswith(prefix) or len(path) == len(prefix):
            return moto_app(environ, start_response)
        seen: dict[str, Any] = {}

        def capture(status, headers, exc_info=None):
            seen["status"] = int(status.split()[0])
            seen["headers"] = {k.lower(): v for k, v in headers}
            return start_response(status, headers, exc_info)

        result = moto_app(environ, capture)
        headers = seen.get("headers", {})
        if 200 <= seen.get("status", 500) < 300 and "x-amz-version-id" in headers:
            feed.record(unquote(path[len(prefix):]), headers["x-amz-version-id"],
                        headers.get("x-amz-delete-marker") == "true")
        return result

    return app


def serve_store(port: int, ready_file: str | None) -> int:
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from drillkit.net import serve_until_signalled

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = feed_app(DomainDispatcherApplication(create_backend_app), ChangeFeed())
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    threading.Thread(target=_create_bucket, args=(server, ready_file), name="bucket setup", daemon=True).start()
    return serve_until_signalled(server, None)


def _create_bucket(server, ready_file: str | None) -> None:
    """The store is ready once its buckets exist: only then is the ready file written."""
    from drillkit.net import write_ready_file

    client = s3_client(server.server_address[1])
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    client.create_bucket(Bucket=SITE_BUCKET)
    if ready_file:
        write_ready_file(ready_file, server.server_address[1])


# -- the replicator -------------------------------------------------------------------------


class Replicator(ChangeReplicator):
    """Copies the source's changes to the destination, each `delay` seconds after it was written.

    One thread follows the change feed, so the backlog counts every acknowledged change within
    a poll interval; copies run in parallel across keys and in order within a key (ChangeReplicator).
    A change that cannot be copied (source or destination unreachable) stays pending and is
    retried; the backlog and the age of its oldest change are what an RTC alarm would watch.
    """

    settings = ("delay", "delete_markers", "paused", "disabled")

    def __init__(self, source, destination, feed_url: str, delay: float, delete_markers: bool,
                 poll: float = 0.02, after: int = 0):
        super().__init__(delay, poll)
        self.source, self.destination, self.feed_url = source, destination, feed_url
        self.delete_markers = delete_markers
        self.seq = after
        self.counts.update({"replicated": 0, "delete_markers_replicated": 0, "delete_markers_skipped": 0,
                            "not_replicated": 0})
        self.disabled = False

    def status(self) -> dict[str, Any]:
        status = super().status()
        with self.lock:
            return {**status, "seen": self.seq, "delete_markers": self.delete_markers, "disabled": self.disabled}

    def configure(self, delay: float | None = None, delete_markers: bool | None = None,
                  paused: bool | None = None, disabled: bool | None = None) -> dict[str, Any]:
        """Paused (FIS's bucket-pause-replication) copies nothing; changes keep queueing and are
        copied once the pause ends. Disabled (the replication rule removed or disabled) never
        copies a change made meanwhile, as S3 replicates only objects written while a rule is
        enabled (older ones need S3 Batch Replication); they count as `not_replicated`."""
        with self.lock:
            if disabled is not None:
                self.disabled = bool(disabled)
            if delete_markers is not None:
                self.delete_markers = bool(delete_markers)
        return super().configure(delay, paused)

    def follow(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"{self.feed_url}?after={self.seq}", timeout=2.0) as resp:
                    changes = json.loads(resp.read())
                with self.lock:
                    if self.disabled:
                        self.counts["not_replicated"] += len(changes)
                    else:
                        self.pending.extend(changes)
                    if changes:
                        self.seq = changes[-1]["seq"]
            except Exception as exc:  # the source region may be down: keep what is pending, retry
                self._failed(exc)
            stop.wait(self.poll)

    def deliver(self, change: dict[str, Any]) -> None:
        key = change["key"]
        if change["delete_marker"]:
            if not self.delete_markers:
                return self.count("delete_markers_skipped")
            self.destination.delete_object(Bucket=BUCKET, Key=key)
            return self.count("delete_markers_replicated")
        found = read_object(self.source, key, change["version_id"])
        if found is None:  # that version was deleted outright at the source: nothing to copy
            return
        body, meta = found
        self.destination.put_object(Bucket=BUCKET, Key=key, Body=body,
                                    Metadata={**meta, "replica-of": change["version_id"]})
        self.count("replicated")


def serve_replicator(args: argparse.Namespace) -> int:
    return serve(Replicator(s3_client(args.source_port), s3_client(args.destination_port),
                            f"http://127.0.0.1:{args.source_port}{FEED}", args.delay, args.delete_markers,
                            after=args.after), args)


def replicator_command(source_port: int, destination_port: int, delay: float, delete_markers: bool,
                       after: int = 0) -> list[str]:
    """The arguments that start a replicator (the source port is its replication link's)."""
    return ["replicate", "--source-port", str(source_port), "--destination-port", str(destination_port),
            "--delay", str(delay), "--delete-markers" if delete_markers else "--no-delete-markers",
            "--after", str(after)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drillkit.targets.sandbox.s3_service", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    store = sub.add_parser("store", help="one region's S3 API with a versioned bucket")
    store.add_argument("--port", type=int, default=0)
    add_service_arguments(store)
    rep = sub.add_parser("replicate", help="cross-region replication from one store to another")
    rep.add_argument("--port", type=int, default=0, help="status and configuration API")
    rep.add_argument("--source-port", type=int, required=True, help="the source store (through its link)")
    rep.add_argument("--destination-port", type=int, required=True)
    rep.add_argument("--delay", type=float, default=0.0)
    rep.add_argument("--delete-markers", action=argparse.BooleanOptionalAction, default=True)
    rep.add_argument("--after", type=int, default=0, help="copy only the source's changes after this one")
    add_service_arguments(rep)
    args = parser.parse_args(argv)
    start_service("object store" if args.command == "store" else "object replicator", args, parser)
    if args.command == "store":
        return serve_store(args.port, args.ready_file)
    return serve_replicator(args)


if __name__ == "__main__":
    raise SystemExit(main())
