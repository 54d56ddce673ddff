"""Reading a scenario (and its experiment and workload mapping) into drillkit.scenario.schema.

Loading validates everything before anything starts; every error names the file and the field.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from drillkit.errors import InputError
from drillkit.scenario.controls import load_mapping
from drillkit.scenario.workload import Workload
from drillkit.scenario.schema import UNION_TAGS, Scenario
from drillkit.yamlfile import parse_yaml as _parse_yaml
from drillkit.yamlfile import read_text as _read_text

MAPPED_LOCUSTFILE = Path(__file__).resolve().parent.parent / "load" / "locustfile.py"

class LoadedScenario(BaseModel):
    """A validated scenario with its file paths resolved against the scenario's folder."""

    path: Path
    scenario: Scenario
    experiment_path: Path
    locustfile_path: Path
    raw: dict[str, Any]
    workload_path: Path | None = None
    workload: Workload | None = None
    controls_path: Path | None = None
    """`readiness.controls`, resolved and checked (drillkit.scenario.controls)."""

    @property
    def name(self) -> str:
        return self.scenario.name


def _field_of(loc: tuple[Any, ...]) -> str:
    """`load.users`; a key that is not a plain word is quoted, so a newline in it cannot split the line."""
    plain = re.compile(r"^[\w-]+$")
    return ".".join(str(p) if isinstance(p, int) or plain.match(str(p)) else repr(p) for p in loc) or "(top level)"


def _line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line number of a (possibly nested) key in the YAML text."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
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


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation can hold: itself, an Optional's, a (discriminated) union's."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    args = get_args(annotation)
    if get_origin(annotation) is Union or (args and get_origin(annotation) is not None):
        return [m for a in args for m in _models_in(a)]
    return []


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model at an error's location, following union tags (`system.external.audit.postgres`)."""
    models: list[type[BaseModel]] = [Scenario]
    for part in loc:
        if str(part) in UNION_TAGS:
            tagged = [m for m in models if _tag_of(m) == str(part)]
            models = tagged or models
            continue
        fields = [m.model_fields[str(part)] for m in models if str(part) in m.model_fields]
        models = [m for f in fields for m in _models_in(f.annotation)]
    return models[0] if len(models) == 1 else None


def _tag_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("kind")
    args = get_args(field.annotation) if field else ()
    return str(args[0]) if args else None


def _user_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The error location as keys of the file: without pydantic's union tags and function names."""
    out = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and part.startswith("function-"):
            continue
        if isinstance(part, str) and part in UNION_TAGS and i > 0 and loc[i - 1] in ("system", "audit"):
            continue
        out.append(part)
    return tuple(out)


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(tuple(err["loc"][:-1]))
        known = ", ".join(parent.model_fields) if parent else ""
        return f"unknown key (known: {known})" if known else "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"unknown kind {err.get('input')!r} (known: {err.get('ctx', {}).get('expected_tags', '')})"
    if kind == "union_tag_not_found":
        return "required key kind is missing"
    if kind in ("model_type", "dict_type"):
        return f"must be a mapping, not a {_yaml_kind(err.get('input'))}"
    msg = err["msg"].removeprefix("Value error, ")
    if kind.endswith("_type") and "input" in err:
        msg += f", not a {_yaml_kind(err['input'])}"
    return msg


def _invalid(exc: ValidationError, text: str, shown: str, list_known: bool = True) -> InputError:
    """pydantic's first error as one line naming the file, the key path and its line."""
    err = exc.errors()[0]
    loc = _user_loc(tuple(err["loc"]))
    line = _line_of(text, loc)
    field = _field_of(loc) + (f" (line {line})" if line else "")
    message = "unknown key" if err["type"] == "extra_forbidden" and not list_known else _message(err)
    return InputError(message, file=shown, field=field)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: Any, loc: tuple[Any, ...], shown: str) -> Any:
    """`${NAME}` in a string under `system` is the environment variable NAME: the same scenario
    drills staging, production or the emulated account by what the shell exports. An unset one
    is an input error naming the field."""
    if isinstance(value, dict):
        return {k: _expand_env(v, (*loc, k), shown) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, (*loc, i), shown) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise InputError(f"${{{name}}} is not set in the environment", file=shown, field=_field_of(loc))
        return os.environ[name]

    return _ENV_REF.sub(lookup, value)


