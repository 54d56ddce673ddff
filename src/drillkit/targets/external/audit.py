"""Audit adapters: the final state of a system drillkit did not build, read from where it keeps it.

Each adapter `check()`s that it can read (before any fault: an InputError naming the scenario
field otherwise, exit 2) and yields `(key, checksum)` from `final_state()`. Where the source gives
payloads, drillkit recomputes their SHA-256 itself, as the load computed it for each write.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Protocol

from drillkit.errors import FaultError, InputError, one_line
from drillkit.scenario.schema import (
    AuditSpec,
    CommandAudit,
    DynamoDBAudit,
    HttpAudit,
    PostgresAudit,
    S3Audit,
)

FIELD = "system.audit"
PAGE_RETRY_STATUSES = frozenset({502, 503, 504})
"""A gateway's answers that say nothing of the list: a page answered so is asked again."""
PAGE_ATTEMPTS = 3


def sha256(payload: str | bytes) -> str:
    return hashlib.sha256(payload.encode() if isinstance(payload, str) else payload).hexdigest()


class AuditAdapter(Protocol):
    kind: str
    field: str

    def check(self) -> None: ...

    def final_state(self) -> Iterator[tuple[str, str]]: ...


class _Adapter:
    field = FIELD
    """The scenario field its input errors name (adapter_for sets system.object_audit)."""


def adapter_for(spec: AuditSpec, scenario_dir: Path, field: str = FIELD) -> AuditAdapter:
    """The adapter for `spec`; its input errors name `field` (system.audit or system.object_audit)."""
    kinds = {"postgres": PostgresAdapter, "http": HttpAdapter, "s3": S3Adapter, "dynamodb": DynamoDBAdapter,
             "command": CommandAdapter}
    adapter = kinds[spec.kind](spec, scenario_dir)
    adapter.field = field
    return adapter


class PostgresAdapter(_Adapter):
    """`query` over the user's PostgreSQL: rows of (key, payload) or (key, checksum)."""

    kind = "postgres"

    def __init__(self, spec: PostgresAudit, scenario_dir: Path):
        self.spec = spec
        self.scenario_dir = scenario_dir

    def dsn(self) -> str:
        if self.spec.dsn_env is not None:
            value = os.environ.get(self.spec.dsn_env)
            if not value:
                raise InputError(f"the environment variable {self.spec.dsn_env} is not set",
                                 field=f"{self.field}.dsn_env")
            return value
        path = Path(self.spec.dsn_file)
        path = path if path.is_absolute() else self.scenario_dir / path
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror or exc}", field=f"{self.field}.dsn_file") from None

    def _where(self) -> str:
        return f"{self.field}.{'dsn_env' if self.spec.dsn_env else 'dsn_file'}"

    def _connect(self):
        import psycopg

        try:
            return psycopg.connect(self.dsn(), connect_timeout=5)
        except psycopg.Error as exc:
            raise InputError(f"cannot connect to the audit database: {_pg_error(exc)}", field=self._where()) from None

    def check(self) -> None:
        import psycopg

        with self._connect() as conn:
            try:
                cur = conn.execute(f"SELECT * FROM ({self.spec.query}) AS drillkit_audit LIMIT 0")  # noqa: S608
            except psycopg.Error as exc:
                raise InputError(f"the audit query fails: {_pg_error(exc)}", field=f"{self.field}.query") from None
            if len(cur.description or ()) < 2:
                raise InputError(f"the audit query must return two columns (key, {self.spec.returns})",
                                 field=f"{self.field}.query")

    def final_state(self) -> Iterator[tuple[str, str]]:
        with self._connect() as conn, conn.cursor(name="drillkit_audit") as cur:
            cur.execute(self.spec.query)
            for row in cur:
                key, value = row[0], row[1]
                if value is None:
                    continue
                yield str(key), (sha256(value if isinstance(value, (str, bytes)) else str(value))
                                 if self.spec.returns == "payload" else str(value))


