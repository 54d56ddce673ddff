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
import http.client
import json
import random
import select
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple

from drillkit.evidence import HEALTH_CHANGE, HEALTH_INVERTED, ROUTING_PUBLISHED, ROUTING_SHIFT, ROUTING_SWITCH
from drillkit.targets.capabilities import RoutingStatus
from drillkit.targets.sandbox.net import (
    LoopbackServer,
    add_service_arguments,
    record_event,
    serve_until_signalled,
    start_service,
)

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


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle keep-alive socket that is readable was closed (or spoke out of turn) by the peer."""
    if conn.sock is None:
        return True
    try:
        return bool(select.select([conn.sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _failure(status: int, error: str, detail: str) -> Upstream:
    return Upstream(status, [("X-Router-Error", error)], json.dumps({"error": f"{error}: {detail}"}).encode(), error)


class RouterHandler(BaseHTTPRequestHandler):
    """One client connection; it keeps one upstream connection per region for its lifetime."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: RouterServer

    def setup(self) -> None:
        super().setup()
        self.upstreams: dict[str, http.client.HTTPConnection] = {}

    def finish(self) -> None:
        for conn in self.upstreams.values():
            conn.close()
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.close_connection = True
        self._reply(Upstream(code, [], json.dumps({"error": message or str(code)}).encode()))

    def _reply(self, up: Upstream, extra: list[tuple[str, str]] = ()) -> None:
        """Relay the upstream's headers as they were, except the framing, which is ours."""
        self.send_response_only(up.status)
        names = {name.lower() for name, _ in up.headers}
        length = str(len(up.body))
        for name, value in [*up.headers, *extra]:
            if name.lower() == "content-length":
                length = value if self.command == "HEAD" else length
            else:
                self.send_header(name, value)
        if "content-type" not in names:
            self.send_header("Content-Type", "application/json")
        if "date" not in names:
            self.send_header("Date", self.date_time_string())
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(up.body)

    def _handle(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self.send_error(411, "send a Content-Length; chunked request bodies are not relayed")
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        except ValueError:
            return self.send_error(400, "bad Content-Length")
        path = self.path.split("?", 1)[0]
        if path == CONTROL or path.startswith(CONTROL + "/"):
            return self._control(path, body)
        routing = self.server.routing
        if routing.policy == "latency":
            target = routing.home_target(self.headers.get(HOME_HEADER))
        else:
            target = routing.read_target() if self.command in READ_METHODS else routing.answer()
        up = self._relay(target, body)
        extra = [("X-Router-Target", target)]
        if (routing.policy == "origin-group" and self.command in FAILOVER_METHODS
                and (up.error or up.status in FAILOVER_STATUSES)):
            secondary = routing.secondary(target)
            if secondary:
                up = self._relay(secondary, body)
                extra = [("X-Router-Target", secondary), ("X-Router-Failover", target)]
        self._reply(up, extra)

    def _relay(self, region: str, body: bytes) -> Upstream:
        """Forward once; reconnect once more only when the request never left (connect or send)."""
        drop = {h.strip().lower() for h in self.headers.get("Connection", "").split(",")}
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in HOP_BY_HOP | drop and k.lower() != "content-length"}
        payload: bytes | None = body
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        else:
            payload = None
        for attempt in (1, 2):
            conn = self.upstreams.get(region)
            if conn is None or _dropped(conn):
                self._lost(region)
                conn = self.upstreams[region] = http.client.HTTPConnection(
                    *self.server.regions[region], timeout=self.server.upstream_timeout)
            stage = "connect"
            try:
                if conn.sock is None:
                    conn.connect()
                stage = "send"
                conn.request(self.command, self.path, body=payload, headers=headers)
                stage = "response"
                resp = conn.getresponse()
                data = resp.read()
            except TimeoutError as exc:
                self._lost(region)
                return _failure(504, "timeout", str(exc) or f"{stage} timed out")
            except (OSError, http.client.HTTPException) as exc:
                self._lost(region)
                if stage != "response" and attempt == 1:
                    continue
                kind = "connect" if stage == "connect" and not isinstance(exc, ConnectionResetError) else "reset"
                return _failure(502, kind, repr(exc))
            if resp.will_close:
                self._lost(region)
            kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP_BY_HOP]
            return Upstream(resp.status, kept, data)
        raise AssertionError("unreachable")

    def _lost(self, region: str) -> None:
        conn = self.upstreams.pop(region, None)
        if conn is not None:
            conn.close()

    def _control(self, path: str, body: bytes) -> None:
        routing = self.server.routing
        if self.command == "GET" and path == CONTROL:
            return self._json(200, routing.status())
        if self.command == "POST" and path == CONTROL + "/switch":
            try:
                order = json.loads(body or b"{}")
                to, reason = order["to"], str(order.get("reason", "runbook"))
            except (ValueError, KeyError, TypeError):
                return self._json(400, {"error": 'body must be {"to": region, "reason": str}'})
            if to not in routing.regions:
                return self._json(400, {"error": f"unknown region {to!r}", "regions": routing.regions})
            routing.switch(to, reason)
            return self._json(200, routing.status())
        if self.command == "POST" and path == CONTROL + "/health":
            try:
                order = json.loads(body or b"{}")
                region, inverted = order["region"], order["inverted"]
                if not isinstance(inverted, bool):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                return self._json(400, {"error": 'body must be {"region": region, "inverted": bool}'})
            if region not in routing.regions:
                return self._json(400, {"error": f"unknown region {region!r}", "regions": routing.regions})
            routing.invert(region, inverted)
            return self._json(200, routing.status())
        if self.command == "POST" and path == CONTROL + "/reads":
            try:
                order = json.loads(body or b"{}")
                region, percent = order["region"], float(order["percent"])
            except (ValueError, KeyError, TypeError):
                return self._json(400, {"error": 'body must be {"region": region, "percent": 0..100}'})
            if region not in routing.regions:
                return self._json(400, {"error": f"unknown region {region!r}", "regions": routing.regions})
            if not 0 <= percent <= 100:
                return self._json(400, {"error": f"percent must be within 0..100, got {percent:g}"})
            try:
                routing.shift_reads(region, percent)
            except ValueError as exc:
                return self._json(400, {"error": str(exc)})
            return self._json(200, routing.status())
        self._json(404, {"error": "unknown control endpoint"})

    def _json(self, status: int, doc: Any) -> None:
        self._reply(Upstream(status, [], json.dumps(doc).encode()))

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _handle


class RouterServer(LoopbackServer):
    def __init__(self, port: int, routing: Routing, regions: dict[str, tuple[str, int]],
                 upstream_timeout: float):
        self.routing, self.regions, self.upstream_timeout = routing, regions, upstream_timeout
        super().__init__(("127.0.0.1", port), RouterHandler)


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
    server = RouterServer(args.port, routing, regions, args.upstream_timeout)
    stop = threading.Event()
    threading.Thread(target=routing.run_clock, args=(stop,), name="routing clock", daemon=True).start()
    for name, addr in regions.items():
        threading.Thread(target=run_health_checker, args=(routing, name, addr, args.interval, stop),
                         name=f"health checker of {name}", daemon=True).start()
    try:
        return serve_until_signalled(server, args.ready_file)
    finally:
        stop.set()


if __name__ == "__main__":
    raise SystemExit(main())
