"""A fault-injecting TCP proxy: one process per network link of the sandbox.

Stands in for toxiproxy and tc netem, neither of which this machine has. Each
client→region and region→region link (streaming replication included) runs
through one of these, so a drill can add latency, throttle, partition or reset
a link while real traffic crosses it, and heal it again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import struct
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import uvloop

from drillkit.errors import FaultError
from drillkit.evidence import LINK_FAULT, LINK_RETARGET
from drillkit.net import add_service_arguments, record_event, start_service, write_ready_file

FAULT_PARAMS: dict[str, dict[str, bool]] = {
    "latency": {"ms": True, "jitter_ms": False},
    "bandwidth": {"bytes_per_s": True},
    "blackhole": {},
    "reset": {},
}
CHUNK = 65536
IN_FLIGHT_LIMIT = 16 * 2**20


def parse_fault(body: Any) -> tuple[str, dict[str, float]]:
    """Validate a fault request so a typo fails the drill step instead of injecting nothing."""
    if not isinstance(body, dict) or body.get("kind") not in FAULT_PARAMS:
        raise ValueError(f"body must be an object with kind one of {sorted(FAULT_PARAMS)}")
    kind = body["kind"]
    allowed = FAULT_PARAMS[kind]
    params = {k: v for k, v in body.items() if k != "kind"}
    unknown = set(params) - set(allowed)
    if unknown:
        raise ValueError(f"{kind}: unknown parameter(s) {sorted(unknown)}")
    for name, required in allowed.items():
        if required and name not in params:
            raise ValueError(f"{kind}: missing parameter {name!r}")
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{kind}: {name} must be a non-negative number")
    if kind == "bandwidth" and params["bytes_per_s"] <= 0:
        raise ValueError("bandwidth: bytes_per_s must be positive")
    return kind, params


def reset_writer(writer: asyncio.StreamWriter | None) -> None:
    """Close with RST, not FIN: the peer must see a reset, as after a crashed host or dropped NAT entry."""
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class Lane:
    """One direction's bytes in flight, bounded like a socket buffer so a slow or cut link
    pushes back on its sender through TCP instead of growing the proxy's memory.

    While nothing is held in it and the link carries no fault that delays bytes, a chunk goes
    straight to its writer (`send_now`): the queue and the paced sender are for faults, and a
    healthy link should cost a drill's load one write per chunk."""

    def __init__(self, direction: str, writer: asyncio.StreamWriter | None = None) -> None:
        self.direction = direction
        self.writer = writer
        self.queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.held = 0
        self.pending = 0
        self.room = asyncio.Event()
        self.room.set()

    async def put(self, t_read: float, data: bytes) -> None:
        self.queue.put_nowait((t_read, data))
        self.pending += 1
        self.held += len(data)
        if self.held > IN_FLIGHT_LIMIT:
            self.room.clear()
            await self.room.wait()

    async def get(self) -> tuple[float, bytes]:
        t_read, data = await self.queue.get()
        self.held -= len(data)
        if self.held <= IN_FLIGHT_LIMIT:
            self.room.set()
        return t_read, data

    def sent(self) -> None:
        """The sender wrote the chunk it took."""
        self.pending -= 1

    def send_now(self, link: Link, data: bytes) -> bool:
        """Write `data` at once when that keeps the order and no fault is to delay it."""
        if self.pending or self.writer is None or not data or not link.undisturbed():
            return False
        self.writer.write(data)
        link.bytes[self.direction] += len(data)
        return True


