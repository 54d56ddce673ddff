"""What drillkit's replicators share (the object store's, s3_service; the global table's,
table_service): a queue of the source's changes, each delivered `delay` seconds after its time
`t`, in parallel across keys and in order within a key; a change that cannot be delivered stays
queued, with the key's later ones behind it, and is retried. A small HTTP API reports the
status and takes settings (`delay`, `paused`, and each replicator's own)."""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any


class ChangeReplicator:
    """A subclass follows its source (`follow`, appending changes with `seq`, `t` and `key` to
    `pending` under `lock`) and delivers one change (`deliver`, raising when it cannot)."""

    workers = 8
    batch = 64
    settings: tuple[str, ...] = ("delay", "paused")
    """The keys the configuration API accepts, passed to `configure` by name."""

    def __init__(self, delay: float, poll: float = 0.02):
        self.delay, self.poll = delay, poll
        self.pending: deque[dict[str, Any]] = deque()
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {"errors": 0}
        self.max_latency_s = 0.0
        self.last_error: str | None = None
        self.paused = False

    def follow(self, stop: threading.Event) -> None:
        raise NotImplementedError

    def deliver(self, change: dict[str, Any]) -> None:
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        with self.lock:
            oldest = self.pending[0]["t"] if self.pending else None
            now = time.time()  # the instant the age held, returned with it
            return {"at": now, "backlog": len(self.pending),
                    "oldest_pending_s": None if oldest is None else now - oldest,
                    "delay": self.delay, "paused": self.paused, "max_latency_s": self.max_latency_s,
                    "last_error": self.last_error, **self.counts}

    def configure(self, delay: float | None = None, paused: bool | None = None) -> dict[str, Any]:
        """Paused delivers nothing; changes keep queueing and are delivered once the pause ends."""
        with self.lock:
            if delay is not None:
                self.delay = float(delay)
            if paused is not None:
                self.paused = bool(paused)
        return self.status()

    def run(self, stop: threading.Event) -> None:
        threading.Thread(target=self.follow, args=(stop,), name="change reader", daemon=True).start()
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
                now = time.time()
                with self.lock:
                    self.pending = deque(c for c in self.pending if c["seq"] not in done)
                    self.max_latency_s = max([self.max_latency_s] + [now - c["t"] for c in due if c["seq"] in done])
                if len(done) < len(due):   # the destination (or source) is down or cut off: retry after a pause
                    stop.wait(self.poll)

    def _due(self) -> list[dict[str, Any]]:
        """The changes whose delay has passed, oldest first, at most `batch` of them."""
        with self.lock:
            if self.paused:
                return []
            now, out = time.time(), []
            for change in self.pending:
                if change["t"] + self.delay > now or len(out) >= self.batch:
                    break
                out.append(change)
            return out

    def _deliver_in_order(self, changes: list[dict[str, Any]]) -> list[int]:
        """One key's changes, in order; the first that cannot be delivered stops the rest."""
        done = []
        for change in changes:
            try:
                self.deliver(change)
            except Exception as exc:  # noqa: BLE001 - botocore's errors: kept, retried
                self._failed(exc)
                break
            done.append(change["seq"])
        return done

    def count(self, name: str) -> None:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + 1

    def _failed(self, exc: Exception) -> None:
        with self.lock:
            self.counts["errors"] += 1
            self.last_error = (str(exc).splitlines() or [type(exc).__name__])[0][:200]


class ReplicatorHandler(BaseHTTPRequestHandler):
    """GET: the status; POST {setting: value}: configure, then the status."""

    protocol_version = "HTTP/1.1"
    server: Any

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._json(200, self.server.replicator.status())

    def do_POST(self) -> None:
        replicator = self.server.replicator
        try:
            doc = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            status = replicator.configure(**{k: doc.get(k) for k in replicator.settings})
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


def serve(replicator: ChangeReplicator, args: argparse.Namespace) -> int:
    """Run the replicator and its API on `args.port` until signalled."""
    from drillkit.net import LoopbackServer, serve_until_signalled

    server = LoopbackServer(("127.0.0.1", args.port), ReplicatorHandler)
    server.replicator = replicator
    stop = threading.Event()
    threading.Thread(target=replicator.run, args=(stop,), name="replication loop", daemon=True).start()
    try:
        return serve_until_signalled(server, args.ready_file)
    finally:
        stop.set()
