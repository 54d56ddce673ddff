"""The sandbox's global table as components: two regions' DynamoDB APIs (moto servers), two
replicators following the tables' streams through fault-injecting links, LWW on the writing
region's clock. Checked against what was written, with no drill around it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from drillkit.targets import processes
from drillkit.targets.sandbox import linkproxy
from drillkit.targets.sandbox.linkproxy import LinkControl
from drillkit.targets.sandbox.table_service import get_item, put_if_newer, replicator_command, scan, table_client


def wait_until(condition, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not met within {timeout} s")


@pytest.fixture
def global_table(tmp_path: Path):
    """Stores A and B, links A→B and B→A, a replicator each way (0.2 s delay); all stopped after."""
    procs = []

    def spawn(module: str, args: list[str], name: str) -> dict:
        proc, ready = processes.spawn_service(module, args, tmp_path, name)
        procs.append(proc)
        return processes.wait_ready(proc, ready, name)

    try:
        ports = {r: spawn("drillkit.targets.sandbox.table_service", ["store"], f"table-{r}")["port"] for r in "AB"}
        links = {}
        for src, dst in (("A", "B"), ("B", "A")):
            name = f"table-{src}-to-{dst}"
            links[src] = spawn("drillkit.targets.sandbox.linkproxy",
                               linkproxy.command(name, ports[dst], tmp_path / "events.jsonl"), name)
            spawn("drillkit.targets.sandbox.table_service",
                  replicator_command(ports[src], links[src]["port"], src, dst, 0.2, tmp_path / "replication.jsonl"),
                  f"replicator-{src}")
        yield {"clients": {r: table_client(p, attempts=3) for r, p in ports.items()},
               "links": {r: LinkControl(info["control_port"]) for r, info in links.items()},
               "log": tmp_path / "replication.jsonl"}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except Exception:
                proc.kill()
                proc.wait()


def converged(clients) -> dict | None:
    a, b = scan(clients["A"]), scan(clients["B"])
    return a if a == b else None


def test_writes_in_each_region_reach_the_other_and_a_tie_goes_to_the_greater_region(no_leftovers, global_table):
    clients = global_table["clients"]
    assert put_if_newer(clients["A"], "only-a", "a1", 100.0, "A")
    assert put_if_newer(clients["B"], "only-b", "b1", 100.0, "B")
    assert put_if_newer(clients["A"], "tie", "a-tie", 200.0, "A")
    assert put_if_newer(clients["B"], "tie", "b-tie", 200.0, "B")
    table = wait_until(lambda: converged(clients) if len(scan(clients["A"])) == 3 else None, what="convergence")
    assert {k: v["value"] for k, v in table.items()} == {"only-a": "a1", "only-b": "b1", "tie": "b-tie"}
    # a local write older than what the region holds is acknowledged by nobody: refused by the condition
    assert not put_if_newer(clients["A"], "tie", "a-late", 150.0, "A")
    log = [json.loads(line) for line in global_table["log"].read_text().splitlines()]
    assert {(r["key"], r["from"], r["outcome"]) for r in log} >= {
        ("only-a", "A", "applied"), ("only-b", "B", "applied"), ("tie", "A", "discarded")}


def test_a_cut_keeps_each_regions_writes_until_it_heals_then_lww_picks_one_winner_everywhere(no_leftovers, global_table):
    clients, links = global_table["clients"], global_table["links"]
    for link in links.values():
        link.inject("blackhole")
    # both regions take writes to the same hot keys while cut apart; B's clock runs 0.5 s ahead
    now = time.time()
    for i in range(5):
        assert put_if_newer(clients["A"], f"hot-{i}", f"a-{i}", now + i * 0.01, "A")
        assert put_if_newer(clients["B"], f"hot-{i}", f"b-{i}", now + i * 0.01 + 0.5, "B")
    time.sleep(0.5)   # longer than the replication delay: nothing crossed the cut
    assert get_item(clients["A"], "hot-0")["value"] == "a-0" and get_item(clients["B"], "hot-0")["value"] == "b-0"
    for link in links.values():
        link.clear()
    table = wait_until(lambda: converged(clients) if get_item(clients["A"], "hot-4")["value"] == "b-4" else None,
                       what="convergence after the cut healed")
    assert all(table[f"hot-{i}"]["value"] == f"b-{i}" for i in range(5))
    hot = {f"hot-{i}" for i in range(5)}

    def delivered(source: str) -> list[dict]:
        log = [json.loads(line) for line in global_table["log"].read_text().splitlines()]
        return [r for r in log if r["from"] == source]
    # A's writes reach B too, and lose there to B's newer ones: every held change is delivered once
    got = wait_until(lambda: (lambda a: a if {r["key"] for r in a} >= hot else None)(delivered("A")),
                     what="A's held changes delivered")
    assert {r["key"] for r in got if r["outcome"] == "discarded"} == hot
    assert {r["key"] for r in delivered("B") if r["outcome"] == "applied"} == hot


def test_conditional_writes_in_flight_at_once_keep_the_newest():
    """DynamoDB applies a conditional write atomically: of writes to one key racing each other,
    whatever order they arrive in, the one with the greatest ts is kept. The table's own WSGI
    application, in this process, 8 threads switching every microsecond, each round 8 writes of
    one key released at once with timestamps dealt at random. moto alone (no one-at-a-time) kept
    an older write in 9-17 rounds of 400."""
    import random
    import sys
    import threading

    from werkzeug.test import Client

    from drillkit.targets.sandbox.table_service import NEWER, TABLE, table_app

    app = table_app()
    auth = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x"

    def call(client: Client, target: str, body: dict) -> dict:
        resp = client.post("/", data=json.dumps(body), headers={
            "X-Amz-Target": f"DynamoDB_20120810.{target}", "Content-Type": "application/x-amz-json-1.0",
            "Authorization": auth, "Host": "localhost"})
        return json.loads(resp.data)

    def put(client: Client, key: str, value: str, ts: float) -> None:
        call(client, "PutItem", {"TableName": TABLE, "ConditionExpression": NEWER,
                                 "Item": {"key": {"S": key}, "value": {"S": value}, "ts": {"N": repr(ts)},
                                          "origin": {"S": "A"}},
                                 "ExpressionAttributeNames": {"#k": "key", "#ts": "ts", "#o": "origin"},
                                 "ExpressionAttributeValues": {":ts": {"N": repr(ts)}, ":o": {"S": "A"}}})

    rounds, width = 400, 8
    deal = random.Random(7)
    stamps = [deal.sample(range(width), width) for _ in range(rounds)]
    start = threading.Barrier(width)

    def writer(n: int) -> None:
        client = Client(app)
        for r in range(rounds):
            start.wait(30)
            put(client, f"raced-{r}", f"v{stamps[r][n]}", 1000.0 + stamps[r][n])

    owner = Client(app)
    call(owner, "CreateTable", {"TableName": TABLE, "BillingMode": "PAY_PER_REQUEST",
                                "KeySchema": [{"AttributeName": "key", "KeyType": "HASH"}],
                                "AttributeDefinitions": [{"AttributeName": "key", "AttributeType": "S"}]})
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(width)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        sys.setswitchinterval(interval)
    try:
        kept = {r: call(owner, "GetItem", {"TableName": TABLE, "Key": {"key": {"S": f"raced-{r}"}}})["Item"]["value"]["S"]
                for r in range(rounds)}
    finally:
        call(owner, "DeleteTable", {"TableName": TABLE})
    assert {r: v for r, v in kept.items() if v != f"v{width - 1}"} == {}