def _pg_error(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class HttpAdapter(_Adapter):
    """A paginated list endpoint: `{items: [...], next: URL}` until `next` is null."""

    kind = "http"

    def __init__(self, spec: HttpAudit, scenario_dir: Path):
        self.spec = spec
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _page(self, url: str) -> dict[str, Any]:
        """One page of the list. A page answered 502, 503 or 504 (a gateway that timed out on a
        slow page, a region busy recovering) is asked again, up to PAGE_ATTEMPTS times in all,
        0.5 s then 1 s apart: reading a list changes nothing, and a drill aborted as not audited
        over one slow page says nothing of the system."""
        for attempt in range(1, PAGE_ATTEMPTS + 1):
            try:
                return self._read_page(url)
            except urllib.error.HTTPError as exc:
                if exc.code not in PAGE_RETRY_STATUSES or attempt == PAGE_ATTEMPTS:
                    raise FaultError(f"the audit list endpoint {url} answered {exc.code}"
                                     + (f" ({attempt} attempts)" if attempt > 1 else "")) from None
                time.sleep(0.5 * attempt)
        raise AssertionError("unreachable")

    def _read_page(self, url: str) -> dict[str, Any]:
        try:
            with self.opener.open(urllib.request.Request(url, headers={"Accept": "application/json"}),
                                  timeout=10) as resp:
                doc = json.loads(resp.read())
        except urllib.error.HTTPError:
            raise
        except (OSError, ValueError) as exc:
            raise FaultError(f"the audit list endpoint {url} does not answer: {one_line(exc)}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get(self.spec.items_field), list):
            raise FaultError(f"the audit list endpoint {url} gave no {self.spec.items_field!r} list")
        return doc

    def check(self) -> None:
        try:
            self._page(self.spec.url)
        except FaultError as exc:
            raise InputError(str(exc), field=f"{self.field}.url") from None

    def final_state(self) -> Iterator[tuple[str, str]]:
        url: str | None = self.spec.url
        for _ in range(self.spec.max_pages):
            if not url:
                return
            doc = self._page(url)
            for item in doc[self.spec.items_field]:
                key = item.get(self.spec.key_field)
                if self.spec.checksum_field:
                    checksum = item.get(self.spec.checksum_field)
                else:
                    payload = item.get(self.spec.payload_field) if self.spec.payload_field else None
                    checksum = None if payload is None else sha256(str(payload))
                if key is not None and checksum is not None:
                    yield str(key), str(checksum)
            following = doc.get(self.spec.next_field) if self.spec.next_field else None
            url = urllib.parse.urljoin(url, following) if following else None
        raise FaultError(f"the audit list endpoint has more than {self.spec.max_pages} pages (max_pages)")


def _boto_client(service: str, region: str | None, endpoint_url: str | None):
    import boto3

    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)


def _boto_error(exc: Exception) -> str:
    return one_line(exc)


class S3Adapter(_Adapter):
    """Every object under `prefix`: its checksum from `checksum_metadata`, else its body's SHA-256."""

    kind = "s3"

    def __init__(self, spec: S3Audit, scenario_dir: Path):
        self.spec = spec

    def _client(self):
        return _boto_client("s3", self.spec.region, self.spec.endpoint_url)

    def check(self) -> None:
        try:
            self._client().head_bucket(Bucket=self.spec.bucket)
        except Exception as exc:  # botocore's errors share no base worth naming here
            raise InputError(f"cannot read bucket {self.spec.bucket}: {_boto_error(exc)}",
                             field=f"{self.field}.bucket") from None

    def final_state(self) -> Iterator[tuple[str, str]]:
        client = self._client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.spec.bucket, Prefix=self.spec.prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                checksum = None
                if self.spec.checksum_metadata:
                    head = client.head_object(Bucket=self.spec.bucket, Key=key)
                    checksum = head.get("Metadata", {}).get(self.spec.checksum_metadata)
                if checksum is None:
                    checksum = sha256(client.get_object(Bucket=self.spec.bucket, Key=key)["Body"].read())
                yield key.removeprefix(self.spec.prefix), checksum


class DynamoDBAdapter(_Adapter):
    """A scan of the table: `key_attribute` and a payload (hashed here) or checksum attribute."""

    kind = "dynamodb"

    def __init__(self, spec: DynamoDBAudit, scenario_dir: Path):
        self.spec = spec

    def _client(self):
        return _boto_client("dynamodb", self.spec.region, self.spec.endpoint_url)

    def check(self) -> None:
        try:
            self._client().describe_table(TableName=self.spec.table)
        except Exception as exc:
            raise InputError(f"cannot read table {self.spec.table}: {_boto_error(exc)}",
                             field=f"{self.field}.table") from None

    def final_state(self) -> Iterator[tuple[str, str]]:
        from boto3.dynamodb.types import TypeDeserializer

        plain = TypeDeserializer()
        for page in self._client().get_paginator("scan").paginate(TableName=self.spec.table, ConsistentRead=True):
            for item in page.get("Items", []):
                row = {k: plain.deserialize(v) for k, v in item.items()}
                key = row.get(self.spec.key_attribute)
                if self.spec.checksum_attribute:
                    checksum = row.get(self.spec.checksum_attribute)
                else:
                    payload = row.get(self.spec.payload_attribute) if self.spec.payload_attribute else None
                    checksum = None if payload is None else sha256(payload if isinstance(payload, (str, bytes))
                                                                   else str(payload))
                if key is not None and checksum is not None:
                    yield str(key), str(checksum)


class CommandAdapter(_Adapter):
    """Any program printing JSON lines `{"key", "payload"}` or `{"key", "checksum"}`."""

    kind = "command"

    def __init__(self, spec: CommandAudit, scenario_dir: Path):
        self.spec = spec
        program = spec.argv[0]
        if "/" in program and not Path(program).is_absolute():
            program = str(scenario_dir / program)
        self.argv = [program, *spec.argv[1:]]

    def check(self) -> None:
        program = self.argv[0]
        found = Path(program).is_file() if "/" in program else shutil.which(program)
        if not found or ("/" in program and not os.access(program, os.X_OK)):
            raise InputError(f"{program} is not an executable program", field=f"{self.field}.argv")

    def final_state(self) -> Iterator[tuple[str, str]]:
        try:
            done = subprocess.run(self.argv, capture_output=True, text=True, timeout=self.spec.timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise FaultError(f"the audit command ran past {self.spec.timeout:g} s") from None
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-2:])
            raise FaultError(f"the audit command exited {done.returncode}: {tail}")
        for n, line in enumerate(done.stdout.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key = row["key"]
                checksum = row["checksum"] if "checksum" in row else sha256(str(row["payload"]))
            except (ValueError, KeyError, TypeError):
                raise FaultError(f"the audit command's line {n} is not {{key, payload|checksum}} JSON") from None
            yield str(key), str(checksum)