def load_scenario(path: str | Path) -> LoadedScenario:
    """Read, validate and resolve a scenario; raise InputError naming file, field and line."""
    path = Path(path)
    shown = str(path)
    text = _read_text(path, "scenario")
    raw = _parse_yaml(text, shown)
    if raw is None:
        raise InputError("the scenario is empty", file=shown)
    if not isinstance(raw, dict):
        raise InputError(f"a scenario must be a YAML mapping, not a {_yaml_kind(raw)}", file=shown)
    if isinstance(raw.get("system"), dict):
        raw = {**raw, "system": _expand_env(raw["system"], ("system",), shown)}
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc, text, shown) from None
    try:
        scenario = scenario.at_drill_scale()
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InputError(f"at time_scale {scenario.time_scale:g}: {err['msg'].removeprefix('Value error, ')}",
                         file=shown, field=_field_of(_user_loc(tuple(err["loc"])))) from None
    except RecursionError:
        raise InputError("a value refers to itself (YAML alias loop)", file=shown) from None
    base = path.resolve().parent
    experiment = (base / scenario.experiment).resolve()
    if not experiment.is_file():
        raise InputError(f"no such file {experiment}", file=shown, field="experiment")
    workload_path = workload = None
    if scenario.load.workload is not None:
        workload_path = (base / scenario.load.workload).resolve()
        workload = load_workload(workload_path, shown)
        _check_object_audit(scenario, workload, shown)
        locustfile = MAPPED_LOCUSTFILE
    else:
        locustfile = (base / scenario.load.locustfile).resolve()
        if not locustfile.is_file():
            raise InputError(f"no such file {locustfile}", file=shown, field="load.locustfile")
        _check_locustfile(locustfile, shown)
    controls = None
    if scenario.readiness.controls is not None:
        controls = (base / scenario.readiness.controls).resolve()
        if not controls.is_file():
            raise InputError(f"no such file {controls}", file=shown, field="readiness.controls")
        load_mapping(controls)
    return LoadedScenario(path=path.resolve(), scenario=scenario, experiment_path=experiment,
                          locustfile_path=locustfile, raw=raw, workload_path=workload_path, workload=workload,
                          controls_path=controls)


def load_workload(path: Path, scenario_file: str) -> Workload:
    """A workload mapping file (YAML); its errors name the mapping file and its field."""
    if not path.is_file():
        raise InputError(f"no such file {path}", file=scenario_file, field="load.workload")
    shown = str(path)
    text = _read_text(path, "workload mapping")
    raw = _parse_yaml(text, shown)
    if not isinstance(raw, dict):
        raise InputError(f"a workload mapping must be a YAML mapping, not a {_yaml_kind(raw)}", file=shown)
    try:
        return Workload.model_validate(raw)
    except ValidationError as exc:
        raise _invalid(exc, text, shown, list_known=False) from None


def _check_object_audit(scenario: Scenario, workload: Workload, shown: str) -> None:
    """Objects written with nothing to audit them would all count as lost: refuse before anything starts."""
    audited = "object_audit" in type(scenario.system).model_fields  # a system drillkit did not build
    if {"obj_write", "obj_read"} & set(workload.tasks()) and audited and scenario.system.object_audit is None:
        raise InputError("the workload mapping writes objects (obj_write) but system.object_audit is not set: "
                         "without it every object would count as lost", file=shown, field="system.object_audit")


def _yaml_kind(value: Any) -> str:
    kinds = {list: "list", dict: "mapping", str: "string", int: "number", float: "number", bool: "boolean",
             type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _check_locustfile(locustfile: Path, scenario_file: str) -> None:
    """Locust would only fail on a broken locustfile once the system is up: compile it now."""
    field = "load.locustfile"
    if locustfile.suffix != ".py":
        raise InputError(f"{locustfile} is not a Python file (.py)", file=scenario_file, field=field)
    try:
        source = _read_text(locustfile, "locustfile")
        compile(source, str(locustfile), "exec")
    except InputError as exc:
        raise InputError(str(exc), file=scenario_file, field=field) from None
    except (SyntaxError, ValueError) as exc:
        where = f" line {exc.lineno}" if getattr(exc, "lineno", None) else ""
        raise InputError(f"{locustfile}{where}: {getattr(exc, 'msg', exc)}", file=scenario_file,
                         field=field) from None


_EXPERIMENT_SHAPE: dict[str, type | tuple[type, ...]] = {
    "title": str, "description": str, "tags": list, "configuration": dict, "secrets": dict,
    "controls": list, "steady-state-hypothesis": dict, "method": list, "rollbacks": list,
}


def load_experiment(path: Path, scenario_file: str | None = None) -> dict[str, Any]:
    """Read a Chaos Toolkit experiment and validate it with chaoslib, plus what chaoslib lets pass."""
    shown = str(path)
    text = _read_text(path, "experiment")
    try:
        experiment = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg}", file=shown, field=f"line {exc.lineno}") from None
    except RecursionError:
        raise InputError("not valid JSON: nested too deeply", file=shown) from None
    if not isinstance(experiment, dict):
        raise InputError(f"an experiment must be a JSON object, not {type(experiment).__name__}", file=shown)
    for key, kind in _EXPERIMENT_SHAPE.items():
        if key in experiment and not isinstance(experiment[key], kind):
            raise InputError(f"must be a JSON {'object' if kind is dict else 'array' if kind is list else 'string'}",
                             file=shown, field=key)
    _validate_with_chaoslib(experiment, shown)
    _check_controls(experiment, shown)
    _check_marks(experiment, shown)
    return experiment


