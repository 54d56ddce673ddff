"""Bad input is refused before anything starts: one `drillkit:` line naming the file, exit 2, no traceback.

A property test mutates a library scenario into malformed ones and validates each in-process
(250 subprocesses would take minutes); a few `drillkit run` subprocesses then prove that the same
refusals happen before the evidence folder, a process or a port exists.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import tempfile
import typing
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from support.scenario_copy import ROOT
from drillkit.cli import main
from drillkit.durations import parse_duration
from drillkit.scenario import Scenario

BASE_FILE = ROOT / "scenarios" / "region-loss.yaml"

REQUIRED = [("name",), ("experiment",), ("load",), ("load", "locustfile")]
LEAVES = {
    ("name",): "name", ("description",): "text", ("experiment",): "path",
    ("system", "kind"): "enum", ("system", "strategy"): "enum", ("system", "routing", "policy"): "enum",
    ("system", "routing", "interval"): "positive_duration", ("system", "routing", "failure_threshold"): "int",
    ("system", "routing", "ttl"): "duration", ("system", "replication", "mode"): "enum",
    ("load", "locustfile"): "path", ("load", "users"): "int", ("load", "warmup"): "duration",
    ("load", "duration"): "positive_duration", ("load", "request_timeout"): "positive_duration",
    ("targets", "rto"): "optional_duration", ("targets", "rpo"): "optional_duration",
    ("targets", "max_lost_writes"): "optional_count", ("targets", "max_corrupt"): "optional_count",
    ("stable",): "duration", ("safeguards", "max_duration"): "positive_duration",
}
NUMERIC = {"int", "duration", "positive_duration", "optional_duration", "optional_count"}
DURATIONS = {"duration", "positive_duration", "optional_duration"}
ENUMS = {"sandbox", "warm-standby", "dns", "origin-group", "manual", "async", "sync"}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _get(data, path):
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def base_scenario() -> dict:
    """region-loss.yaml with every leaf present and its paths absolute, so a copy anywhere is valid."""
    data = yaml.safe_load(BASE_FILE.read_text())
    data["experiment"] = str((BASE_FILE.parent / data["experiment"]).resolve())
    data["load"]["locustfile"] = str((BASE_FILE.parent / data["load"]["locustfile"]).resolve())
    data["system"]["kind"] = "sandbox"
    data["system"]["routing"]["upstream_timeout"] = "2s"
    data["load"]["request_timeout"] = "1s"
    return data


BASE = base_scenario()


def _model_of(annotation):
    """The pydantic model in `annotation` (`Routing`, or `ErrorRateGuard | None`), if any."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def known_keys(model=Scenario, path=()) -> dict[tuple, set[str]]:
    """Allowed keys of every mapping of the schema, read from the models so new fields are known."""
    out = {path: set(model.model_fields)}
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        if sub is not None:
            out.update(known_keys(sub, path + (name,)))
    return out


MAPPINGS = {path: keys for path, keys in known_keys().items() if isinstance(_get(BASE, path) if path else BASE,
                                                                                 dict)}


def _is_duration(text: str) -> bool:
    try:
        parse_duration(text)
        return True
    except ValueError:
        return False


small_scalars = st.one_of(st.integers(-5, 5), st.text(max_size=8), st.booleans(), st.none())
wrong_shapes = st.one_of(st.lists(small_scalars, max_size=3), st.dictionaries(st.text(max_size=5), small_scalars,
                                                                              min_size=1, max_size=3))
garbage = st.text(min_size=1, max_size=30)
bad_durations = st.one_of(
    st.sampled_from(["5 parsecs", "-1s", "1.2.3s", "s", "", "5", "1m30", "ms5", "1h-", "∞s", "5S", "1e3s", "0x10s"]),
    garbage.filter(lambda t: not _is_duration(t)))
