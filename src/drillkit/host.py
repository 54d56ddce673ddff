"""What this machine offers a drill, checked the same way by every stage's preflight."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from drillkit.errors import EnvironmentProblem


def check_folder_creatable(where: Path, what: str, field: str, shown: str | None = None) -> None:
    """Create and remove a folder in `where`: the only test that holds for root and read-only mounts."""
    try:
        probe = tempfile.mkdtemp(prefix=".drillkit-preflight-", dir=where)
    except OSError as exc:
        raise EnvironmentProblem(f"cannot create the {what} in {where}: {exc.strerror or exc}",
                                 file=shown or str(where), field=field) from None
    os.rmdir(probe)
