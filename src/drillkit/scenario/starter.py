"""`drillkit init`: a workspace to drill one's own system (or the sandbox), valid as written.

The files come from drillkit/scenario/workspace/<kind>/; values the user must supply are marked
`FILL IN`. Nothing is overwritten: the folder must be absent or empty.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from drillkit.errors import InputError

TEMPLATES = Path(__file__).resolve().parent / "workspace"
KINDS = ("external", "sandbox")


NEXT_STEPS = {"external": "fill in the FILL IN values, then drillkit validate {scenario}",
              "sandbox": "drillkit run {scenario}"}
"""Per workspace, what its user does next (`drillkit init` prints it)."""


def next_step(folder: Path, kind: str) -> str:
    return NEXT_STEPS[kind].format(scenario=folder / "scenario.yaml")


def write_workspace(folder: Path, kind: str = "external") -> list[Path]:
    """Copy the `kind` workspace into `folder`; the files written, relative to it."""
    if kind not in KINDS:
        raise InputError(f"unknown kind {kind!r} (known: {', '.join(KINDS)})", field="--kind")
    shown = str(folder)
    if folder.exists() or folder.is_symlink():
        if not folder.is_dir():
            raise InputError("exists and is not a folder", file=shown)
        if any(folder.iterdir()):
            raise InputError("is not empty: drillkit init never overwrites", file=shown)
    source = TEMPLATES / kind
    files = sorted(p.relative_to(source) for p in source.rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)
    try:
        for rel in files:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, folder / rel)
    except OSError as exc:
        raise InputError(f"cannot write the workspace: {exc.strerror or exc}", file=shown) from None
    return files