negatives = st.one_of(st.integers(max_value=-1), st.floats(max_value=-1e-6, allow_nan=False))
huge = st.one_of(st.integers(min_value=10**16, max_value=10**40), st.just(float("inf")), st.just(float("nan")),
                 st.floats(min_value=1e16, allow_nan=False))


def wrong_value(kind: str) -> st.SearchStrategy:
    """Values that are invalid for a leaf of `kind`, whatever else the scenario holds."""
    options = [wrong_shapes, st.booleans()]
    if not kind.startswith("optional"):
        options.append(st.none())
    if kind in NUMERIC:
        options += [negatives, huge]
    if kind in ("int", "optional_count"):
        options += [st.floats(allow_nan=False, allow_infinity=False), garbage]
    if kind in DURATIONS:
        options.append(bad_durations)
    if kind == "positive_duration":
        options += [st.just(0), st.just("0s"), st.just("0ms")]
    if kind == "enum":
        options += [st.integers(), garbage.filter(lambda t: t not in ENUMS)]
    if kind == "name":
        options += [st.integers(), garbage.filter(lambda t: not NAME.match(t)), st.just("x" * 101)]
    if kind == "path":
        options += [st.integers(), garbage.map(lambda t: f"/no/such/dir/{t}")]
    if kind == "text":
        options.append(st.integers())
    return st.one_of(options)


@st.composite
def data_mutation(draw):
    """One change to the scenario's data that makes it invalid on its own."""
    how = draw(st.sampled_from(["drop", "unknown", "wrong", "reshape", "warmup"]))
    if how == "drop":
        path = draw(st.sampled_from(REQUIRED))
        return ("drop", path, None)
    if how == "unknown":
        where = draw(st.sampled_from(sorted(MAPPINGS)))
        key = draw(st.text(min_size=1, max_size=12).filter(lambda k, w=where: k not in MAPPINGS[w]))
        return ("set", where + (key,), draw(small_scalars | wrong_shapes))
    if how == "wrong":
        path = draw(st.sampled_from(sorted(LEAVES)))
        return ("set", path, draw(wrong_value(LEAVES[path])))
    if how == "reshape":
        path = draw(st.sampled_from([m for m in MAPPINGS if m]))
        return ("set", path, draw(st.one_of(st.lists(small_scalars, max_size=2), garbage, st.integers())))
    return ("warmup", ("load", "warmup"), None)


def apply(data: dict, mutation) -> bool:
    """Apply `mutation` in place; False when its place no longer exists (an earlier one removed it)."""
    op, path, value = mutation
    parent = _get(data, path[:-1]) if path[:-1] else data
    if not isinstance(parent, dict):
        return False
    if op == "drop":
        if path[-1] not in parent:
            return False
        del parent[path[-1]]
    elif op == "set":
        parent[path[-1]] = value
    elif op == "warmup":
        if "duration" not in parent:
            return False
        parent["warmup"] = parent["duration"]
    return True


@st.composite
def malformed_scenario(draw) -> bytes:
    data = copy.deepcopy(BASE)
    mutations = draw(st.lists(data_mutation(), min_size=1, max_size=3))
    assert apply(data, mutations[0])
    for mutation in mutations[1:]:
        apply(data, mutation)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode()
    finish = draw(st.sampled_from(["none", "none", "none", "bytes", "not-utf8", "duplicate", "not-mapping"]))
    if finish == "bytes":
        return draw(st.binary(max_size=200))
    if finish == "not-utf8":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xe2\x82", b"\x80abc"])) + text[at:]
    if finish == "duplicate":
        return text + text.split(b"\n", 1)[0] + b"\n"
    if finish == "not-mapping":
        return draw(st.sampled_from([b"", b"   \n", b"- a\n- b\n", b"just a string\n", b"42\n", b"~\n",
                                     b"[1, 2]\n", b"--- a\n--- b\n"]))
    return text


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("malformed")


def assert_refused(code: int, stdout: str, stderr: str, named: str) -> None:
    lines = stderr.splitlines()
    assert code == 2, (code, stdout, stderr)
    assert len(lines) == 1, stderr
    assert lines[0].startswith("drillkit: "), stderr
    assert named in lines[0], stderr
    assert "Traceback" not in stdout + stderr


