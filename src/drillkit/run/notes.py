"""Observations: what the people of a game day notice while a drill runs, written into its event
log as `operator.note` (`drillkit note "…"` from another terminal) and shown on the report's
timeline and in its Observations table.

A note goes only into a drill that is running now: its event log says it started and not yet
ended, its folder is not sealed, and the harness that started it (the pid and kernel start time
`drill.start` records) is alive. A killed drill's folder, or a sealed one, takes no more notes.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path

from drillkit import evidence as ev
from drillkit.errors import InputError
from drillkit.targets.processes import regular_file_of_mine, start_ticks

MAX_NOTE = 2000


def _start(folder: Path) -> dict | None:
    """The folder's drill.start event when the drill is running now, else None."""
    if (folder / ev.MANIFEST).exists() or not regular_file_of_mine(folder / ev.EVENTS):
        return None  # and never append to a link or to someone else's file
    events = ev.read_events(folder)
    start = next((e for e in events if e.get("kind") == ev.DRILL_START), None)
    if start is None or any(e.get("kind") == ev.DRILL_END for e in events):
        return None
    pid, ticks = start.get("pid"), start.get("pid_start")
    if not isinstance(pid, int) or ticks is None or start_ticks(pid) != ticks:
        return None
    return start


def running_drill(under: Path) -> Path:
    """The most recently started drill running now among the folders right under `under`."""
    if not under.is_dir():
        raise InputError("no such folder", file=str(under), field="--under")
    found = []
    for folder in (p for p in under.iterdir() if p.is_dir()):
        start = _start(folder)
        if start is not None:
            found.append((float(start.get("t") or 0.0), folder))
    if not found:
        raise InputError("no drill is running here (give its evidence folder with --drill)", file=str(under),
                         field="--under")
    return max(found)[1]


def add_note(folder: Path, text: str) -> dict:
    """Append `text` to the running drill's event log, with who wrote it."""
    text = " ".join(text.split())
    if not text:
        raise InputError("an empty note", field="TEXT")
    if len(text) > MAX_NOTE:
        raise InputError(f"a note is at most {MAX_NOTE} characters", field="TEXT")
    if _start(folder) is None:
        raise InputError("not a running drill's evidence folder (not started, ended, sealed, or its harness is "
                         "gone)", file=str(folder), field="--drill")
    return ev.append_event(folder / ev.EVENTS, ev.OPERATOR_NOTE, text=text, by=getpass.getuser(), pid=os.getpid())
