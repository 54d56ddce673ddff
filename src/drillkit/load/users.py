"""The Locust side: a user base class whose every operation lands in requests/<client>.jsonl.

Users are Locust's FastHttpUser (geventhttpclient): the load side is then not what limits a
drill's rate. drillkit.load.recording records them, in one process or through a master.
Only locustfiles import this module (it imports locust, which monkey-patches with gevent).
"""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid

from locust import FastHttpUser
from locust.exception import StopUser

from drillkit.evidence import OBJECT_KEY_PREFIX as OBJECT_PREFIX
from drillkit.load import ENV_WORKLOAD, HOME_HEADER, ClientConfig, LoadSettings
from drillkit.load.recording import RECORDER, STOPPING, settings
from drillkit.load.workload import DR_RECORDS, Operation, Workload, checksum, read_outcome, render


class DrillUser(FastHttpUser):
    """Writes unique keys with a payload and its SHA-256, and reads back keys it saw acknowledged.

    Records go through a workload mapping (drillkit.load.workload): the sandbox's records API
    (`DR_RECORDS`) by default, or the user's own API (`MappedUser`). Objects go to the region's
    store (the mapping's `obj_write` / `obj_read`; the sandbox's `PUT /objects/{key}` by default),
    recorded under `obj/<key>`, the key the objects audit gives them.
    A read of a key the serving region does not have (404) is a correct answer from a working
    service, so it counts as ok with `found: false`; losing the key is the audit's business.

    Under routing config-json (`$DRILLKIT_CLIENT_CONFIG`) each user is a browser tab: it calls the
    backend at the URL its copy of config.json names, fetching that copy from the endpoint (the
    frontend) when it is `ttl` old, and `load_page` fetches the site's page; both are `page` ops.

    Under routing latency (active-active, `$DRILLKIT_HOME_REGIONS`) users are homed in the regions
    in turn and name their home in every request; `write_item` / `read_item` use the global
    table, a `hot_share` of them on `hot_keys` keys every user writes, each write with a value of
    its own (the LWW checker tells the writes apart by it).
    """

    abstract = True
    payload_bytes = 128
    read_ratio = 0.5
    workload: Workload = DR_RECORDS
    hot_keys = 10
    hot_share = 0.5
    _homes = itertools.count()

    def __init__(self, environment) -> None:
        self.settings: LoadSettings = settings(environment)
        # FastHttpUser's client takes its timeouts when it is made: a blackholed link fails the
        # op after request_timeout, as every client of the drill does
        self.network_timeout = self.connection_timeout = self.settings.request_timeout
        super().__init__(environment)
        recorder = getattr(environment, RECORDER, None)
        if recorder is not None:
            self.client.request = _invoking(self.client.request, recorder, environment)  # type: ignore[method-assign]

    def on_start(self) -> None:
        self.settings = settings(self.environment)  # a worker has the master's by now
        self.acked: dict[str, list[str]] = {"write": [], "obj_write": []}
        self.prefix = self.key(uuid.uuid4().hex[:8])
        self.seq = 0
        self.config = ClientConfig.from_settings(self.settings, self._fetch_page)
        homes = self.settings.home_regions
        self.home = homes[next(DrillUser._homes) % len(homes)] if homes else None
        self.item_keys: list[str] = []
        self.hot_prefix = self.key("hot-")

    def key(self, name: str) -> str:
        """`name` scoped to the drill: every key a user writes starts with the drill's prefix
        (docs/targets.md), so the audit reads only this drill's keys. A locustfile that names
        its own keys passes them through here."""
        return self.settings.key_prefix + name

    def write_item(self) -> None:
        """PUT a value of its own to a hot key (shared by every user) or to a key of this user's."""
        self.seq += 1
        value = f"{self.prefix}-{self.seq:07d}"
        hot = self.hot_share > 0 and _draw() < self.hot_share
        key = f"{self.hot_prefix}{int(_draw() * self.hot_keys):04d}" if hot else value
        ctx = {"op": "item_write", "key": key, "value": value, "client": self.prefix, **self._home()}

        def settle(resp) -> None:
            if resp.status_code == 200:
                try:
                    resp.request_meta["context"]["ts"] = float(resp.json()["ts"])
                except (ValueError, KeyError, TypeError):
                    pass
                resp.success()
                if key not in self.item_keys:
                    self.item_keys.append(key)
                    del self.item_keys[:-1000]
            else:
                resp.failure(_reason(resp))

        self._send("PUT", f"/items/{key}", json.dumps({"value": value}).encode(), ctx, settle)

    def read_item(self) -> None:
        """GET a key this user wrote: the value the region holds is recorded as `value`."""
        if not self.item_keys:
            return self.write_item()
        key = self._pick(self.item_keys)
        ctx = {"op": "item_read", "key": key, "client": self.prefix, **self._home()}

        def settle(resp) -> None:
            meta = resp.request_meta["context"]
            if resp.status_code in (200, 404):
                meta["found"] = resp.status_code == 200
                if meta["found"]:
                    try:
                        meta["value"] = str(resp.json()["value"])
                    except (ValueError, KeyError, TypeError):
                        pass
                resp.success()
            else:
                resp.failure(_reason(resp))

        self._send("GET", f"/items/{key}", None, ctx, settle)

    def _home(self) -> dict:
        return {"home": self.home} if self.home else {}

    def load_page(self, path: str = "/site/index.html") -> None:
        """A page of the frontend, from the endpoint itself (recorded as `page`)."""
        self._fetch_page(path)

    def _fetch_page(self, path: str) -> dict | None:
        """GET `path` from the endpoint as a `page` op; a JSON object body is returned (config.json)."""
        ctx = {"op": "page", "key": path, "client": self.prefix}
        with self.client.request("GET", path, name="page", context=ctx, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(_reason(resp))
                return None
            resp.success()
            try:
                doc = resp.json()
            except ValueError:
                return None
            return doc if isinstance(doc, dict) else None

    def _url(self, path: str) -> str | None:
        """Where an API call goes: the endpoint, or under config-json the backend this user's copy
        of config.json names (None while it has none: the call is not made)."""
        if self.config is None:
            return path
        base = self.config.api_url()
        return None if base is None else base + path

    def write_record(self) -> None:
        key = self._next_key()
        payload = os.urandom(self.payload_bytes // 2).hex()
        method, path, body = render(self.workload.write, key, payload)
        self._write("write", key, payload, path, body, method, self.workload.write.ok)

    def write_object(self) -> None:
        op = self.workload.obj_write
        if op is None:
            return self.write_record()
        key = self._next_key()
        payload = os.urandom(self.payload_bytes // 2).hex()
        method, path, body = render(op, key, payload)
        self._write("obj_write", f"{OBJECT_PREFIX}{key}", payload, path, body, method, op.ok)

    def read_record(self) -> None:
        acked = self.acked["write"]
        if not acked or self.workload.read is None:
            return self.write_record()
        key = self._pick(acked)
        method, path, body = render(self.workload.read, key)
        self._read("read", key, method, path, body, self.workload.read)

    def read_object(self) -> None:
        acked, op = self.acked["obj_write"], self.workload.obj_read
        if not acked or op is None:
            return self.write_object()
        key = self._pick(acked)
        method, path, body = render(op, key.removeprefix(OBJECT_PREFIX))
        self._read("obj_read", key, method, path, body, op)

    def delete_record(self) -> None:
        """Delete an acknowledged key (recorded as `delete`; the key leaves the set read back)."""
        acked = self.acked["write"]
        op = self.workload.delete
        if not acked or op is None:
            return self.write_record()
        key = acked.pop(int.from_bytes(os.urandom(2), "big") % len(acked))
        method, path, body = render(op, key)

        def settle(resp) -> None:
            if resp.status_code in op.ok or resp.status_code in op.not_found:
                resp.success()
            else:
                resp.failure(_reason(resp))

        self._send(method, path, body, {"op": "delete", "key": key, "client": self.prefix}, settle)

    @staticmethod
    def _pick(acked: list[str]) -> str:
        return acked[int.from_bytes(os.urandom(2), "big") % len(acked)]

    def _next_key(self) -> str:
        self.seq += 1
        return f"{self.prefix}-{self.seq:07d}"

    def _send(self, method: str, path: str, body: bytes | None, ctx: dict, settle) -> None:
        """One API call, recorded under ctx["op"] with `ctx`, its response judged by `settle`; not
        made while this user has no backend to call (config-json with no copy yet)."""
        url = self._url(path)
        if url is None:
            return
        headers = {**(_JSON if body else {}), **({HOME_HEADER: self.home} if self.home else {})}
        with self.client.request(method, url, data=body, headers=headers or None, name=ctx["op"],
                                 context=ctx, catch_response=True) as resp:
            settle(resp)

    def _write(self, op: str, key: str, payload: str, path: str, body: bytes | None, method: str, ok) -> None:
        def settle(resp) -> None:
            if resp.status_code in ok:
                resp.success()
                acked = self.acked[op]
                acked.append(key)
                if len(acked) > 1000:
                    del acked[:500]
            else:
                resp.failure(_reason(resp))

        self._send(method, path, body, {"op": op, "key": key, "checksum": checksum(payload), "client": self.prefix},
                   settle)

    def _read(self, op: str, key: str, method: str, path: str, body: bytes | None, mapping: Operation) -> None:
        def settle(resp) -> None:
            meta = resp.request_meta["context"]
            ok, found, digest = read_outcome(mapping, resp.status_code or None, resp.content)
            if ok:
                if found:
                    meta["checksum"] = digest
                meta["found"] = found
                resp.success()
            else:
                resp.failure(_reason(resp))

        self._send(method, path, body, {"op": op, "key": key, "client": self.prefix}, settle)


def _invoking(request, recorder, environment):
    """The client's `request`, writing each drill operation's invocation (a request whose
    context names its `op` and `key`) before it is sent, its id into the context for the
    completion. Once the load is stopping, no operation is invoked: the user stops."""

    def invoked(method: str, url: str, *args, context: dict | None = None, **kwargs):
        if getattr(environment, STOPPING, False):
            raise StopUser()
        if context is None:
            return request(method, url, *args, **kwargs)
        if "op" in context and "key" in context and "id" not in context:
            context = {**context, "id": recorder.invoke(time.time(), context["op"], context["key"],
                                                        context.get("checksum"), context.get("client"))}
        return request(method, url, *args, context=context, **kwargs)

    return invoked


class MappedUser(DrillUser):
    """The user's own API: the workload mapping the harness hands over in $DRILLKIT_WORKLOAD."""

    abstract = True

    @classmethod
    def from_environment(cls) -> Workload:
        path = os.environ.get(ENV_WORKLOAD)
        if not path:
            raise RuntimeError(f"${ENV_WORKLOAD} names no workload mapping (drillkit run sets it)")
        with open(path) as fh:
            return Workload.model_validate_json(fh.read())


_JSON = {"Content-Type": "application/json"}


def _draw() -> float:
    """Uniform in [0, 1), from os.urandom as the rest of the workload draws (gevent-safe)."""
    return int.from_bytes(os.urandom(4), "big") / 2**32


def _reason(resp) -> str:
    if resp.status_code in (0, None):
        return str(resp.error or "no response")
    try:
        return f"{resp.status_code} {resp.json().get('error', '')}".strip()
    except ValueError:
        return f"{resp.status_code}"