MARK_KEYS = {"fault": str, "clears": str, "at": str, "precondition": bool, "phase": str}


def check_fit(loaded: LoadedScenario, experiment: dict[str, Any]) -> None:
    """What the scenario says about its experiment holds: each phase budget names a phase the
    experiment has (an activity's name, or a `phase` its drillkit mark names), and no fault takes a
    parameter from an unset variable. What a kind of system requires of its experiment (the
    sandbox's strategy rules) is its target plug-in's: drillkit.targets.check_fit runs both."""
    _check_fault_variables(experiment, str(loaded.experiment_path))
    known = []
    for section in ("method", "rollbacks"):
        for activity in experiment.get(section) or []:
            if isinstance(activity, dict):
                mark = activity.get("drillkit") if isinstance(activity.get("drillkit"), dict) else {}
                known += [str(mark["phase"])] if mark.get("phase") else [str(activity.get("name"))]
    for phase in loaded.scenario.targets.phases:
        if phase not in known:
            raise InputError(f"names no phase of {loaded.experiment_path.name} (its phases: "
                             f"{', '.join(dict.fromkeys(known)) or 'none'})", file=str(loaded.path),
                             field=f"targets.phases.{phase}")


PROCESS_FAULTS_MODULE = "drillkit.chaos.process"
_VAR_REF = re.compile(r"\$\{([^}]+)\}")


def _check_fault_variables(experiment: dict[str, Any], shown: str) -> None:
    """No default kills: a fault (an activity marked `fault`/`clears`, or a drillkit.chaos.process
    action) whose provider takes `${name}` from a configuration key that has no value (an `env`
    reference to an unset or empty variable with no default, or no such key at all) is refused:
    chaoslib would pass the text on (`kill -KILL ${pid}`) or an empty value (`kill -KILL 0`)."""
    config = experiment.get("configuration") if isinstance(experiment.get("configuration"), dict) else {}
    secrets = experiment.get("secrets") if isinstance(experiment.get("secrets"), dict) else {}
    secret_names = {n for scope in secrets.values() if isinstance(scope, dict) for n in scope}
    for section in ("method", "rollbacks"):
        for i, activity in enumerate(experiment.get(section) or []):
            if not isinstance(activity, dict) or not isinstance(activity.get("provider"), dict):
                continue
            provider = activity["provider"]
            mark = activity.get("drillkit") if isinstance(activity.get("drillkit"), dict) else {}
            if not ({"fault", "clears"} & set(mark)) and provider.get("module") != PROCESS_FAULTS_MODULE:
                continue
            for key in ("path", "url", "arguments", "headers"):
                for name in _references(provider.get(key)):
                    why = None if name in secret_names and name not in config else _unset(config, name)
                    if why:
                        raise InputError(f"the fault {activity.get('name')!r} takes ${{{name}}}, {why}: refused, "
                                         "a fault never runs on a default target", file=shown,
                                         field=f"{section}[{i}].provider.{key}")


def _references(value: Any) -> list[str]:
    if isinstance(value, str):
        return _VAR_REF.findall(value)
    if isinstance(value, dict):
        return [n for v in value.values() for n in _references(v)]
    if isinstance(value, list):
        return [n for v in value for n in _references(v)]
    return []


def _unset(config: dict[str, Any], name: str) -> str | None:
    """Why the configuration key `name` has no value at run time, or None when it has one."""
    if name not in config:
        return "which the experiment's configuration does not define"
    value = config[name]
    if isinstance(value, dict) and value.get("type") == "env":
        var = value.get("key")
        if os.environ.get(str(var)) not in (None, ""):
            return None
        if value.get("default") not in (None, ""):
            return None
        return f"from environment variable {var}, which is not set (and has no default)"
    if value is None or value == "":
        return "which is empty in the experiment's configuration"
    return None


