"""The sandbox's global endpoint: a reverse proxy with the failover semantics of real global endpoints.

Policies model the systems drillkit drills: ``dns`` is a Route 53 failover record with a
health check (interval, failure threshold, and a TTL during which clients keep the old
answer), ``origin-group`` is a CloudFront origin group (per request, GET/HEAD only, on
500/502/503/504 or a connection failure), ``manual`` moves traffic only when a runbook
says so (like rewriting config.json), ``latency`` sends each client to its home region (the
``X-Home-Region`` header: clients near each region, as Route 53 latency records with health
checks do) and the clients of a region its health check calls unhealthy to a healthy one.
Under every policy a runbook may also send a share of the reads (GET/HEAD) to another region,
as a failback moves read traffic back in steps before the writes follow. Run as ``python -m drillkit.targets.sandbox.router``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import random
import threading
import time
from typing import Any, NamedTuple

import httptools
from aiohttp import web
from multidict import CIMultiDict

from drillkit.evidence import HEALTH_CHANGE, HEALTH_INVERTED, ROUTING_PUBLISHED, ROUTING_SHIFT, ROUTING_SWITCH
from drillkit.targets.capabilities import RoutingStatus
from drillkit.net import add_service_arguments, record_event, serve_web_until_signalled, start_service

POLICIES = ("dns", "origin-group", "manual", "latency")
HOME_HEADER = "X-Home-Region"
CONTROL = "/_drillkit/router"
FAILOVER_STATUSES = frozenset({500, 502, 503, 504})
READ_METHODS = FAILOVER_METHODS = frozenset({"GET", "HEAD"})
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailers", "transfer-encoding", "upgrade"})



def routing_status(body: dict[str, Any]) -> RoutingStatus:
    """The control API's status document (Routing.status) as the harness reads it."""
    return RoutingStatus(policy=body["policy"], answer=body["answer"], read_shares=dict(body.get("read_shares", {})),
                         switches=tuple(body.get("switches", ())))


