"""The external target's audit adapters, each against a real source: an HTTP list endpoint, the S3
and DynamoDB APIs (moto, in-process: nothing leaves this machine), and a program; postgres is
drilled end to end in test_external.py."""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from drillkit.errors import FaultError, InputError
from drillkit.net import LoopbackServer
from drillkit.scenario.schema import CommandAudit, DynamoDBAudit, HttpAudit, S3Audit
from drillkit.targets.external.audit import adapter_for


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


RECORDS = {f"k{i:03d}": f"payload of k{i:03d}" for i in range(25)}


class Gateway:
    """What the list endpoint's gateway does to the next requests: a status answered instead of the page."""

    def __init__(self) -> None:
        self.fail_next: list[int] = []
        self.requests = 0


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


@pytest.fixture
def list_endpoint(gateway):
    """`GET /items?page=N`: 10 items a page, `next` a relative URL until the last page; the
    gateway's statuses first, while it has any."""
    keys = sorted(RECORDS)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            gateway.requests += 1
            if gateway.fail_next:
                self.send_error(gateway.fail_next.pop(0))
                return
            page = int(parse_qs(urlsplit(self.path).query).get("page", ["0"])[0])
            chunk = keys[page * 10:(page + 1) * 10]
            doc = {"items": [{"id": k, "value": RECORDS[k]} for k in chunk],
                   "next": f"/items?page={page + 1}" if (page + 1) * 10 < len(keys) else None}
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = LoopbackServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/items"
    server.shutdown()
    server.server_close()


def test_http_follows_every_page_and_hashes_payloads(list_endpoint, tmp_path):
    spec = HttpAudit(kind="http", url=list_endpoint, key_field="id", payload_field="value")
    adapter = adapter_for(spec, tmp_path)
    adapter.check()
    assert dict(adapter.final_state()) == {k: sha(v) for k, v in RECORDS.items()}


def test_http_asks_again_for_a_page_a_gateway_timed_out_on(list_endpoint, gateway, tmp_path):
    """A 504 (or 502, 503) says nothing of the list: the page is asked again, 3 attempts in all."""
    adapter = adapter_for(HttpAudit(kind="http", url=list_endpoint, key_field="id", payload_field="value"), tmp_path)
    gateway.fail_next = [504, 502]
    assert dict(adapter.final_state()) == {k: sha(v) for k, v in RECORDS.items()}
    assert gateway.requests == 3 + 2   # three pages, two of the first's attempts answered by the gateway
    gateway.fail_next, gateway.requests = [504, 504, 504], 0
    with pytest.raises(FaultError, match=r"/items answered 504 \(3 attempts\)$"):
        dict(adapter.final_state())
    assert gateway.requests == 3
    gateway.fail_next, gateway.requests = [500], 0   # a server's own error is an answer: not asked again
    with pytest.raises(FaultError, match=r"/items answered 500$"):
        dict(adapter.final_state())
    assert gateway.requests == 1


def test_http_that_does_not_answer_is_refused_naming_the_url(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    adapter = adapter_for(HttpAudit(kind="http", url=f"http://127.0.0.1:{port}/items"), tmp_path)
    with pytest.raises(InputError, match=r"^system\.audit\.url: .*does not answer"):
        adapter.check()


@pytest.fixture
def aws(monkeypatch):
    from moto import mock_aws

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def test_s3_reads_checksums_from_metadata_or_bodies(aws, tmp_path):
    import boto3

    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="orders", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for i, (key, payload) in enumerate(sorted(RECORDS.items())):
        meta = {"sha256": sha(payload)} if i % 2 else {}
        s3.put_object(Bucket="orders", Key=f"data/{key}", Body=payload.encode(), Metadata=meta)
    s3.put_object(Bucket="orders", Key="elsewhere/x", Body=b"not audited")
    spec = S3Audit(kind="s3", bucket="orders", prefix="data/", region="eu-west-1")
    adapter = adapter_for(spec, tmp_path)
    adapter.check()
    assert dict(adapter.final_state()) == {k: sha(v) for k, v in RECORDS.items()}
    with pytest.raises(InputError, match=r"^system\.audit\.bucket: cannot read bucket missing-bucket"):
        adapter_for(S3Audit(kind="s3", bucket="missing-bucket", region="eu-west-1"), tmp_path).check()


def test_dynamodb_scans_the_table(aws, tmp_path):
    import boto3

    ddb = boto3.client("dynamodb", region_name="eu-west-1")
    ddb.create_table(TableName="orders", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    for key, payload in RECORDS.items():
        ddb.put_item(TableName="orders", Item={"id": {"S": key}, "body": {"S": payload}})
    spec = DynamoDBAudit(kind="dynamodb", table="orders", region="eu-west-1", key_attribute="id",
                         payload_attribute="body")
    adapter = adapter_for(spec, tmp_path)
    adapter.check()
    assert dict(adapter.final_state()) == {k: sha(v) for k, v in RECORDS.items()}
    with pytest.raises(InputError, match=r"^system\.audit\.table: cannot read table nope"):
        adapter_for(DynamoDBAudit(kind="dynamodb", table="nope", region="eu-west-1"), tmp_path).check()


def _program(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "audit.py"
    path.write_text(f"#!{sys.executable}\n{body}\n")
    path.chmod(0o755)
    return path


def test_command_reads_json_lines_relative_to_the_scenario(tmp_path):
    lines = [json.dumps({"key": k, "payload": v}) for k, v in RECORDS.items()]
    lines[0] = json.dumps({"key": "k000", "checksum": sha(RECORDS["k000"])})
    _program(tmp_path, "import sys\nsys.stdout.write(" + repr("\n".join(lines) + "\n") + ")")
    adapter = adapter_for(CommandAudit(kind="command", argv=["./audit.py"]), tmp_path)
    adapter.check()
    assert dict(adapter.final_state()) == {k: sha(v) for k, v in RECORDS.items()}


def test_command_failures_are_one_line(tmp_path):
    _program(tmp_path, "import sys\nprint('boom', file=sys.stderr)\nsys.exit(3)")
    with pytest.raises(FaultError, match="exited 3: boom"):
        list(adapter_for(CommandAudit(kind="command", argv=["./audit.py"]), tmp_path).final_state())
    _program(tmp_path, "print('not json')")
    with pytest.raises(FaultError, match="line 1 is not"):
        list(adapter_for(CommandAudit(kind="command", argv=["./audit.py"]), tmp_path).final_state())
    with pytest.raises(InputError, match=r"^system\.audit\.argv: .*no-such-program is not an executable"):
        adapter_for(CommandAudit(kind="command", argv=["./no-such-program"]), tmp_path).check()
