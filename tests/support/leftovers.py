"""What a drill may leave behind: processes it started and TCP ports it bound."""

from __future__ import annotations

import os
import time
from pathlib import Path

MARKERS = ("drillkit.targets.sandbox.", "drillkit.targets.aws.", "locust", "postgres", "kvservice")
FOLDERS = ("drillkit-sandbox-*", "drillkit-external-*", "drillkit-aws-*", "drillkit-fake-*", "drillkit-kvtest-*")


def drill_folders() -> set[Path]:
    return {f for pattern in FOLDERS for f in Path("/tmp").glob(pattern)}


def drill_processes() -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and cmd and any(m in cmd for m in MARKERS):
            found[int(entry.name)] = cmd
    return found


def listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class Snapshot:
    def __init__(self) -> None:
        self.processes = drill_processes()
        self.ports = listening_ports()
        self.sandboxes = drill_folders()

    def leaks(self, settle: float = 5.0) -> dict[str, object]:
        """New processes, ports and sandbox folders since the snapshot, after a short settling time."""
        deadline = time.monotonic() + settle
        while True:
            procs = {p: c for p, c in drill_processes().items() if p not in self.processes}
            ports = listening_ports() - self.ports
            folders = drill_folders() - self.sandboxes
            if not (procs or ports or folders) or time.monotonic() > deadline:
                return {k: v for k, v in (("processes", procs), ("ports", ports), ("folders", folders)) if v}
            time.sleep(0.1)
