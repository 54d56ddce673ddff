"""drillkit's Chaos Toolkit extension: faults, runbook actions and probes for `drillkit.chaos.*` providers.

Every provider takes the running system from the experiment configuration key
`drillkit_sandbox` (in experiments: `{"type": "env", "key": "DRILLKIT_SANDBOX"}`), the path of
the sandbox state file.
"""

from __future__ import annotations

import os
from typing import Any

from drillkit.errors import InputError
from drillkit.system import System, attach

CONFIG_KEY = "drillkit_sandbox"
ENV_KEY = "DRILLKIT_SANDBOX"


def system_from(configuration: dict[str, Any] | None) -> System:
    path = (configuration or {}).get(CONFIG_KEY) or os.environ.get(ENV_KEY)
    if not path:
        raise InputError(f"no system to act on: set configuration {CONFIG_KEY!r} or ${ENV_KEY} "
                         "(run `drillkit sandbox up` first)")
    return attach(path)
