"""Control mappings (drillkit-controls/1): which controls ask for what a drill can evidence.

drillkit ships one (controls.yaml beside this module); a scenario may name its own
(`readiness.controls`), which the loader checks and the drill keeps in its evidence folder. The
report (drillkit.report.controls) lists a control as evidenced only when every fact it `needs` is
shown by the evidence.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drillkit.errors import InputError
from drillkit.yamlfile import load_yaml

Fact = Literal["recovery_test", "objectives_judged", "data_loss_counted", "restore_test"]
FACTS: tuple[str, ...] = Fact.__args__  # type: ignore[attr-defined]
EVIDENCE_FILE = "controls.yaml"
"""The mapping a drill used, kept in its evidence folder."""


class Control(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=200)
    framework: str = ""
    asks: str = Field(min_length=1)
    needs: list[Fact] = Field(min_length=1)


class Mapping(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["drillkit-controls/1"]
    controls: list[Control]


def shipped_path() -> Path:
    return Path(str(files("drillkit.scenario") / "controls.yaml"))


def load_mapping(path: str | os.PathLike[str] | None = None) -> Mapping:
    """A control mapping, validated (one clear line naming the file and field when it is wrong)."""
    path = Path(path) if path is not None else shipped_path()
    data = load_yaml(path, "control mapping")
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InputError(err["msg"], file=str(path), field=where or None) from None
