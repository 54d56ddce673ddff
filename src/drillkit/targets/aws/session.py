"""One boto3 session per drill, guarded: every call is checked against the allowlisted regions,
refused when it mutates in plan mode (a botocore `before-call` hook, not a convention), and
written to the call trail (`aws_calls.jsonl`: time, service, operation, region, resource, request
id, caller, ok/error; secrets redacted).

chaostoolkit-aws builds its clients from boto3's default session, so the same hooks are installed
there too (`guard_default_session`): its calls are checked and trailed like drillkit's own.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drillkit.errors import DrillkitError, InputError

READ_PREFIXES = ("Describe", "Get", "List", "Head", "Lookup", "Test")
GLOBAL_SERVICES = frozenset({"route53", "sts", "iam", "cloudfront", "health"})
"""Services whose API is global: their clients may name any region (botocore picks the endpoint)."""
RESOURCE_PARAMS = ("DBInstanceIdentifier", "DBClusterIdentifier", "GlobalClusterIdentifier", "HealthCheckId",
                   "HostedZoneId", "Bucket", "TableName", "AlarmNames", "experimentTemplateId", "id",
                   "RecoveryPointArn", "ResourceArn")


def is_mutating(operation: str) -> bool:
    """Anything but Describe*/Get*/List*/Head*/Lookup*/Test* changes the account."""
    return not operation.startswith(READ_PREFIXES)


class MutationBlocked(DrillkitError):
    """`drillkit plan` never changes the account: a mutating call is refused before it is sent."""


class RegionNotAllowed(InputError):
    pass


@dataclass
class Guard:
    """The checks and the trail, shared by every client of a session."""

    regions: frozenset[str]
    trail: Path | None = None
    blocking: bool = False
    caller: dict[str, str] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, events) -> None:
        """On a session's event system; a guard installed there before is replaced."""
        for event, handler in (("before-parameter-build", self._params), ("before-call", self._before),
                               ("after-call", self._after), ("after-call-error", self._error)):
            events.unregister(event, unique_id=f"drillkit-{event}")
            events.register(event, handler, unique_id=f"drillkit-{event}")

    def _params(self, params: dict, model, context: dict, **_: Any) -> None:
        from drillkit.redact import REDACTED, is_secret_key

        def clean(value: Any, key: str = "") -> Any:
            if is_secret_key(key):
                return REDACTED
            if isinstance(value, dict):
                return {k: clean(v, k) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            if isinstance(value, (bytes, bytearray)) or hasattr(value, "read"):
                return f"<{len(value) if isinstance(value, (bytes, bytearray)) else 'stream'} bytes>"
            return value

        context["drillkit"] = {"params": clean(dict(params))}

    def _before(self, model, context: dict, **_: Any) -> None:
        service = model.service_model.service_name
        region = context.get("client_region") or ""
        operation = model.name
        note = context.setdefault("drillkit", {"params": {}})
        note["t0"] = time.time()
        if service not in GLOBAL_SERVICES and region not in self.regions:
            self._write(note, service, region, operation, ok=False, error="refused: region not allowlisted")
            raise RegionNotAllowed(f"{service}.{operation} in {region or 'no region'}: the region is not in "
                                   f"system.aws.regions ({', '.join(sorted(self.regions))})", field="system.aws.regions")
        if self.blocking and is_mutating(operation):
            self._write(note, service, region, operation, ok=False, error="blocked: plan mode")
            raise MutationBlocked(f"plan mode: {service}.{operation} would change the account and was not sent")

    def _after(self, http_response, parsed: dict, model, context: dict, **_: Any) -> None:
        note = context.get("drillkit") or {"params": {}}
        meta = (parsed or {}).get("ResponseMetadata", {})
        error = (parsed or {}).get("Error") or {}
        self._write(note, model.service_model.service_name, context.get("client_region") or "", model.name,
                    ok=not error, status=meta.get("HTTPStatusCode") or getattr(http_response, "status_code", None),
                    request_id=meta.get("RequestId") or (meta.get("HTTPHeaders") or {}).get("x-amzn-requestid"),
                    error=f"{error.get('Code')}: {error.get('Message')}" if error else None)

    def _error(self, exception: Exception, model, context: dict, **_: Any) -> None:
        from drillkit.errors import one_line

        self._write(context.get("drillkit") or {"params": {}}, model.service_model.service_name,
                    context.get("client_region") or "", model.name, ok=False, error=one_line(exception))

    def _write(self, note: dict, service: str, region: str, operation: str, ok: bool, **fields: Any) -> None:
        from drillkit.evidence import append_record

        params = note.get("params", {})
        resource = next((params[k] for k in RESOURCE_PARAMS if k in params), None)
        record = {"t0": note.get("t0", time.time()), "t1": time.time(), "service": service, "region": region,
                  "operation": operation, "mutating": is_mutating(operation), "resource": resource,
                  "params": params, "caller": self.caller.get("arn"), "account": self.caller.get("account"),
                  "ok": ok, **fields}
        with self.lock:
            self.calls.append(record)
        if self.trail is not None:
            append_record(self.trail, record)


class Session:
    """boto3 clients for one account, one per (service, region), all guarded."""

    def __init__(self, profile: str | None, endpoint_url: str | None, guard: Guard):
        import boto3

        try:
            self.boto = boto3.session.Session(profile_name=profile)
        except Exception as exc:  # botocore's ProfileNotFound and friends
            raise InputError(f"cannot open the AWS profile: {exc}", field="system.aws.profile") from None
        self.endpoint_url = endpoint_url
        self.guard = guard
        guard.install(self.boto.events)
        self._clients: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def client(self, service: str, region: str):
        from botocore.config import Config

        with self._lock:
            key = (service, region)
            if key not in self._clients:
                config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)
                self._clients[key] = self.boto.client(service, region_name=region, endpoint_url=self.endpoint_url,
                                                      config=config)
            return self._clients[key]


def guard_default_session(guard: Guard, profile: str | None = None) -> None:
    """The same checks and trail for clients made from boto3's default session (chaostoolkit-aws)."""
    import boto3

    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session(profile_name=profile)
    guard.install(boto3.DEFAULT_SESSION.events)
