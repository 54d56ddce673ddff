"""Loopback networking shared by the sandbox: free ports, small JSON calls, and the start and stop
every sandbox service (app, router, object store, replicator) has in common."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, method: str = "GET", body: dict | None = None, timeout: float = 2.0) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}


class LoopbackServer(ThreadingHTTPServer):
    """Threaded HTTP/1.1 server on 127.0.0.1 with a backlog sized for a load test."""

    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that resets mid-response is a drill fault at work, not a bug worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def write_ready_file(path: str, port: int) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"port": port, "pid": os.getpid()}, fh)
    os.replace(tmp, path)


def serve_until_signalled(server: ThreadingHTTPServer, ready_file: str | None) -> int:
    """Serve on a thread so SIGTERM/SIGINT can stop the loop from the main thread at once."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    if ready_file:
        write_ready_file(ready_file, server.server_address[1])
    while not stop.wait(1.0):
        pass
    server.shutdown()
    server.server_close()
    return 0
