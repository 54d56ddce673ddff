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

    A read of a key the serving region does not have (404) is a correct answer from a working
    service, so it counts as ok with `found: false`; losing the key is the audit's business.
    """

    abstract = True
    payload_bytes = 128
    read_ratio = 0.5

    def on_start(self) -> None:
        HistoryRecorder.attach(self.environment)
        self.timeout = float(os.environ.get(ENV_TIMEOUT, "1.0"))
        self.acked: list[str] = []
        self.prefix = uuid.uuid4().hex[:8]
        self.seq = 0

    def write_record(self) -> None:
        self.seq += 1
        key = f"{self.prefix}-{self.seq:07d}"
        payload = os.urandom(self.payload_bytes // 2).hex()
        ctx = {"op": "write", "key": key, "checksum": checksum(payload)}
        with self.client.post("/records", json={"key": key, "payload": payload}, name="write", context=ctx,
                              timeout=self.timeout, catch_response=True) as resp:
            if resp.status_code == 201:
                resp.success()
                self.acked.append(key)
                if len(self.acked) > 1000:
                    del self.acked[:500]
            else:
                resp.failure(_reason(resp))

    def read_record(self) -> None:
        if not self.acked:
            return self.write_record()
        key = self.acked[int.from_bytes(os.urandom(2), "big") % len(self.acked)]
        ctx = {"op": "read", "key": key}
        with self.client.get(f"/records/{key}", name="read", context=ctx, timeout=self.timeout,
                             catch_response=True) as resp:
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
