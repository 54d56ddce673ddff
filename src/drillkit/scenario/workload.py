"""Workload mappings, as a scenario's `load.workload` file declares them: a system's own API,
described per operation class. The load (drillkit.load.workload) renders requests and reads
responses through them; this module is only their shape and validation.

A mapping says, for writes and reads (and optionally deletes), which method and path template to
call, which JSON body to send (`{key}`, `{payload}`, `{checksum}` are filled in), which statuses
mean ok and not-found, and where a read's response holds the payload (drillkit recomputes its
SHA-256) or its checksum.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PLACEHOLDERS = ("key", "payload", "checksum")
PLACEHOLDER = re.compile(r"\{(\w+)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _check_template(text: str, allowed: tuple[str, ...]) -> str:
    for name in PLACEHOLDER.findall(text):
        if name not in allowed:
            raise ValueError(f"unknown placeholder {{{name}}} (known: {', '.join('{' + a + '}' for a in allowed)})")
    return text


class Operation(_Strict):
    """One operation class of the user's API."""

    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
    path: str = Field(min_length=1)
    body: dict[str, Any] | None = None
    ok: list[int] = Field(default_factory=lambda: [200], min_length=1)
    not_found: list[int] = Field(default_factory=lambda: [404])
    payload_field: str | None = None
    checksum_field: str | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return _check_template(value, ("key",))

    @field_validator("body")
    @classmethod
    def _body(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _check_template(json.dumps(value), PLACEHOLDERS)
        return value

    @field_validator("ok", "not_found")
    @classmethod
    def _statuses(cls, value: list[int]) -> list[int]:
        for code in value:
            if not 100 <= code <= 599:
                raise ValueError(f"{code} is not an HTTP status")
        return value


OpClass = Literal["write", "read", "delete", "obj_write", "obj_read"]
"""The operation classes a mapping may define, named as the history records them."""


class Workload(_Strict):
    """The user's API for the drill's load: writes of unique keys, reads of acknowledged ones, and
    optionally objects (`obj_write` / `obj_read`, recorded under `obj/<key>`, the keys the
    objects audit gives them)."""

    write: Operation
    read: Operation | None = None
    delete: Operation | None = None
    obj_write: Operation | None = None
    obj_read: Operation | None = None
    weights: dict[OpClass, int] = Field(default_factory=lambda: {"write": 1, "read": 1})
    payload_bytes: int = Field(128, ge=2, le=1 << 20)
    wait: float = Field(0.02, ge=0, le=60)

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: dict[str, int]) -> dict[str, int]:
        if any(w < 0 for w in value.values()) or not any(value.values()):
            raise ValueError("weights must be >= 0 and not all 0")
        return value

    @model_validator(mode="after")
    def _objects(self):
        if self.obj_read is not None and self.obj_write is None:
            raise ValueError("obj_read needs obj_write (reads go to objects the load wrote)")
        return self

    def tasks(self) -> dict[str, int]:
        """Operation class → weight, for the classes this mapping defines."""
        return {op: w for op, w in self.weights.items() if w and getattr(self, op) is not None}


DR_RECORDS = Workload(
    write=Operation(method="POST", path="/records", body={"key": "{key}", "payload": "{payload}"}, ok=[201]),
    read=Operation(method="GET", path="/records/{key}", payload_field="payload"),
    obj_write=Operation(method="PUT", path="/objects/{key}", body={"payload": "{payload}"}, ok=[200, 201]),
    obj_read=Operation(method="GET", path="/objects/{key}", payload_field="payload"),
)
"""The sandbox app's records and objects API: the built-in mapping (loadtests/dr_workload.py uses
it; its objects only where a task writes them, as loadtests/objects_workload.py does)."""
