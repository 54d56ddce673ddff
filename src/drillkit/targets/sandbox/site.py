"""The static site each region serves, and its config.json: seed 003's frontend and its manual
backend failover (routing policy ``config-json``).

Each region's object store holds the site in its own bucket (`SITE_BUCKET`, never replicated: the
runbook writes every region's copy, as the seed's operator uploads config.json to both frontend
buckets). The app serves it under `/site/`; the router, as a CloudFront distribution with an origin
group, serves the site from the primary region's copy and from the other's per request when the
primary fails or times out. config.json names the backend API, a region's own client link that
clients call directly; each client keeps its copy for `routing.ttl` before fetching it again, as a
single-page app caches it. So the backend moves only when the runbook rewrites config.json
(`switch_routing`), and each client follows when its copy expires. A mixin of Sandbox.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from drillkit.errors import FaultError
from drillkit.targets.capabilities import ClientConfigSpec, RoutingStatus
from drillkit.targets.sandbox import s3_service as objects
from drillkit.net import record_event
from drillkit.evidence import ROUTING_SWITCH

CONFIG_JSON = "config-json"
SITE_PATH = "/site/"
CONFIG_KEY = "config.json"
INDEX_KEY = "index.html"
INDEX = b"<!doctype html><title>drillkit sandbox</title><script src=config.json></script><p>chat</p>\n"
WRITE_TIMEOUT = 0.5
"""The connect and read timeout, with one attempt, of each region's store while the runbook
rewrites config.json in all of them at once: a region that does not answer keeps a stale copy."""


def config_document(region: str, link_port: int) -> dict[str, Any]:
    return {"apiUrl": f"http://127.0.0.1:{link_port}", "region": region}


def publish_site(s3_ports: dict[str, int], link_ports: dict[str, int], backend: str) -> None:
    """At start-up: every region's copy of the site, config.json naming `backend`."""
    for port in s3_ports.values():
        client = objects.s3_client(port)
        client.put_object(Bucket=objects.SITE_BUCKET, Key=INDEX_KEY, Body=INDEX, ContentType="text/html")
        put_config(client, backend, link_ports[backend])


def put_config(client, backend: str, port: int) -> None:
    """Write config.json, naming region `backend`'s API at `port`, through an S3 `client`."""
    doc = json.dumps(config_document(backend, port)).encode()
    client.put_object(Bucket=objects.SITE_BUCKET, Key=CONFIG_KEY, Body=doc, ContentType="application/json")


class SiteSteps:
    """Operations of `Sandbox` (which supplies state, _region, link, endpoint...) under config-json."""

    def client_config(self) -> ClientConfigSpec | None:
        if self.state.routing_policy != CONFIG_JSON or self.state.config_ttl is None:
            return None
        return ClientConfigSpec(path=f"{SITE_PATH}{CONFIG_KEY}", ttl=self.state.config_ttl)

    def publish_config(self, to: str, reason: str) -> RoutingStatus:
        """Rewrite config.json in every region's site bucket that answers, naming `to`'s API. A
        region that does not answer within WRITE_TIMEOUT keeps its old copy (`stale`), which its
        origin serves again once it is back: the runbook must write it then too."""
        self._reload()
        target = self._region(to)
        api_port = self.state.links[target.link].port

        def write(port: int) -> float | None:
            try:
                put_config(objects.s3_client(port, timeout=WRITE_TIMEOUT, attempts=1), to, api_port)
                return time.time()
            except Exception:  # botocore: the region's store is frozen, down or failing
                return None

        ports = {name: region.s3_port for name, region in self.state.regions.items()}
        with ThreadPoolExecutor(len(ports)) as pool:   # a hung region must not delay the others
            done = dict(zip(ports, pool.map(write, ports.values())))
        written = [name for name, t in done.items() if t is not None]
        stale = [name for name, t in done.items() if t is None]
        if not written:
            raise FaultError(f"config.json could not be written in any region ({', '.join(stale)})")
        before = self.state.config_backend
        if to != before:
            # timed when the last copy that took the change had it: from then on every fetch gets it
            record = record_event(self.state.events_file, ROUTING_SWITCH, t=max(done[n] for n in written), **{
                "from": before, "to": to, "policy": CONFIG_JSON, "reason": reason,
                "written": written, "stale": stale})
            self.state.config_switches.append(record)
            self.state.config_backend = to
        self.state.save()
        return self.config_status()

    def config_status(self) -> RoutingStatus:
        """What the frontend serves as config.json now (the backend a client fetching it gets)."""
        url = f"{self.endpoint}{SITE_PATH}{CONFIG_KEY}"
        try:
            with urllib.request.urlopen(url, timeout=5.0) as resp:
                answer = json.loads(resp.read())["region"]
        except (OSError, ValueError, KeyError, urllib.error.HTTPError) as exc:
            raise FaultError(f"the frontend serves no config.json ({url}): {exc}") from None
        return RoutingStatus(policy=CONFIG_JSON, answer=answer, read_shares={},
                             switches=tuple(self.state.config_switches))