def _check_marks(experiment: dict[str, Any], shown: str) -> None:
    """An activity's `drillkit` key (drillkit.chaos.control) marks it as the fault or its clearing."""
    for section in ("method", "rollbacks"):
        for i, activity in enumerate(experiment.get(section) or []):
            if not isinstance(activity, dict) or "drillkit" not in activity:
                continue
            field = f"{section}[{i}].drillkit"
            mark = activity["drillkit"]
            if not isinstance(mark, dict) or not ({"fault", "clears", "phase"} & set(mark)):
                raise InputError('must be an object with "fault" or "clears" (the fault\'s name), or "phase"',
                                 file=shown, field=field)
            for key, value in mark.items():
                kind = MARK_KEYS.get(key)
                if kind is None:
                    raise InputError(f"unknown key (known: {', '.join(MARK_KEYS)})", file=shown,
                                     field=f"{field}.{key}")
                if not isinstance(value, kind) or (kind is str and not value):
                    raise InputError(f"must be a {'boolean' if kind is bool else 'non-empty string'}", file=shown,
                                     field=f"{field}.{key}")
            if mark.get("at", "end") not in ("start", "end"):
                raise InputError('must be "start" or "end"', file=shown, field=f"{field}.at")


def _validate_with_chaoslib(experiment: dict[str, Any], shown: str) -> None:
    """chaoslib logs its findings and raises on the first; keep its log off the user's terminal."""
    import logging

    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid

    logger = logging.getLogger("chaostoolkit")
    quiet = logging.NullHandler()
    saved = logger.propagate
    logger.addHandler(quiet)
    logger.propagate = False
    try:
        ensure_experiment_is_valid(experiment)
    except ChaosException as exc:
        raise InputError(f"invalid experiment: {str(exc).strip().splitlines()[0]}", file=shown) from None
    except Exception as exc:  # chaoslib assumes a well-formed document and can crash on others
        raise InputError(f"invalid experiment: {type(exc).__name__}: {exc}", file=shown) from None
    finally:
        logger.removeHandler(quiet)
        logger.propagate = saved


def _check_controls(experiment: dict[str, Any], shown: str) -> None:
    """chaoslib only warns about a control it cannot import and runs on without it; drillkit's
    event log comes from a control, so a missing one would silently empty the evidence."""
    for i, control in enumerate(experiment.get("controls") or []):
        provider = control.get("provider") if isinstance(control, dict) else None
        if not isinstance(provider, dict) or provider.get("type") != "python":
            continue
        module = provider.get("module")
        try:
            found = isinstance(module, str) and importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise InputError(f"cannot import control module {module!r}", file=shown,
                             field=f"controls[{i}].provider.module")


RESERVED_VARS = ("drillkit_sandbox",)


def apply_vars(experiment: dict[str, Any], variables: dict[str, str], scenario_file: str) -> dict[str, Any]:
    """Override experiment configuration keys, as `chaos run --var KEY=VALUE` does."""
    config = experiment.setdefault("configuration", {})
    for key, value in variables.items():
        field = f"--var {key}"
        if key in RESERVED_VARS:
            raise InputError("set by drillkit itself; it cannot be overridden", file=scenario_file, field=field)
        if key not in config:
            known = ", ".join(k for k in sorted(config) if k not in RESERVED_VARS) or "none"
            raise InputError(f"unknown experiment configuration key (known: {known})",
                             file=scenario_file, field=field)
        try:
            config[key] = _coerce_like(config[key], value)
        except ValueError as exc:
            raise InputError(str(exc), file=scenario_file, field=field) from None
    return experiment


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _coerce_like(current: Any, value: str) -> Any:
    """`value` as the type of the key's current value; ValueError says what was expected."""
    if isinstance(current, bool):
        if value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"{value!r} is not a boolean (true or false)")
    if isinstance(current, (int, float)):
        try:
            number = int(value) if isinstance(current, int) and value.strip().lstrip("+-").isdigit() else float(value)
        except (ValueError, OverflowError):
            raise ValueError(f"{value!r} is not a number") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise ValueError(f"{value!r} is not a finite number")
        return number
    if isinstance(current, (list, dict)) and not _is_reference(current):
        raise ValueError(f"the key holds a {type(current).__name__}; --var sets only single values")
    return value


def _is_reference(value: Any) -> bool:
    """A Chaos Toolkit configuration reference (`{"type": "env", "key": ...}`) that --var replaces."""
    return isinstance(value, dict) and value.get("type") in ("env", "vault")