def test_library_scenarios_are_valid():
    runner = CliRunner()
    for path in sorted((ROOT / "scenarios").rglob("*.yaml")):
        if path.parent.name == "aws":
            continue   # they name the account's endpoint in the environment: tests/test_aws.py
        result = runner.invoke(main, ["validate", str(path)])
        assert result.exit_code == 0, (path, result.output)


def test_every_shipped_experiment_passes_chaos_validate():
    """chaoslib's own validation (`chaos validate`: schema, and every python provider importable
    with the arguments it is given), in-process for each experiment under experiments/."""
    import json

    from chaoslib.experiment import ensure_experiment_is_valid

    paths = sorted((ROOT / "experiments").rglob("*.json"))
    assert paths
    for path in paths:
        ensure_experiment_is_valid(json.loads(path.read_text()))


def test_the_mutation_base_is_valid(scratch):
    path = scratch / "base.yaml"
    path.write_text(yaml.safe_dump(BASE))
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 0, result.output


def validate_refused(path, named=None):
    """`drillkit validate` in-process (CliRunner), which must refuse `path` in one clear line
    naming `named` (default: the scenario itself)."""
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert not (result.exception and not isinstance(result.exception, SystemExit)), repr(result.exception)
    assert_refused(result.exit_code, result.stdout, result.stderr, str(named or path))
    return result


# Chosen for a busy 2-core machine: no per-example deadline and no "generation is slow" health
# check (neither says anything about drillkit); the `scratch` folder is rewritten by every example.
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow,
                                                                  HealthCheck.large_base_example])
@given(content=malformed_scenario())
def test_malformed_scenarios_are_refused_in_one_line(scratch, content):
    path = scratch / "scenario.yaml"
    path.write_bytes(content)
    validate_refused(path)


@pytest.mark.parametrize("text, expected", [
    ("name: a\nname: b\n", "line 2: not valid YAML: key 'name' is given twice"),
    ("", "the scenario is empty"),
    ("- a\n", "a scenario must be a YAML mapping, not a list"),
    ("name: 2024-13-45\n", "not valid YAML: month must be in 1..12"),
])
def test_messages_say_what_is_wrong(tmp_path, text, expected):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    result = validate_refused(path)
    assert expected in result.stderr


def test_field_and_line_are_named(tmp_path):
    data = copy.deepcopy(BASE)
    data["system"]["routing"]["intervall"] = "1s"
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "intervall" in t)
    result = validate_refused(path)
    assert f"system.routing.intervall (line {line}): unknown key (known: policy, interval" in result.stderr


def test_a_folder_or_a_missing_file_is_refused(tmp_path):
    for target in (tmp_path, tmp_path / "absent.yaml"):
        validate_refused(target)


@pytest.mark.parametrize("experiment, expected", [
    ("{not json", "line 1: not valid JSON"),
    ("[1, 2]", "an experiment must be a JSON object"),
    ('{"title": "t"}', "invalid experiment"),
    ('{"title": "t", "description": "d", "method": [], "configuration": "x"}', "configuration: must be a JSON object"),
])
def test_malformed_experiments_are_refused(tmp_path, experiment, expected):
    exp = tmp_path / "exp.json"
    exp.write_text(experiment)
    data = copy.deepcopy(BASE)
    data["experiment"] = str(exp)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    result = validate_refused(path, named=exp)
    assert expected in result.stderr


