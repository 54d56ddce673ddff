#!/usr/bin/env python3
"""The fault for kvservice, as a Chaos Toolkit process action: quiesce a region, then SIGKILL it.

  python crash.py --url http://127.0.0.1:PORT --pid PID --ground-truth PATH

POSTs {url}/admin/hold (flushing stops and, once --min-pending acknowledged writes are buffered,
new requests block and requests in flight finish; the reply
lists the acknowledged writes still only in memory), SIGKILLs PID, waits until it is gone, and
writes {"pending": [...], "t_hold": ..., "t_gate": ..., "t_kill": ...} to PATH atomically and to
stdout. `pending` is then exactly the acknowledged writes the crash lost; `t_gate` is when the
region stopped answering new requests, `t_hold` when it answered the hold, `t_kill` when the
signal went out. Exit 0, or 1 with a message on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HOLD_TIMEOUT = 30.0
GONE_TIMEOUT = 5.0


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie its parent has not reaped yet."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def hold(url: str, min_pending: int = 0) -> dict:
    request = urllib.request.Request(f"{url.rstrip('/')}/admin/hold", method="POST",
                                     data=json.dumps({"min_pending": min_pending}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=HOLD_TIMEOUT) as resp:
        body = json.loads(resp.read())
    if not isinstance(body, dict) or not isinstance(body.get("pending"), list):
        raise ValueError(f"unexpected hold reply: {body!r}")
    return body


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="crash", description="hold a kvservice region, then SIGKILL it")
    parser.add_argument("--url", required=True, help="the region's own URL, e.g. http://127.0.0.1:PORT")
    parser.add_argument("--pid", type=int, required=True, help="the region's process id")
    parser.add_argument("--ground-truth", required=True, help="where to write the ground truth JSON")
    parser.add_argument("--min-pending", type=int, default=0,
                        help="wait until this many acknowledged writes are buffered (so the crash loses some)")
    args = parser.parse_args(argv)
    try:
        if gone(args.pid):
            raise ProcessLookupError(f"no running process {args.pid}")
        held = hold(args.url, args.min_pending)
        os.kill(args.pid, signal.SIGKILL)
        t_kill = time.time()
        deadline = time.monotonic() + GONE_TIMEOUT
        while not gone(args.pid):
            if time.monotonic() > deadline:
                raise TimeoutError(f"process {args.pid} still running {GONE_TIMEOUT:.0f}s after SIGKILL")
            time.sleep(0.01)
        truth = {"pending": sorted(held["pending"]), "t_hold": held.get("t"), "t_gate": held.get("t_gate"),
                 "t_kill": t_kill}
        text = json.dumps(truth)
        write_atomic(Path(args.ground_truth), text)
    except (OSError, ValueError, urllib.error.URLError) as exc:
        print(f"crash: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