class Routing:
    """Who answers: health per region, the published answer and the one clients actually use.

    For ``dns`` the effective answer trails the published one by the TTL, because resolvers
    keep the cached record that long; the other policies switch at once.
    """

    def __init__(self, regions: list[str], primary: str, policy: str, threshold: int,
                 ttl: float, events: str | None):
        self.regions, self.primary, self.policy = regions, primary, policy
        self.threshold, self.ttl, self.events = threshold, ttl, events
        self.cond = threading.Condition()
        self.health = {r: True for r in regions}
        self.inverted = {r: False for r in regions}
        self.streak = {r: 0 for r in regions}
        self.published = self.effective = primary
        self.pending: tuple[float, str, str] | None = None
        self.switches: list[dict[str, Any]] = []
        self.read_shares: dict[str, float] = {}

    def _event(self, kind: str, t: float | None = None, **fields: Any) -> dict[str, Any]:
        if self.events:
            return record_event(self.events, kind, t=t, **fields)
        return {"t": time.time() if t is None else t, "kind": kind, **fields}

    def answer(self) -> str:
        with self.cond:
            self._apply_due()
            return self.effective

    def secondary(self, region: str) -> str | None:
        return next((r for r in self.regions if r != region), None)

    def observe(self, region: str, ok: bool) -> None:
        """Count consecutive results against the current state; flip after `threshold` of them.
        An inverted check (Route 53's `Inverted`) counts a passing probe as a failure."""
        with self.cond:
            ok = ok != self.inverted[region]
            if ok == self.health[region]:
                self.streak[region] = 0
                return
            self.streak[region] += 1
            if self.streak[region] < self.threshold:
                return
            self.streak[region] = 0
            self.health[region] = ok
            self._event(HEALTH_CHANGE, region=region, healthy=ok)
            if self.policy == "dns":
                state = "healthy" if ok else "unhealthy"
                self._publish(self._desired(), f"health-check: {region} {state}")

    def _desired(self) -> str:
        if self.health[self.primary]:
            return self.primary
        return next((r for r in self.regions if r != self.primary and self.health[r]), self.published)

    def switch(self, to: str, reason: str) -> None:
        """A runbook action: a record change under ``dns`` (TTL applies), immediate otherwise.

        The operator rewrites the failover record, so `to` becomes its primary: a rebuilt old
        region turning healthy again must not pull traffic back before its switchover.
        """
        with self.cond:
            self.primary = to
            self._publish(to, reason)

    def invert(self, region: str, inverted: bool) -> None:
        """Route 53's health-check inversion: the check reports the opposite of what it sees, so
        the health (and, under ``dns``, the answer) follows after `threshold` checks."""
        with self.cond:
            if self.inverted[region] == inverted:
                return
            self.inverted[region] = inverted
            self.streak[region] = 0
            self._event(HEALTH_INVERTED, region=region, inverted=inverted)

    def shift_reads(self, region: str, percent: float) -> None:
        """Send `percent` % of the reads to `region`; writes keep following the answer. A repeated
        step (a rollback after a completed failback) records nothing."""
        with self.cond:
            if self.read_shares.get(region, 0.0) == percent:
                return
            others = sum(p for r, p in self.read_shares.items() if r != region)
            if others + percent > 100:
                raise ValueError(f"{region} at {percent:g}% and other regions at {others:g}% exceed 100%")
            if percent:
                self.read_shares[region] = percent
            else:
                self.read_shares.pop(region, None)
            self._event(ROUTING_SHIFT, region=region, percent=percent, policy=self.policy)

    def home_target(self, home: str | None) -> str:
        """latency: the client's home region while healthy, else a healthy one (else home still)."""
        with self.cond:
            if home not in self.health:
                return self.effective
            if self.health[home]:
                return home
            return next((r for r in self.regions if self.health[r]), home)

    def read_target(self) -> str:
        """The region for one read: a shifted share by weighted draw, else the answer."""
        with self.cond:
            self._apply_due()
            draw = random.uniform(0.0, 100.0)
            for region, percent in self.read_shares.items():
                if draw < percent:
                    return region
                draw -= percent
            return self.effective

    def _publish(self, to: str, reason: str) -> None:
        if to == self.published:
            return
        if self.policy != "dns":
            self.published = to
            self._switch(to, reason)
            return
        self._event(ROUTING_PUBLISHED, **{"from": self.published, "to": to,
                                             "policy": self.policy, "reason": reason})
        self.published = to
        self.pending = (time.time() + self.ttl, to, reason)
        self._apply_due()
        self.cond.notify_all()

    def _apply_due(self) -> None:
        if self.pending and time.time() >= self.pending[0]:
            due, to, reason = self.pending
            self.pending = None
            self._switch(to, reason, t=due)

    def _switch(self, to: str, reason: str, t: float | None = None) -> None:
        if to == self.effective:
            return
        record = self._event(ROUTING_SWITCH, t=t, **{"from": self.effective, "to": to,
                                                       "policy": self.policy, "reason": reason})
        self.effective = to
        self.switches.append(record)

    def run_clock(self, stop: threading.Event) -> None:
        """Apply a pending DNS switch on time even when no request arrives to notice it."""
        with self.cond:
            while not stop.is_set():
                timeout = 0.2 if self.pending is None else max(0.0, self.pending[0] - time.time())
                self.cond.wait(timeout)
                self._apply_due()

    def status(self) -> dict[str, Any]:
        with self.cond:
            self._apply_due()
            return {"policy": self.policy, "answer": self.effective, "published": self.published,
                    "primary": self.primary, "health": dict(self.health),
                    "read_shares": dict(self.read_shares), "switches": list(self.switches)}


def probe_health(addr: tuple[str, int], timeout: float) -> bool:
    """One Route 53-style check: a fresh connection, any 2xx/3xx within the timeout."""
    conn = http.client.HTTPConnection(*addr, timeout=timeout)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        resp.read()
        return 200 <= resp.status < 400
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def run_health_checker(routing: Routing, region: str, addr: tuple[str, int], interval: float,
                       stop: threading.Event) -> None:
    next_t = time.monotonic()
    while not stop.is_set():
        routing.observe(region, probe_health(addr, interval))
        next_t = max(next_t + interval, time.monotonic())
        stop.wait(next_t - time.monotonic())