def test_an_experiment_with_a_missing_control_or_a_wrong_argument(tmp_path):
    import json

    src = json.loads((ROOT / "experiments" / "ground-truth-outage.json").read_text())
    for change, expected in ((lambda e: e["controls"][0]["provider"].update(module="no.such.control"),
                              "controls[0].provider.module: cannot import control module"),
                             (lambda e: e["rollbacks"][0]["provider"].update(arguments={"bogus": 1}),
                              "argument 'bogus' is not part of the function signature")):
        exp = copy.deepcopy(src)
        change(exp)
        path = tmp_path / "exp.json"
        path.write_text(json.dumps(exp))
        data = copy.deepcopy(BASE)
        data["experiment"] = str(path)
        scenario = tmp_path / "s.yaml"
        scenario.write_text(yaml.safe_dump(data))
        result = validate_refused(scenario, named=path)
        assert expected in result.stderr


def test_usage_mistakes_are_one_line():
    for args in (["run"], ["no-such-command"], ["run", "--no-such-flag", "x.yaml"]):
        result = CliRunner().invoke(main, args)
        assert_refused(result.exit_code, result.stdout, result.stderr, "drillkit")


@pytest.mark.parametrize("current, value", [(1.0, "abc"), (1.0, "nan"), (3, "inf"), (True, "maybe"),
                                            ([1, 2], "x")])
def test_a_var_that_does_not_fit_its_key_is_an_input_error(current, value):
    from drillkit.errors import InputError
    from drillkit.scenario import apply_vars

    with pytest.raises(InputError, match="--var key: "):
        apply_vars({"configuration": {"key": current}}, {"key": value}, "s.yaml")


# -- `drillkit run` refuses before it starts anything -----------------------------------------------


