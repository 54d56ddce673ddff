"""Loopback networking shared by the stages below the harness: free ports, small JSON calls, and
the start and stop every service drillkit runs (the sandbox's app, router, links, object stores
and replicators, the emulated AWS account) has in common. It sits below `load/` and `targets/`,
which both use it.

A service that can no longer do its job (a thread of it died, it cannot write its events) does
not limp on: `fail` writes why to its failure file and ends the process at once, and the drill's
watchdog, which looks for that file, aborts the drill with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer
from typing import Any, NoReturn

from drillkit.errors import one_line
from drillkit.evidence import append_event

FAILED_EXIT = 70
"""The exit status of a service that failed on its own (EX_SOFTWARE), never of one that was stopped."""

_service: dict[str, str | None] = {"name": None, "failure_file": None}


def local_client(service: str, port: int, timeout: float = 2.0, attempts: int = 2, **config: Any):
    """A boto3 client for one of the sandbox's emulated AWS APIs on 127.0.0.1:`port` (moto
    accepts any credentials); `attempts` in all, `config` for botocore's Config."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        service, endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id="drillkit", aws_secret_access_key="drillkit",
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": attempts},
                      max_pool_connections=32, **config))


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


def _write_json(path: str, doc: dict[str, Any]) -> None:
    """Atomic, so the parent never reads half a file."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)
    os.replace(tmp, path)


def write_ready_file(path: str, port: int, **info: Any) -> None:
    _write_json(path, {"port": port, "pid": os.getpid(), **info})


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every service takes from `processes.spawn_service`."""
    parser.add_argument("--ready-file", help="written once the service serves: its port(s) and pid")
    parser.add_argument("--failure-file", help="written when the service fails on its own, just before it exits")


def start_service(name: str, args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Make every way this service can break loud: an exception that ends any of its threads (a
    health checker, a replication loop) or its main thread ends the process through `fail`.

    An events file must be an absolute path the service can append to: the service runs with
    `/` as its working directory, and an event it cannot record is evidence lost."""
    _service.update(name=name, failure_file=getattr(args, "failure_file", None))
    events = getattr(args, "events", None)
    if events:
        if not os.path.isabs(events):
            parser.error(f"--events must be an absolute path, got {events!r}")
        try:
            os.close(os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        except OSError as exc:
            parser.error(f"--events {events}: {exc.strerror}")

    def thread_died(hook: threading.ExceptHookArgs) -> None:
        if hook.exc_type is SystemExit:
            return
        where = hook.thread.name if hook.thread is not None else "a thread"
        fail(f"{where} died: {_described(hook.exc_value, hook.exc_type)}", hook.exc_traceback)

    def main_died(exc_type, exc, tb) -> None:
        fail(f"main thread died: {_described(exc, exc_type)}", tb)

    threading.excepthook = thread_died
    sys.excepthook = main_died


def _described(exc: BaseException | None, exc_type: type) -> str:
    return one_line(exc) if exc is not None else exc_type.__name__


def fail(reason: str, tb: Any = None) -> NoReturn:
    """This service cannot do its job: say why in its failure file and log, and exit at once."""
    name = _service["name"] or os.path.basename(sys.argv[0])
    if tb is not None:
        traceback.print_tb(tb, file=sys.stderr)
    print(f"{name} failed: {reason}", file=sys.stderr, flush=True)
    if _service["failure_file"]:
        try:
            _write_json(_service["failure_file"], {"service": name, "reason": reason, "t": time.time(),
                                                   "pid": os.getpid()})
        except OSError as exc:
            print(f"{name}: cannot write its failure file: {exc}", file=sys.stderr, flush=True)
    os._exit(FAILED_EXIT)


def record_event(path: str | os.PathLike[str], kind: str, t: float | None = None, **fields: Any) -> dict[str, Any]:
    """A service's event: one it cannot record fails the service (`fail`), never passes in silence."""
    try:
        return append_event(path, kind, t=t, **fields)
    except OSError as exc:
        fail(f"cannot record {kind} in {path}: {exc.strerror or exc}")


def serve_web_until_signalled(app: Any, port: int, ready_file: str | None) -> int:
    """Serve an aiohttp application on 127.0.0.1:`port` on uvloop until SIGTERM/SIGINT.

    The data path of the sandbox (router, app tier) is served this way: one event loop per
    process, so a process answers thousands of requests a second on one core, where a thread
    per connection spends its time switching. Idle keep-alive connections stay open for an hour,
    as a threaded server's did, so a client never meets a connection the server closed in between
    two of its requests."""
    import asyncio

    import uvloop
    from aiohttp import web

    async def serve() -> None:
        runner = web.AppRunner(app, handle_signals=False, access_log=None, keepalive_timeout=3600,
                               shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, backlog=256)
        await site.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if ready_file:
            write_ready_file(ready_file, runner.addresses[0][1])
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    uvloop.run(serve())
    return 0


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
