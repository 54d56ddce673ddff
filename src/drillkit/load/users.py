"""The Locust side: a user base class whose every operation lands in requests/<worker>.jsonl.

Only locustfiles import this module (it imports locust, which monkey-patches with gevent).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import uuid

from locust import HttpUser

from drillkit.evidence import OBJECT_KEY_PREFIX as OBJECT_PREFIX
from drillkit.load import ENV_EVIDENCE, ENV_TIMEOUT


def checksum(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()


class HistoryRecorder:
    """Writes one evidence line per Locust `request` event (evidence format v1).

    Line-buffered and never closed before exit: a request finishing during shutdown is still
    recorded, and a Locust killed hard loses at most a partial line.
    """

    _by_env: dict[int, "HistoryRecorder"] = {}

    def __init__(self, path: str):
        self.fh = open(path, "a", buffering=1)

    @classmethod
    def attach(cls, environment) -> "HistoryRecorder | None":
        folder = os.environ.get(ENV_EVIDENCE)
        if not folder:
            return None
        recorder = cls._by_env.get(id(environment))
        if recorder is None:
            worker = f"{socket.gethostname()}-{os.getpid()}"
            os.makedirs(os.path.join(folder, "requests"), exist_ok=True)
            recorder = cls(os.path.join(folder, "requests", f"{worker}.jsonl"))
            environment.events.request.add_listener(recorder.on_request)
            environment.events.quitting.add_listener(lambda **_: recorder.flush())
            cls._by_env[id(environment)] = recorder
        return recorder

    def on_request(self, request_type, name, response_time, response_length, response=None, context=None,
                   exception=None, start_time=None, **kwargs) -> None:
        ctx = context or {}
        if "op" not in ctx or start_time is None:
            return
        status = getattr(response, "status_code", None) or None
        headers = getattr(response, "headers", None) or {}
        record = {
            "t0": start_time, "t1": start_time + (response_time or 0) / 1000.0, "op": ctx["op"], "key": ctx["key"],
            "ok": exception is None, "status": status, "region": headers.get("X-Region"),
            "checksum": ctx.get("checksum"), "error": None if exception is None else _short(exception),
        }
        if "found" in ctx:
            record["found"] = ctx["found"]
        self.fh.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        self.fh.flush()


def _short(exception: BaseException) -> str:
    text = str(exception).splitlines()[0] if str(exception) else type(exception).__name__
    return text[:200]


class DrillUser(HttpUser):
    """Writes unique keys with a payload and its SHA-256, and reads back keys it saw acknowledged.

    Records go to the database (`POST /records`), objects to the region's S3 bucket
    (`PUT /objects/{key}`, recorded under `obj/<key>`, the key the audit gives them).
    A read of a key the serving region does not have (404) is a correct answer from a working
    service, so it counts as ok with `found: false`; losing the key is the audit's business.
    """

    abstract = True
    payload_bytes = 128
    read_ratio = 0.5

    def on_start(self) -> None:
        HistoryRecorder.attach(self.environment)
        self.timeout = float(os.environ.get(ENV_TIMEOUT, "1.0"))
        self.acked: dict[str, list[str]] = {"write": [], "obj_write": []}
        self.prefix = uuid.uuid4().hex[:8]
        self.seq = 0

    def write_record(self) -> None:
        key = self._next_key()
        payload = os.urandom(self.payload_bytes // 2).hex()
        self._write("write", key, payload, "/records", {"key": key, "payload": payload}, self.client.post)

    def write_object(self) -> None:
        key = self._next_key()
        payload = os.urandom(self.payload_bytes // 2).hex()
        self._write("obj_write", f"{OBJECT_PREFIX}{key}", payload, f"/objects/{key}", {"payload": payload},
                    self.client.put)

    def read_record(self) -> None:
        self._read("read", "write", "/records/{}", self.write_record)

    def read_object(self) -> None:
        self._read("obj_read", "obj_write", "/objects/{}", self.write_object)

    def _next_key(self) -> str:
        self.seq += 1
        return f"{self.prefix}-{self.seq:07d}"

    def _write(self, op: str, key: str, payload: str, path: str, body: dict, send) -> None:
        ctx = {"op": op, "key": key, "checksum": checksum(payload)}
        with send(path, json=body, name=op, context=ctx, timeout=self.timeout, catch_response=True) as resp:
            if resp.status_code == 201:
                resp.success()
                acked = self.acked[op]
                acked.append(key)
                if len(acked) > 1000:
                    del acked[:500]
            else:
                resp.failure(_reason(resp))

    def _read(self, op: str, written_by: str, path: str, write_instead) -> None:
        acked = self.acked[written_by]
        if not acked:
            return write_instead()
        key = acked[int.from_bytes(os.urandom(2), "big") % len(acked)]
        ctx = {"op": op, "key": key}
        with self.client.get(path.format(key.removeprefix(OBJECT_PREFIX)), name=op, context=ctx,
                             timeout=self.timeout, catch_response=True) as resp:
            meta = resp.request_meta["context"]
            if resp.status_code == 200:
                meta["checksum"] = checksum(resp.json()["payload"])
                meta["found"] = True
                resp.success()
            elif resp.status_code == 404:
                meta["found"] = False
                resp.success()
            else:
                resp.failure(_reason(resp))


def _reason(resp) -> str:
    if resp.status_code in (0, None):
        return str(resp.error or "no response")
    try:
        return f"{resp.status_code} {resp.json().get('error', '')}".strip()
    except ValueError:
        return f"{resp.status_code}"
