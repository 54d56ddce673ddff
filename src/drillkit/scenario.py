"""The scenario: what to drill, on which system, under which load, against which targets.

Loading validates everything before anything starts; every error names the file and the field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from drillkit.durations import parse_duration
from drillkit.errors import InputError


def _duration(value: Any) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


Duration = Annotated[float, BeforeValidator(_duration)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Routing(Strict):
    policy: Literal["dns", "origin-group", "manual"] = "dns"
    interval: Duration = 0.5
    failure_threshold: int = Field(3, ge=1, le=100)
    ttl: Duration = 1.0
    upstream_timeout: Duration = 2.0


class Replication(Strict):
    mode: Literal["async", "sync"] = "async"


class System(Strict):
    kind: Literal["sandbox"] = "sandbox"
    strategy: Literal["warm-standby"] = "warm-standby"
    routing: Routing = Routing()
    replication: Replication = Replication()


class Load(Strict):
    locustfile: str
    users: int = Field(10, ge=1, le=500)
    spawn_rate: float | None = Field(None, gt=0)
    warmup: Duration = 3.0
    duration: Duration = 30.0
    request_timeout: Duration = 1.0
    cooldown: Duration | None = None
    canary: Duration | None = 0.02


class Targets(Strict):
    rto: Duration | None = None
    rto_write: Duration | None = None
    rto_read: Duration | None = None
    rpo: Duration | None = None
    max_lost_writes: int | None = Field(None, ge=0)
    max_corrupt: int | None = Field(None, ge=0)
    max_unexpected: int | None = Field(None, ge=0)
    min_availability: float | None = Field(None, ge=0, le=1)
    max_replication_lag: Duration | None = None


class ErrorRateGuard(Strict):
    above: float = Field(gt=0, lt=1)
    sustained: Duration = 3.0


class Safeguards(Strict):
    max_duration: Duration = 120.0
    max_error_rate: ErrorRateGuard | None = None
    expected_outage: Duration | None = None
    max_lost_writes: int | None = Field(None, ge=0)


class Scenario(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    experiment: str
    system: System = System()
    load: Load
    targets: Targets = Targets()
    stable: Duration = 2.0
    safeguards: Safeguards = Safeguards()
    configuration: dict[str, Any] = Field(default_factory=dict)

    @field_validator("load")
    @classmethod
    def _warmup_inside_duration(cls, load: Load) -> Load:
        if load.warmup >= load.duration:
            raise ValueError("warmup must be shorter than duration")
        return load


class LoadedScenario(BaseModel):
    """A validated scenario with its file paths resolved against the scenario's folder."""

    path: Path
    scenario: Scenario
    experiment_path: Path
    locustfile_path: Path
    raw: dict[str, Any]

    @property
    def name(self) -> str:
        return self.scenario.name


def _field_of(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number of a (possibly nested) key in the YAML text."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == str(part)), None)
            if match is None:
                key = next((k for k, _ in node.value if k.value == str(part)), None)
                return key.start_mark.line + 1 if key is not None else node.start_mark.line + 1
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node.start_mark.line + 1 if node is not None else None


def load_scenario(path: str | Path) -> LoadedScenario:
    """Read, validate and resolve a scenario; raise InputError naming file, field and line."""
    path = Path(path)
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("no such scenario file", file=shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read scenario: {exc}", file=shown) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        raise InputError(f"not valid YAML: {getattr(exc, 'problem', exc)}", file=shown, field=where) from None
    if not isinstance(raw, dict):
        raise InputError("a scenario must be a YAML mapping", file=shown)
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        line = _line_of(text, loc)
        field = _field_of(loc) + (f" (line {line})" if line else "")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        raise InputError(msg, file=shown, field=field) from None
    base = path.resolve().parent
    experiment = (base / scenario.experiment).resolve()
    locustfile = (base / scenario.load.locustfile).resolve()
    if not experiment.is_file():
        raise InputError(f"no such file {experiment}", file=shown, field="experiment")
    if not locustfile.is_file():
        raise InputError(f"no such file {locustfile}", file=shown, field="load.locustfile")
    return LoadedScenario(path=path.resolve(), scenario=scenario, experiment_path=experiment,
                          locustfile_path=locustfile, raw=raw)


def load_experiment(path: Path, scenario_file: str | None = None) -> dict[str, Any]:
    """Read a Chaos Toolkit experiment and validate it with chaoslib."""
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid

    shown = str(path)
    try:
        experiment = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg} (line {exc.lineno})", file=shown) from None
    except OSError as exc:
        raise InputError(f"cannot read experiment: {exc}", file=shown) from None
    if not isinstance(experiment, dict):
        raise InputError("an experiment must be a JSON object", file=shown)
    try:
        ensure_experiment_is_valid(experiment)
    except ChaosException as exc:
        raise InputError(f"invalid experiment: {str(exc).splitlines()[0]}", file=shown) from None
    return experiment


def apply_vars(experiment: dict[str, Any], variables: dict[str, str], scenario_file: str) -> dict[str, Any]:
    """Override experiment configuration keys, as `chaos run --var KEY=VALUE` does."""
    config = experiment.setdefault("configuration", {})
    for key, value in variables.items():
        if key not in config:
            known = ", ".join(sorted(config)) or "none"
            raise InputError(f"unknown experiment configuration key {key!r} (known: {known})",
                             file=scenario_file, field="--var")
        current = config[key]
        config[key] = _coerce_like(current, value)
    return experiment


def _coerce_like(current: Any, value: str) -> Any:
    if isinstance(current, bool):
        return value.lower() in ("1", "true", "yes", "on")
    if isinstance(current, int):
        try:
            return int(value)
        except ValueError:
            return float(value)
    if isinstance(current, float):
        return float(value)
    return value