class Upstream(NamedTuple):
    """A response to relay: the region's own, or the router's when the region could not answer."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    error: str | None = None
    keep_alive: bool = True


def _failure(status: int, error: str, detail: str) -> Upstream:
    return Upstream(status, [("X-Router-Error", error)], json.dumps({"error": f"{error}: {detail}"}).encode(), error)


class _Reply:
    """httptools' callbacks for one response of a region (its parser is llhttp, Node's)."""

    __slots__ = ("body", "complete", "head_only", "headers", "keep_alive", "parser", "status")

    def __init__(self, head_only: bool):
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.complete = self.keep_alive = False
        self.head_only = head_only
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.head_only:  # a HEAD answer announces a body it does not send: the parser would wait for it
            self.complete = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # the parser forgets it for the next message


CLOSED_EARLY = "the region closed the connection before its response was complete"


class RegionConnection(asyncio.Protocol):
    """One kept-alive connection to a region, one exchange at a time: the response's bytes go
    straight from the socket into its parser (an asyncio protocol, without a stream's buffers)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reply: _Reply | None = None
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reply = self.reply
        if reply is None or reply.complete:  # the region spoke out of turn: the connection is not reused
            self._end(EOFError("the region spoke out of turn"))
            return
        try:
            reply.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._end(exc)
            return
        if reply.complete:
            self._settle(None)

    def eof_received(self) -> bool:
        self._end(EOFError(CLOSED_EARLY))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc or EOFError(CLOSED_EARLY))

    def _settle(self, exc: BaseException | None) -> None:
        """End the exchange in flight, if any: answered (no `exc`) or failed."""
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)

    def _end(self, exc: BaseException) -> None:
        self.close()
        self._settle(exc)

    def open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def send(self, request: bytes, head_only: bool) -> asyncio.Future[None]:
        """Put the request on the wire; the future is done when its response is complete."""
        self.reply = _Reply(head_only)
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def response(self) -> Upstream:
        reply = self.reply
        kept = [(k, v) for k, v in reply.headers if k.lower() not in HOP_BY_HOP]
        # the connection of a HEAD is not reused: its parser still waits for the announced body
        return Upstream(reply.status, kept, b"".join(reply.body), keep_alive=reply.keep_alive)


INSTANCE_HEADER = "X-Instance"
"""The header in which a sandbox app instance names itself (drillkit.targets.sandbox.app)."""
DISCOVER_EVERY = 0.2
"""How often a region's pool opens a connection for a request even when one is idle: the link
deals new connections to the region's instances in turn, so an instance added by a scale-up is
reached within a few of these, as a load balancer registers a new target."""
FORGET_AFTER = 5.0
"""An instance that has not answered for this long (stopped, scaled away) is no longer given turns."""
MAX_IDLE = 16
"""Idle connections kept to one instance; more are closed when their exchange ends."""


class RegionPool:
    """One region's kept-alive connections, grouped by the app instance each reached (its
    ``X-Instance`` answer; one group for a region that names none)."""

    def __init__(self) -> None:
        self.idle: dict[str | None, list[RegionConnection]] = {}
        self.seen: dict[str | None, float] = {}
        self.turn = 0
        self.discovered = 0.0

    def take(self, now: float) -> RegionConnection | None:
        """An idle connection to the next instance in turn; none (connect anew) when it has no
        idle one, or when it is time to look for instances the pool has not reached."""
        if now - self.discovered >= DISCOVER_EVERY:
            self.discovered = now
            return None
        live = [i for i, t in self.seen.items() if now - t < FORGET_AFTER]
        if not live:
            return None
        self.turn = (self.turn + 1) % len(live)
        conns = self.idle.get(live[self.turn], [])
        while conns:
            conn = conns.pop()
            if conn.open():
                return conn
            conn.close()
        return None

    def keep(self, conn: RegionConnection, instance: str | None, now: float) -> None:
        self.seen[instance] = now
        conns = self.idle.setdefault(instance, [])
        if len(conns) < MAX_IDLE:
            conns.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()


