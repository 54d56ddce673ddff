"""Checks of the machine and the output folder, made before a drill starts anything.

Each failure is an EnvironmentProblem (exit 2) and leaves nothing behind: no folder is created,
no process started, no port held. Sandbox.up repeats some of these checks; doing them here first
means a missing binary is reported before the evidence folder exists.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from drillkit.errors import EnvironmentProblem, InputError
from drillkit.scenario import Scenario


def check_environment(scenario: Scenario, out: str | os.PathLike[str] | None = None) -> None:
    """Refuse a drill this machine cannot host, or whose evidence folder cannot be written."""
    if scenario.system.kind == "sandbox":
        _check_postgres()
        _check_folder_creatable(Path(tempfile.gettempdir()), "sandbox folder", field="TMPDIR")
        _check_loopback_port()
    if out is not None:
        check_out(Path(out))


def _check_postgres() -> None:
    from drillkit.sandbox import postgres as pg

    configured = os.environ.get("DRILLKIT_PG_BIN")
    try:
        with warnings.catch_warnings():  # pgserver warns on import when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            pg.find_binaries()
    except EnvironmentProblem:
        if configured:
            raise EnvironmentProblem(f"no usable PostgreSQL binaries in {configured} "
                                     f"(needs {', '.join(pg.NEEDED_TOOLS)})", file="DRILLKIT_PG_BIN") from None
        raise EnvironmentProblem("no PostgreSQL binaries found (pg_ctl on PATH, /usr/lib/postgresql/*/bin, "
                                 "the pgserver wheel); set DRILLKIT_PG_BIN to a bin folder",
                                 file="PostgreSQL") from None
    except OSError as exc:
        raise EnvironmentProblem(f"PostgreSQL binaries do not run: {exc.strerror or exc}",
                                 file=configured and "DRILLKIT_PG_BIN" or "PostgreSQL") from None
    try:
        pg.RunAs.for_postgres()
    except EnvironmentProblem as exc:
        raise EnvironmentProblem(str(exc).removeprefix("DRILLKIT_PG_USER: "), file="DRILLKIT_PG_USER") from None


def _check_loopback_port() -> None:
    from drillkit.sandbox.net import free_port

    try:
        free_port()
    except OSError as exc:
        raise EnvironmentProblem(f"cannot bind a free port on 127.0.0.1: {exc.strerror or exc}",
                                 file="network") from None


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
        _check_folder_creatable(out, "evidence folder", field="--out", shown=shown)
        return
    ancestor = out.absolute().parent
    while not ancestor.exists() and not ancestor.is_symlink():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise EnvironmentProblem(f"cannot be created: {ancestor} is not a folder", file=shown, field="--out")
    _check_folder_creatable(ancestor, "evidence folder", field="--out", shown=shown)


def _check_folder_creatable(where: Path, what: str, field: str, shown: str | None = None) -> None:
    """Create and remove a folder in `where`: the only test that holds for root and read-only mounts."""
    try:
        probe = tempfile.mkdtemp(prefix=".drillkit-preflight-", dir=where)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot create the {what} in {where}: {exc.strerror or exc}",
                                 file=shown or str(where), field=field) from None
    os.rmdir(probe)