class Pipe:
    """One proxied connection: per direction a reader that keeps reading into a Lane and a paced sender.

    Splitting read from send is what lets latency delay bytes without slowing the
    read side, and a blackhole hold bytes without dropping them.
    """

    def __init__(self, link: Link, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter):
        self.link = link
        self.client_reader = client_reader
        self.client_writer = client_writer
        self.upstream_writer: asyncio.StreamWriter | None = None
        self.upstream: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.get_running_loop().create_future()
        )
        self.tasks: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        up, down = Lane("up"), Lane("down", self.client_writer)
        self.tasks = [
            asyncio.create_task(self._pump(self.client_reader, up, abandon_when_cut=True)),
            asyncio.create_task(self._open_upstream(up, down)),
            asyncio.create_task(self._send(up, None, "up")),
            asyncio.create_task(self._send(down, self.client_writer, "down")),
        ]
        try:
            done, _ = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_EXCEPTION)
            if any(not t.cancelled() and t.exception() for t in done):
                self.kill()
            else:
                for w in (self.client_writer, self.upstream_writer):
                    if w is not None:
                        w.close()
        finally:
            self.kill_tasks()

    async def _open_upstream(self, up: Lane, down: Lane) -> None:
        await self.link.flowing.wait()
        target = self.link.pick_upstream()
        if target is None:  # no instance behind the link: refused, as a load balancer with no targets
            self.kill()
            return
        host, port = target
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=3.0)
        except (OSError, TimeoutError):
            self.kill()
            return
        self.upstream_writer = up.writer = writer
        self.upstream.set_result((reader, writer))
        await self._pump(reader, down)

    async def _pump(self, reader: asyncio.StreamReader, lane: Lane, abandon_when_cut: bool = False) -> None:
        """Read into the lane. A client that hangs up while the link is cut has given up on its
        request: its held bytes die with the connection instead of reaching the server after the
        heal (a server must not be flooded by requests nobody waits for any more)."""
        loop = asyncio.get_running_loop()
        while True:
            data = await reader.read(CHUNK)
            if not data and abandon_when_cut and not self.link.flowing.is_set():
                self.kill()
                return
            if lane.send_now(self.link, data):
                await lane.writer.drain()
                continue
            await lane.put(loop.time(), data)
            if not data:
                return

    async def _send(self, lane: Lane, writer: asyncio.StreamWriter | None, direction: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t_read, data = await lane.get()
            latency = self.link.faults.get("latency")
            if latency:
                jitter = latency.get("jitter_ms", 0)
                delay = max(0.0, latency["ms"] + random.uniform(-jitter, jitter)) / 1000
                wait = t_read + delay - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            await self.link.flowing.wait()
            if writer is None:
                writer = (await self.upstream)[1]
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            await self.link.forward(data, writer, direction)
            lane.sent()

    def kill(self) -> None:
        """Reset both sides of the connection at once, as a link reset does."""
        reset_writer(self.client_writer)
        reset_writer(self.upstream_writer)
        self.kill_tasks()

    def kill_tasks(self) -> None:
        current = asyncio.current_task()
        for t in self.tasks:
            if t is not current:
                t.cancel()


class Link:
    """The state of one link: its upstreams, active faults, open connections and byte counts.

    A link to an app tier of several instances balances new connections over them round-robin, as
    a load balancer does; one with no upstream (an app tier scaled to zero) refuses them."""

    def __init__(self, name: str, upstreams: list[tuple[str, int]], events: str | None = None):
        self.name = name
        self.upstreams = list(upstreams)
        self._turn = 0
        self.events = events
        self.faults: dict[str, dict[str, float]] = {}
        self.pipes: set[Pipe] = set()
        self.bytes = {"up": 0, "down": 0}
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.next_slot = {"up": 0.0, "down": 0.0}

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one client; cancellation ends here because Python 3.11's stream callback
        logs a traceback for a cancelled handler task (every open connection at shutdown)."""
        if "reset" in self.faults:
            reset_writer(writer)
            return
        pipe = Pipe(self, reader, writer)
        self.pipes.add(pipe)
        try:
            await pipe.run()
        except asyncio.CancelledError:
            pipe.kill()
        finally:
            self.pipes.discard(pipe)

    def undisturbed(self) -> bool:
        """Bytes cross at once: the link flows and no fault paces or delays them."""
        return self.flowing.is_set() and "latency" not in self.faults and "bandwidth" not in self.faults

    async def forward(self, data: bytes, writer: asyncio.StreamWriter, direction: str) -> None:
        """Write one chunk; under a bandwidth fault, in slices paced link-wide per direction."""
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            bandwidth = self.faults.get("bandwidth")
            if bandwidth is None:
                piece, view = view, view[len(view):]
            else:
                rate = bandwidth["bytes_per_s"]
                piece, view = view[: max(1, int(rate // 20))], view[max(1, int(rate // 20)):]
                now = loop.time()
                slot = max(now, self.next_slot[direction])
                self.next_slot[direction] = slot + len(piece) / rate
                if slot > now:
                    await asyncio.sleep(slot - now)
                await self.flowing.wait()
            writer.write(piece)
            self.bytes[direction] += len(piece)
            await writer.drain()

    def inject(self, kind: str, params: dict[str, float]) -> float:
        """Apply the fault, then record it; returns the moment it took effect."""
        self.faults[kind] = params
        if kind == "blackhole":
            self.flowing.clear()
        elif kind == "reset":
            for pipe in list(self.pipes):
                pipe.kill()
        applied = time.time()
        self._record(kind, params, "inject", t=applied)
        return applied

    def clear(self, kind: str | None = None) -> float:
        """Heal, then record it; returns the moment the link healed."""
        cleared = {k: self.faults.pop(k) for k in ([kind] if kind else list(self.faults)) if k in self.faults}
        if "blackhole" not in self.faults:
            self.flowing.set()
        healed = time.time()
        for k, params in cleared.items():
            self._record(k, params, "clear", t=healed)
        return healed

    def pick_upstream(self) -> tuple[str, int] | None:
        if not self.upstreams:
            return None
        self._turn = (self._turn + 1) % len(self.upstreams)
        return self.upstreams[self._turn]

    def retarget(self, upstreams: list[tuple[str, int]]) -> None:
        self.upstreams = list(upstreams)
        shown = [f"{h}:{p}" for h, p in self.upstreams]
        self._event(LINK_RETARGET, upstream=shown[0] if shown else "", upstreams=shown)

    def _record(self, kind: str, params: dict[str, float], action: str, t: float) -> None:
        self._event(LINK_FAULT, t=t, fault={"kind": kind, **params}, action=action)

    def _event(self, kind: str, **fields: Any) -> None:
        if self.events:
            record_event(self.events, kind, link=self.name, **fields)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "upstream": "%s:%d" % self.upstreams[0] if self.upstreams else "",
            "upstreams": ["%s:%d" % u for u in self.upstreams],
            "faults": {k: dict(v) for k, v in self.faults.items()},
            "connections": len(self.pipes),
            "bytes_up": self.bytes["up"],
            "bytes_down": self.bytes["down"],
        }

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Route one control request; every answer but an error is the link's status."""
        path = path.rstrip("/")
        if method == "GET" and path == "/status":
            return 200, self.status()
        if method == "POST" and path == "/faults":
            applied = self.inject(*parse_fault(json.loads(body or b"null")))
            return 200, {**self.status(), "at": applied}
        if method == "DELETE" and path == "/faults":
            healed = self.clear()
            return 200, {**self.status(), "at": healed}
        if method == "DELETE" and path.startswith("/faults/"):
            kind = path.removeprefix("/faults/")
            if kind not in FAULT_PARAMS:
                raise ValueError(f"unknown fault kind {kind!r}")
            healed = self.clear(kind)
            return 200, {**self.status(), "at": healed}
        if method == "PUT" and path == "/upstream":
            target = json.loads(body or b"null")
            if not isinstance(target, dict):
                target = {}
            targets = target.get("upstreams", [target] if "host" in target else None)
            if not isinstance(targets, list) or not all(
                    isinstance(t, dict) and isinstance(t.get("host"), str) and isinstance(t.get("port"), int)
                    and not isinstance(t.get("port"), bool) and 0 < t["port"] < 65536 for t in targets):
                raise ValueError('body must be {"host": str, "port": int} or {"upstreams": [{"host", "port"}, ...]}')
            self.retarget([(t["host"], t["port"]) for t in targets])
            return 200, self.status()
        return 404, {"error": f"no route {method} {path}"}

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A minimal HTTP/1.1 endpoint: one request per connection, JSON in and out."""
        try:
            method, path, _ = (await reader.readline()).decode("latin-1").split(" ", 2)
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                key, _, value = line.decode("latin-1").partition(":")
                headers[key.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length") or 0))
            code, payload = self.handle(method, path, body)
        except (ValueError, asyncio.IncompleteReadError) as exc:
            code, payload = 400, {"error": str(exc)}
        data = json.dumps(payload).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[code]
        writer.write(
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data
        )
        try:
            await writer.drain()
        finally:
            writer.close()


def parse_hostport(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


async def serve(args: argparse.Namespace) -> None:
    link = Link(args.name, args.upstream, args.events)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    data_server = await asyncio.start_server(link.accept, "127.0.0.1", args.listen_port)
    control_server = await asyncio.start_server(link.control, "127.0.0.1", 0)
    write_ready_file(args.ready_file, data_server.sockets[0].getsockname()[1], name=args.name,
                     control_port=control_server.sockets[0].getsockname()[1],
                     upstream=",".join("%s:%d" % u for u in args.upstream))
    await stop.wait()
    data_server.close()
    control_server.close()
    for pipe in list(link.pipes):
        pipe.kill()


def command(name: str, upstream: int | list[int], events: str | os.PathLike[str]) -> list[str]:
    """The arguments that start link `name` on a port of its choosing, to 127.0.0.1:`upstream`
    (a port, or the ports of an app tier's instances; none: it refuses connections until given one)."""
    ports = [upstream] if isinstance(upstream, int) else list(upstream)
    return ["--name", name, "--listen-port", "0", *[a for p in ports for a in ("--upstream", f"127.0.0.1:{p}")],
            "--events", str(events)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drillkit.targets.sandbox.linkproxy", description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--listen-port", type=int, default=0)
    parser.add_argument("--upstream", type=parse_hostport, action="append", default=[],
                        help="HOST:PORT; repeat to balance over several, omit to refuse until retargeted")
    parser.add_argument("--events", help="the drill's events.jsonl (absolute path)")
    add_service_arguments(parser)
    args = parser.parse_args(argv)
    if not args.ready_file:
        parser.error("--ready-file is required")
    start_service(f"link {args.name}", args, parser)
    uvloop.run(serve(args))
    return 0


class LinkControl:
    """Drives one link proxy from the harness or a Chaos Toolkit action."""

    def __init__(self, control_port: int, host: str = "127.0.0.1", timeout: float = 2.0):
        self.base = f"http://{host}:{control_port}"
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("error", "")
            except ValueError:
                detail = ""
            raise FaultError(f"link proxy {self.base} {method} {path}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise FaultError(f"link proxy {self.base} {method} {path}: {exc}") from exc

    def inject(self, kind: str, **params: float) -> dict[str, Any]:
        return self._call("POST", "/faults", {"kind": kind, **params})

    def clear(self, kind: str | None = None) -> dict[str, Any]:
        return self._call("DELETE", f"/faults/{kind}" if kind else "/faults")

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

    def retarget(self, host: str, port: int) -> dict[str, Any]:
        return self._call("PUT", "/upstream", {"host": host, "port": port})

    def balance(self, ports: list[int], host: str = "127.0.0.1") -> dict[str, Any]:
        """Balance new connections over these upstreams (none: refuse them); open ones stay."""
        return self._call("PUT", "/upstream", {"upstreams": [{"host": host, "port": p} for p in ports]})


if __name__ == "__main__":
    sys.exit(main())