def run_cli(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drillkit.cli", "run", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def preflight_leftovers() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob(".drillkit-preflight-*"))


@pytest.fixture
def refused(tmp_path, no_leftovers):
    """Runs `drillkit run` expecting a refusal; checks the evidence folder was never created."""
    probes_before = preflight_leftovers()

    def check(*args: str, out: Path | None, named: str, **kw) -> subprocess.CompletedProcess:
        out_existed = out is not None and out.exists()
        before = sorted(out.iterdir()) if out_existed and out.is_dir() else None
        proc = run_cli(*args, *(["--out", str(out)] if out is not None else []), **kw)
        assert_refused(proc.returncode, proc.stdout, proc.stderr, named)
        if out is not None:
            if not out_existed:
                assert not out.exists()
            elif before is not None:
                assert sorted(out.iterdir()) == before
        assert preflight_leftovers() == probes_before
        return proc

    return check


def test_run_refuses_a_bad_scenario(tmp_path, refused):
    data = copy.deepcopy(BASE)
    data["load"]["userz"] = 3
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    refused(str(path), out=tmp_path / "out", named="load.userz")


@pytest.mark.parametrize("var, named", [("outage_seconds=abc", "--var outage_seconds: 'abc' is not a number"),
                                        ("no_such_key=1", "--var no_such_key: unknown"),
                                        ("outage_seconds", "--var: 'outage_seconds' is not KEY=VALUE")])
def test_run_refuses_a_bad_var(tmp_path, refused, var, named):
    refused("scenarios/ground-truth-outage.yaml", "--var", var, out=tmp_path / "out", named=named)


def test_run_refuses_missing_postgres_binaries(tmp_path, refused):
    refused("scenarios/ground-truth-outage.yaml", out=tmp_path / "out", named="DRILLKIT_PG_BIN",
            env={"DRILLKIT_PG_BIN": "/nonexistent"})


@pytest.mark.parametrize("mode", [0o777, 0o755], ids=["others-can-write", "another-user-owns"])
def test_run_refuses_a_cache_folder_others_can_write_or_own(tmp_path, refused, mode):
    """The PostgreSQL template is a data directory PostgreSQL runs: a cache folder others can
    write to (0777), or that another user owns, is never used."""
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(mode)
    if mode == 0o755:
        if os.geteuid() != 0:
            pytest.fail("needs root to hand the folder to another user")
        os.chown(cache, 65534, 65534)
    proc = refused("scenarios/ground-truth-outage.yaml", out=tmp_path / "out", named="DRILLKIT_CACHE",
                   env={"DRILLKIT_CACHE": str(cache)})
    assert str(cache) in proc.stderr
    assert list(cache.iterdir()) == []


def test_run_without_out_creates_no_default_folder(tmp_path, refused):
    refused(str(ROOT / "scenarios" / "ground-truth-outage.yaml"), out=None, named="DRILLKIT_PG_BIN",
            cwd=tmp_path, env={"DRILLKIT_PG_BIN": "/nonexistent"})
    assert not (tmp_path / "reports").exists()


def test_run_refuses_an_out_folder_it_cannot_create(tmp_path, refused):
    (tmp_path / "a-file").write_text("")
    refused("scenarios/ground-truth-outage.yaml", out=tmp_path / "a-file" / "out", named="--out")
    refused("scenarios/ground-truth-outage.yaml", out=tmp_path / "a-file", named="--out")


def test_run_refuses_a_non_empty_out_folder(tmp_path, refused):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    refused("scenarios/ground-truth-outage.yaml", out=out, named="--out")
    assert (out / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("change, named, says", [
    (lambda d: d["targets"].update(phases={"promte": "5s"}), "targets.phases.promte",
     "names no phase of region-loss.json (its phases:"),
    (lambda d: d.update(alarms=[{"name": "a", "metric": "replication_lag", "above": "1s"}] * 2), "alarms",
     "alarm a is defined twice"),
    (lambda d: d.update(alarms=[{"name": "a", "metric": "lag", "above": "1s"}]), "alarms.0.metric", "replication_lag"),
    (lambda d: d["targets"].update(rpo_by_store={"tables": "1s"}), "targets.rpo_by_store.tables", "records"),
])
def test_phases_alarms_and_store_targets_are_checked_against_the_experiment(tmp_path, change, named, says):
    data = copy.deepcopy(BASE)
    change(data)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = validate_refused(path)
    assert named in result.stderr and says in result.stderr, result.stderr


def test_run_refuses_a_phase_budget_the_experiment_has_no_phase_for(tmp_path, refused):
    data = copy.deepcopy(BASE)
    data["targets"]["phases"] = {"restore": "5s"}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    refused(str(path), out=tmp_path / "out", named="targets.phases.restore")


def test_time_scale_divides_the_written_durations_once_and_not_the_defaults(tmp_path):
    from drillkit.scenario import load_scenario

    data = copy.deepcopy(BASE)
    data.update(time_scale=60, alarms=[{"name": "lag", "metric": "replication_lag", "above": "5m"},
                                      {"name": "backlog", "metric": "object_backlog", "above": 600}])
    data["targets"] = {"rto": "30m", "phases": {"promote-standby": "10m"}, "rpo_by_store": {"records": "15m"}}
    data["system"]["routing"] = {"policy": "dns", "interval": "30s"}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    s = load_scenario(path).scenario
    assert s.scaled and s.time_scale == 60
    assert (s.targets.rto, s.targets.phases, s.targets.rpo_by_store) == (30.0, {"promote-standby": 10.0},
                                                                         {"records": 15.0})
    assert s.alarms[0].above == 5.0 and s.alarms[1].above == 600        # a count is not a time
    assert s.system.routing.interval == 0.5 and s.system.routing.ttl == 1.0   # the default ttl stays
    assert s.load.duration == parse_duration(data["load"]["duration"])    # drill time
    stored = Scenario.model_validate(s.model_dump(mode="json"), strict=False)
    assert stored.at_drill_scale().targets.rto == 30.0                    # never divided twice


def test_a_scaled_duration_that_postgresql_cannot_take_is_refused(tmp_path):
    data = copy.deepcopy(BASE)
    data["experiment"] = str(ROOT / "experiments/document-processor/backup-restore-region-loss.json")
    data.update(time_scale=60)
    data["system"] = {"kind": "sandbox", "strategy": "backup-restore", "backups": {"archive_timeout": "90s"}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = validate_refused(path)
    assert "system.backups.archive_timeout" in result.stderr and "at time_scale 60" in result.stderr, result.stderr
