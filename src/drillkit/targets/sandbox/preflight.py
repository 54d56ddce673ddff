"""Can this machine host the sandbox? Checked before a drill starts anything (exit 2 otherwise)."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from drillkit.errors import EnvironmentProblem
from drillkit.host import check_folder_creatable


def check_host() -> None:
    _check_postgres()
    _check_cache()
    check_folder_creatable(Path(tempfile.gettempdir()), "sandbox folder", field="TMPDIR")
    _check_loopback_port()


def _check_postgres() -> None:
    from drillkit.targets.sandbox import postgres as pg

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


def _check_cache() -> None:
    """The PostgreSQL template's cache folder is this user's own (pgtemplate)."""
    from drillkit.targets.sandbox import pgtemplate

    pgtemplate.cache_folder()


def _check_loopback_port() -> None:
    from drillkit.net import free_port

    try:
        free_port()
    except OSError as exc:
        raise EnvironmentProblem(f"cannot bind a free port on 127.0.0.1: {exc.strerror or exc}",
                                 file="network") from None
