"""Workload mappings at work: the requests of the recorded load rendered, and its responses read.
A mapping's shape (`Workload`, `Operation`) is the scenario's (drillkit.scenario.workload). The
Locust user (drillkit.load.users) and the canary both render requests and read responses through
this module, so one mapping drives every client.

Pure: no Locust import, no I/O.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from drillkit.scenario.workload import DR_RECORDS, PLACEHOLDER, OpClass, Operation, Workload


def checksum(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()


def _fill(value: Any, values: dict[str, str]) -> Any:
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole:
            return values[whole.group(1)]
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], value)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


def render(op: Operation, key: str, payload: str | None = None) -> tuple[str, str, bytes | None]:
    """The request for `op` on `key`: method, path, JSON body bytes (or None)."""
    values = {"key": key, "payload": payload or "", "checksum": checksum(payload) if payload else ""}
    path = PLACEHOLDER.sub(lambda m: _quote(values[m.group(1)]), op.path)
    body = None if op.body is None else json.dumps(_fill(op.body, values)).encode()
    return op.method, path, body


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _field(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def read_outcome(op: Operation, status: int | None, body: bytes | str | None) -> tuple[bool, bool | None, str | None]:
    """`(ok, found, checksum)` of a read's response: ok for the ok and not-found statuses (a 404
    is a correct answer from a working service), the checksum of the returned payload."""
    if status in op.ok:
        digest = None
        if op.payload_field or op.checksum_field:
            try:
                doc = json.loads(body or b"{}")
            except ValueError:
                return False, None, None
            if op.payload_field:
                payload = _field(doc, op.payload_field)
                digest = checksum(payload) if isinstance(payload, str) else None
            else:
                found = _field(doc, op.checksum_field)
                digest = found if isinstance(found, str) else None
        return True, True, digest
    if status in op.not_found:
        return True, False, None
    return False, None, None


__all__ = ["DR_RECORDS", "OpClass", "Operation", "Workload", "checksum", "read_outcome", "render"]