class Relay:
    """The router's connections to the regions, and the one place that decides what a failed
    exchange means.

    Each region's load balancer balances requests, not connections, as the application load
    balancers of the seed systems do: every request goes to the next of the region's instances
    in turn (round robin), over a kept-alive connection to that instance, whichever client sent
    it. So an instance added by a scale-up takes its share of the requests at once, and a busy
    connection never drags its client's load to one instance. The router reaches each instance
    through the region's link (so the link's faults apply), which deals new connections to the
    instances in turn; the pool learns which instance a connection reached from its answer.

    The client is drillkit's own (not aiohttp's) because the router must know how far a request got:
    a request that never left may be sent again, one that left may not (aiohttp's client retries an
    idempotent request on a dropped keep-alive connection, which could apply a PUT twice)."""

    def __init__(self, regions: dict[str, tuple[str, int]], timeout: float):
        self.regions, self.timeout = regions, timeout
        self.pools: dict[str, RegionPool] = {r: RegionPool() for r in regions}

    async def send(self, region: str, method: str, target: str, headers: list[tuple[str, str]],
                   body: bytes) -> Upstream:
        """Forward once; connect once more only when the request never left (the connection could
        not be made, or was found closed before the request was written)."""
        lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            conn = self.pools[region].take(time.monotonic())
            try:
                if conn is None:
                    async with asyncio.timeout(self.timeout):
                        _, conn = await loop.create_connection(RegionConnection, *self.regions[region])
            except TimeoutError as exc:
                return _failure(504, "timeout", str(exc) or "connect timed out")
            except OSError as exc:
                if attempt == 1:
                    continue
                kind = "reset" if isinstance(exc, ConnectionResetError) else "connect"
                return _failure(502, kind, repr(exc))
            if not conn.open():   # closed by the region between connect and now: the request never left
                conn.close()
                if attempt == 1:
                    continue
                return _failure(502, "reset", "the region closed the connection")
            try:
                async with asyncio.timeout(self.timeout):
                    await conn.send(request, method == "HEAD")
            except TimeoutError as exc:
                conn.close()
                return _failure(504, "timeout", str(exc) or "response timed out")
            except (OSError, EOFError, httptools.HttpParserError) as exc:
                conn.close()
                return _failure(502, "reset", repr(exc))
            up = conn.response()
            if up.keep_alive:
                self.pools[region].keep(conn, _header(up.headers, INSTANCE_HEADER), time.monotonic())
            else:
                conn.close()
            return up
        raise AssertionError("unreachable")

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    name = name.lower()
    return next((v for k, v in headers if k.lower() == name), None)


