"""Benchmark: recorded operations per second, from the load side alone and through the sandbox.

    .venv/bin/python bench/bench_throughput.py [--seconds 15] [--users 20] [--processes 1]

In one run:
1. Load side: drillkit's Locust users (no wait between tasks), as a master and 2 worker processes
   (Locust's --processes), against a trivial local HTTP server (asyncio, keep-alive), --rounds
   times with no recorder and recording every op into requests/*.jsonl (shipped to the master,
   as across hosts), alternated; ops/s from Locust's own count, the recording overhead as
   1 - (ops/s with) / (ops/s without), over all rounds.
2. Through the sandbox: a drill of scenarios/region-loss.yaml with the same no-wait users, ops/s
   recorded over the load's span, the region's loss included (every op in requests/*.jsonl), and
   over the span before the fault, when the system serves at full speed; and, over the middle of
   the warmup, each component's CPU per op (router, app, link proxies, PostgreSQL, Locust, the
   harness), read from /proc (bench/cpu_share.py), against the CPU an op may take at 2,000/s.
Every figure is counted, none estimated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).parent))

LOCUSTFILE = '''
from locust import constant, task
from drillkit.load.users import DrillUser

class NoWait(DrillUser):
    wait_time = constant(0)

    @task
    def write(self):
        self.write_record()

    @task
    def read(self):
        self.read_record()
'''


def serve(port: int) -> None:
    """A trivial HTTP/1.1 server, keep-alive: a write (POST) answered 201, a read (GET) 200 with a
    payload, as the sandbox's records API answers them."""

    def answer(status: bytes, body: bytes) -> bytes:
        return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nX-Region: A\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body)

    created = answer(b"201 Created", b'{"key": "k", "region": "A"}')
    found = answer(b"200 OK", b'{"key": "k", "payload": "' + b"ab" * 64 + b'", "region": "A"}')

    class Trivial(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buf = transport, b""

        def data_received(self, data):
            self.buf += data
            while True:
                head_end = self.buf.find(b"\r\n\r\n")
                if head_end < 0:
                    return
                length = 0
                for line in self.buf[:head_end].split(b"\r\n")[1:]:
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if len(self.buf) < head_end + 4 + length:
                    return
                reply = found if self.buf.startswith(b"GET") else created
                self.buf = self.buf[head_end + 4 + length:]
                self.transport.write(reply)

    async def main():
        server = await asyncio.get_running_loop().create_server(Trivial, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    try:  # the server's own cost is not the load side's: the fastest event loop there is
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def locust_run(locustfile: Path, host: str, users: int, seconds: int, evidence: Path | None,
               processes: int) -> dict:
    """One headless Locust run; its own request count (and the recorded lines, when recording)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRILLKIT_")}
    if evidence is not None:
        from drillkit.load import SETTINGS_ENV, LoadSettings

        env[SETTINGS_ENV] = LoadSettings(evidence=str(evidence), request_timeout=2.0).to_json()
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", str(users), "-r", str(users),
           "-t", f"{seconds}s", "--host", host, "--json", "--only-summary", "--loglevel", "ERROR",
           "--stop-timeout", "1"]
    if processes > 1:
        cmd += ["--processes", str(processes)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=locustfile.parent, env=env, timeout=seconds + 60)
    stats = json.loads(out.stdout[out.stdout.rindex("\n[") + 1:])  # the master's (workers print [] first)
    requests = sum(s["num_requests"] for s in stats)
    spans = [(s["start_time"], s["last_request_timestamp"]) for s in stats if s["num_requests"]]
    span = max(e for _, e in spans) - min(s for s, _ in spans)
    result = {"requests": requests, "span_s": round(span, 3), "ops_per_s": round(requests / span, 1)}
    if evidence is not None:
        result["recorded"] = sum(len(f.read_bytes().splitlines()) for f in (evidence / "requests").glob("*.jsonl"))
    return result


def load_side(work: Path, users: int, seconds: int, processes: int, rounds: int) -> dict:
    from drillkit.net import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        locustfile = work / "nowait.py"
        locustfile.write_text(LOCUSTFILE)
        host = f"http://127.0.0.1:{port}"
        plain, recorded = [], []
        for i in range(rounds):  # alternated: a machine that slows down slows both alike
            plain.append(locust_run(locustfile, host, users, seconds, None, processes))
            (work / f"ev{i}").mkdir()
            recorded.append(locust_run(locustfile, host, users, seconds, work / f"ev{i}", processes))
    finally:
        server.terminate()
        server.wait(10)
    for r in recorded:
        assert r["recorded"] == r["requests"], r
    rate = lambda runs: round(sum(r["requests"] for r in runs) / sum(r["span_s"] for r in runs), 1)  # noqa: E731
    return {"without_recorder": plain, "with_recorder": recorded, "without_ops_per_s": rate(plain),
            "with_ops_per_s": rate(recorded), "recording_overhead": round(1 - rate(recorded) / rate(plain), 4)}


def through_sandbox(work: Path, users: int, seconds: int, workers: int) -> dict:
    from drill_run import run
    from support.scenario_copy import copy_scenario
    from drillkit.evidence import FAULT_INJECTED

    locustfile = work / "nowait.py"
    locustfile.write_text(LOCUSTFILE)

    def no_wait(doc: dict) -> None:
        doc["load"].update(locustfile=str(locustfile), users=users, warmup=f"{seconds}s", duration=f"{seconds * 2}s",
                           workers=workers)
        doc["targets"].pop("max_lost_writes", None)

    scenario = copy_scenario("scenarios/region-loss.yaml", work, "throughput", no_wait)
    sampled: dict = {}
    sampler = threading.Thread(target=sample_warmup_cpu, args=(work / "drill", seconds, sampled),
                               daemon=True)
    sampler.start()
    drilled = run(scenario, work / "drill", timeout=seconds * 4 + 120)
    sampler.join(5)
    users_ops = [op for op in drilled.ops if op.get("client") != "canary"]
    t0 = min(op["t0"] for op in users_ops)
    t1 = max(op["t1"] for op in users_ops)
    fault = next((e["t"] for e in drilled.events if e["kind"] == FAULT_INJECTED), t1)
    before = [op for op in users_ops if op["t1"] < fault]
    return {"exit": drilled.exit, "verdict": drilled.summary["verdict"], "recorded_ops": len(users_ops),
            "span_s": round(t1 - t0, 3), "ops_per_s": round(len(users_ops) / (t1 - t0), 1),
            "before_fault_ops": len(before),
            "before_fault_ops_per_s": round(len(before) / (fault - t0), 1) if fault > t0 else None,
            "failed": sum(not op["ok"] for op in users_ops), "workers": workers,
            "cpu_per_op": cpu_per_op(sampled, drilled.ops)}


def sample_warmup_cpu(folder: Path, seconds: int, into: dict) -> None:
    """Two CPU snapshots in the middle half of the warmup, when the load runs at full speed."""
    from cpu_share import snapshot

    from drillkit.evidence import STAGE_START, read_events

    def warmup_started() -> bool:
        try:
            return any(e["kind"] == STAGE_START and e.get("stage") == "warmup" for e in read_events(folder))
        except ValueError:  # a line being written: read again at the next poll
            return False

    deadline = time.monotonic() + seconds * 4 + 120
    while not warmup_started():
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    time.sleep(seconds / 4)
    into["a"] = snapshot()
    time.sleep(seconds / 2)
    into["b"] = snapshot()


def cpu_per_op(sampled: dict, ops: list[dict]) -> dict | None:
    """Each component's CPU per recorded op (the users' and the canary's: both cross the sandbox)
    in the sampled window, and the budget an op has on this machine at 2,000 ops/s."""
    from cpu_share import cpu_by_component

    if "b" not in sampled:
        return None
    a, b = sampled["a"], sampled["b"]
    used = cpu_by_component(a, b)
    n = sum(a.t <= op["t1"] < b.t for op in ops)
    ms = {k: round(v * 1000 / n, 3) for k, v in used["cpu_s"].items()} if n else {}
    return {**used, "ops": n, "ops_per_s": round(n / used["window_s"], 1), "ms_per_op": ms,
            "ms_per_op_total": round(sum(ms.values()), 3), "budget_ms_per_op_at_2000": os.cpu_count() * 1000 / 2000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--processes", type=int, default=2,
                        help="Locust worker processes on the load side (Locust's --processes: a master and workers)")
    parser.add_argument("--sandbox-workers", type=int, default=0, help="load.workers for the sandbox drill")
    parser.add_argument("--rounds", type=int, default=3, help="load-side runs with and without the recorder, alternated")
    parser.add_argument("--skip-sandbox", action="store_true")
    parser.add_argument("--skip-load-side", action="store_true")
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    with tempfile.TemporaryDirectory(prefix="drillkit-bench-") as tmp:
        work = Path(tmp)
        (work / "load").mkdir()
        result: dict = {"cpus": os.cpu_count()}
        if not args.skip_load_side:
            result["load_side"] = load_side(work / "load", args.users, args.seconds, args.processes, args.rounds)
            print(json.dumps(result["load_side"], indent=2), flush=True)
        if not args.skip_sandbox:
            (work / "sandbox").mkdir()
            result["through_sandbox"] = through_sandbox(work / "sandbox", args.users, args.seconds,
                                                        args.sandbox_workers)
            print(json.dumps(result["through_sandbox"], indent=2), flush=True)


if __name__ == "__main__":
    main()
