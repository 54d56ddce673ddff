"""Checks made before a drill starts anything: the target's own preflight (the sandbox's host, an
external system's endpoint and audit source), then the evidence folder.

Each failure is an InputError or EnvironmentProblem (exit 2) and leaves nothing behind: no folder
is created, no process started, no port held, no fault injected.
"""

from __future__ import annotations

import os
from pathlib import Path

from drillkit.errors import EnvironmentProblem, InputError
from drillkit.host import check_folder_creatable
from drillkit.scenario import LoadedScenario


def check_environment(loaded: LoadedScenario, out: str | os.PathLike[str] | None = None,
                      confirmed: bool = False) -> None:
    """Refuse a drill whose target is not there or this machine cannot host, or whose evidence
    folder cannot be written."""
    from drillkit.targets import plugin

    spec = loaded.scenario.system
    try:
        plugin(spec.kind).preflight(spec, loaded.path.parent, confirmed=confirmed)
    except InputError as exc:
        raise exc.in_file(str(loaded.path)) from None
    if out is not None:
        check_out(Path(out))


def check_operator(loaded: LoadedScenario, experiment: dict) -> None:
    """Refuse an experiment whose operator step needs a person when nobody is at the drill's
    terminal (drillkit.chaos.gameday): the drill would wait until the step's timeout."""
    from drillkit.chaos.gameday import unattended_problem

    problem = unattended_problem(experiment)
    if problem is not None:
        raise InputError(problem[1], file=str(loaded.experiment_path), field=f"method: {problem[0]}")


def check_out(out: Path) -> None:
    """The evidence folder must be absent or empty, and creatable; it is not created here."""
    shown = str(out)
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise InputError("exists and is not a folder", file=shown, field="--out")
        try:
            empty = not any(out.iterdir())
        except OSError as exc:
            raise EnvironmentProblem(f"cannot read the folder: {exc.strerror or exc}", file=shown,
                                     field="--out") from None
        if not empty:
            raise InputError("exists and is not empty", file=shown, field="--out")
        check_folder_creatable(out, "evidence folder", field="--out", shown=shown)
        return
    ancestor = out.absolute().parent
    while not ancestor.exists() and not ancestor.is_symlink():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise EnvironmentProblem(f"cannot be created: {ancestor} is not a folder", file=shown, field="--out")
    check_folder_creatable(ancestor, "evidence folder", field="--out", shown=shown)