class Router:
    """The router's HTTP side: every request is relayed to the region its routing picks, except
    the control API under ``/_drillkit/router``."""

    def __init__(self, routing: Routing, relay: Relay):
        self.routing, self.relay = routing, relay

    def application(self) -> web.Application:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self.handle)

        async def close_relay(_: web.Application) -> None:
            self.relay.close()

        app.on_cleanup.append(close_relay)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.path
        if path == CONTROL or path.startswith(CONTROL + "/"):
            status, doc = self._control(request.method, path, body)
            return _reply(request, Upstream(status, [], json.dumps(doc).encode()))
        routing, method = self.routing, request.method
        if routing.policy == "latency":
            target = routing.home_target(request.headers.get(HOME_HEADER))
        else:
            target = routing.read_target() if method in READ_METHODS else routing.answer()
        listed = request.headers.get("Connection")   # headers the client named hop-by-hop too
        drop = HOP_BY_HOP | {h.strip().lower() for h in listed.split(",")} if listed else HOP_BY_HOP
        headers = [(k, v) for k, v in request.headers.items()
                   if k.lower() not in drop and k.lower() != "content-length"]
        up = await self.relay.send(target, method, request.raw_path, headers, body)
        extra = [("X-Router-Target", target)]
        if (routing.policy == "origin-group" and method in FAILOVER_METHODS
                and (up.error or up.status in FAILOVER_STATUSES)):
            secondary = routing.secondary(target)
            if secondary:
                up = await self.relay.send(secondary, method, request.raw_path, headers, body)
                extra = [("X-Router-Target", secondary), ("X-Router-Failover", target)]
        return _reply(request, up, extra)

    def _control(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        routing = self.routing
        if method == "GET" and path == CONTROL:
            return 200, routing.status()
        if method == "POST" and path == CONTROL + "/switch":
            try:
                order = json.loads(body or b"{}")
                to, reason = order["to"], str(order.get("reason", "runbook"))
            except (ValueError, KeyError, TypeError):
                return 400, {"error": 'body must be {"to": region, "reason": str}'}
            if to not in routing.regions:
                return 400, {"error": f"unknown region {to!r}", "regions": routing.regions}
            routing.switch(to, reason)
            return 200, routing.status()
        if method == "POST" and path == CONTROL + "/health":
            try:
                order = json.loads(body or b"{}")
                region, inverted = order["region"], order["inverted"]
                if not isinstance(inverted, bool):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                return 400, {"error": 'body must be {"region": region, "inverted": bool}'}
            if region not in routing.regions:
                return 400, {"error": f"unknown region {region!r}", "regions": routing.regions}
            routing.invert(region, inverted)
            return 200, routing.status()
        if method == "POST" and path == CONTROL + "/reads":
            try:
                order = json.loads(body or b"{}")
                region, percent = order["region"], float(order["percent"])
            except (ValueError, KeyError, TypeError):
                return 400, {"error": 'body must be {"region": region, "percent": 0..100}'}
            if region not in routing.regions:
                return 400, {"error": f"unknown region {region!r}", "regions": routing.regions}
            if not 0 <= percent <= 100:
                return 400, {"error": f"percent must be within 0..100, got {percent:g}"}
            try:
                routing.shift_reads(region, percent)
            except ValueError as exc:
                return 400, {"error": str(exc)}
            return 200, routing.status()
        return 404, {"error": "unknown control endpoint"}


def _reply(request: web.Request, up: Upstream, extra: list[tuple[str, str]] = ()) -> web.Response:
    """Relay the upstream's headers as they were, except the framing, which is ours (a HEAD
    answer keeps the length the region announced)."""
    headers = CIMultiDict()
    length = None
    for name, value in [*up.headers, *extra]:
        if name.lower() == INSTANCE_HEADER.lower():
            continue  # the region's load balancer keeps its targets to itself
        if name.lower() == "content-length":
            length = value
        else:
            headers.add(name, value)
    headers.setdefault("Content-Type", "application/json")
    if request.method == "HEAD":
        headers["Content-Length"] = length if length is not None else str(len(up.body))
        return web.Response(status=up.status, headers=headers)
    return web.Response(status=up.status, headers=headers, body=up.body)


def _region(spec: str) -> tuple[str, tuple[str, int]]:
    try:
        name, addr = spec.split("=", 1)
        host, port = addr.rsplit(":", 1)
        return name, (host, int(port))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=HOST:PORT, got {spec!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drillkit.targets.sandbox.router", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--region", type=_region, action="append", required=True, metavar="NAME=HOST:PORT")
    parser.add_argument("--primary", required=True)
    parser.add_argument("--policy", choices=POLICIES, default="dns")
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("--failure-threshold", type=int, default=3)
    parser.add_argument("--ttl", type=float, default=1.0)
    parser.add_argument("--upstream-timeout", type=float, default=2.0)
    parser.add_argument("--events", help="the drill's events.jsonl (absolute path)")
    add_service_arguments(parser)
    args = parser.parse_args(argv)
    start_service("router", args, parser)
    regions = dict(args.region)
    if args.primary not in regions:
        parser.error(f"--primary {args.primary!r} is not one of the --region names {sorted(regions)}")
    if args.interval <= 0 or args.failure_threshold < 1 or args.ttl < 0 or args.upstream_timeout <= 0:
        parser.error("--interval and --upstream-timeout must be > 0, --failure-threshold >= 1, --ttl >= 0")

    routing = Routing(list(regions), args.primary, args.policy, args.failure_threshold, args.ttl, args.events)
    router = Router(routing, Relay(regions, args.upstream_timeout))
    stop = threading.Event()
    threading.Thread(target=routing.run_clock, args=(stop,), name="routing clock", daemon=True).start()
    for name, addr in regions.items():
        threading.Thread(target=run_health_checker, args=(routing, name, addr, args.interval, stop),
                         name=f"health checker of {name}", daemon=True).start()
    try:
        return serve_web_until_signalled(router.application(), args.port, args.ready_file)
    finally:
        stop.set()


if __name__ == "__main__":
    raise SystemExit(main())
