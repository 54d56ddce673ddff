"""Property-based fuzzing of the command line (issue 27): `validate` on mutated scenarios,
`measure`, `verify`, `report` and `history` on mutated evidence folders, `sandbox down` on mutated
pointer and state files. Whatever the input: never a traceback, never an internal error, an exit
code the command documents (docs/exit-codes.md), and nothing outside the folder it was given
touched (a sibling folder and the parent's listing are compared before and after).

The commands run in process through click's CliRunner (a subprocess costs ~1 s of imports per
call); tests/test_hostile_input.py runs the same cases as subprocesses.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.scenario_copy import ROOT

STORED = Path(__file__).parent / "data" / "stored-drills.tar.gz"
DRILL = "ground-truth-outage"

EXITS = {
    "validate": {0, 2},
    "measure": {0, 1, 2, 3},
    "verify": {0, 1, 2, 4},
    "report": {0, 1, 2},
    "history": {0, 2},
    "sandbox down": {0, 2},
}
"""The exit codes each command documents. 3 for measure is a recomputed `aborted` verdict; an
internal error (also 3) is caught by its `internal error` line."""

DEEP = int(os.environ.get("DRILLKIT_FUZZ_EXAMPLES", "0"))
"""A deeper, random search: DRILLKIT_FUZZ_EXAMPLES=500 pytest tests/test_fuzz_cli.py. By default
each test runs a fixed (derandomized) set, so CI is repeatable and about half a minute."""


def fuzz(examples: int):
    return settings(max_examples=DEEP or examples, deadline=None, derandomize=not DEEP, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def snapshot(path: Path) -> dict[str, str]:
    """Every entry under `path` with its content hash (or its kind)."""
    out = {}
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else \
            ("link" if p.is_symlink() else "dir")
    return out


class Case:
    """A scratch area: `given/` is what the command may change, `sibling/` and the area's own
    listing must come out as they went in. The command's working folder is inside `given/`, so a
    relative path in a mutated file cannot reach out either."""

    def __init__(self, area: Path):
        if area.exists():
            shutil.rmtree(area)
        self.area = area
        self.given = area / "given"
        self.sibling = area / "sibling"
        self.given.mkdir(parents=True)
        self.sibling.mkdir()
        (self.sibling / "keep.json").write_text('{"kind": "sandbox"}')
        (self.sibling / "summary.json").write_text('{"verdict": "pass"}')

    def run(self, command: str, *args: str, env: dict | None = None) -> None:
        before, listing = snapshot(self.sibling), sorted(os.listdir(self.area))
        cwd = os.getcwd()
        os.chdir(self.given if self.given.exists() else self.area)
        try:
            result = CliRunner().invoke(_main(), [*command.split(), *args], env=env, catch_exceptions=True)
        finally:
            os.chdir(cwd)
        shown = f"drillkit {command} {' '.join(args)} -> {result.exit_code}\n{result.stdout}\n{result.stderr}"
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            f"{shown}\nraised {result.exception!r}"
        assert "Traceback" not in result.stdout + result.stderr, shown
        assert "internal error" not in result.stderr, shown
        assert result.exit_code in EXITS[command], shown
        if result.exit_code == 2:
            assert len(result.stderr.strip().splitlines()) == 1, shown
        assert snapshot(self.sibling) == before, f"{shown}\nthe sibling folder changed"
        assert sorted(os.listdir(self.area)) == listing, f"{shown}\nthe parent folder changed"


def _main():
    from drillkit.cli import main

    return main


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("stored")
    with tarfile.open(STORED) as tar:
        tar.extractall(where, filter="data")
    return where / DRILL


@pytest.fixture(scope="module")
def area(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "case"


# --- values ----------------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                    st.sampled_from(["1s", "-5s", "0ms", "1e309s", "${HOME}", "${NO_SUCH_VAR_X}", "&a", "*a",
                                     "sandbox", "external", "aws", "dns", "warm-standby"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
junk = st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.sampled_from([b"\xff\xfe\x00", b"[]", b"{}", b"null", b"\"x\"", b"[1, 2]",
                                  b"a: &a [*a]", b"{\"t\": 1e999}", b"\n\n\n", b"\x00" * 64]))


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, (*prefix, i))


def _set(doc, path, value):
    if not path:
        return value
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return doc


def _drop(doc, path):
    if not path:
        return doc
    target = doc
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return doc


@st.composite
def mutated_yaml(draw, base: dict) -> bytes:
    doc = json.loads(json.dumps(base))
    how = draw(st.sampled_from(["set", "drop", "add", "bytes", "truncate", "alias"]))
    paths = list(_paths(doc))
    if how == "set":
        doc = _set(doc, draw(st.sampled_from(paths)), draw(values))
    elif how == "drop":
        doc = _drop(doc, draw(st.sampled_from(paths[1:])))
    elif how == "add":
        parent = draw(st.sampled_from([p for p in paths if isinstance(_get(doc, p), dict)]))
        _get(doc, parent)[draw(st.text(min_size=1, max_size=10))] = draw(values)
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode()
    if how == "bytes":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(junk) + text[at:]
    elif how == "truncate":
        text = text[:draw(st.integers(0, len(text)))]
    elif how == "alias":
        at = text.index(b"system:\n") + len(b"system:\n")
        text = text[:at] + b"  x: &x [" + b", ".join([b"*y"] * 0) + b"1]\n  y: [*x, *x, *x]\n" + text[at:]
    return text


def _get(doc, path):
    for part in path:
        doc = doc[part]
    return doc


# --- validate --------------------------------------------------------------------------------

SCENARIO = yaml.safe_load((ROOT / "scenarios" / "region-loss.yaml").read_text())
SCENARIO["experiment"] = str(ROOT / "experiments" / "region-loss.json")
SCENARIO["load"]["locustfile"] = str(ROOT / "loadtests" / "dr_workload.py")


@fuzz(150)
@given(text=mutated_yaml(SCENARIO))
def test_validate_on_mutated_scenarios(area, text):
    case = Case(area)
    path = case.given / "scenario.yaml"
    path.write_bytes(text)
    case.run("validate", str(path))


# --- measure, verify, report, history on mutated evidence ------------------------------------

FILES = ["summary.json", "events.jsonl", "final_state.jsonl", "scenario.yaml", "lag.csv", "journal.json",
         "provenance.json", "audit.json", "manifest.json", "requests/canary.jsonl"]


@st.composite
def evidence_mutation(draw):
    name = draw(st.sampled_from(FILES))
    how = draw(st.sampled_from(["replace", "insert", "truncate", "delete", "json", "line"]))
    return name, how, draw(junk), draw(values), draw(st.floats(0, 1)), draw(st.booleans())


def mutate(folder: Path, mutation) -> None:
    name, how, raw, value, where, sealed = mutation
    if sealed:
        from drillkit.evidence.manifest import write_manifest

        write_manifest(folder, key=None)
    path = folder / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    data = path.read_bytes()
    at = int(where * len(data))
    if how == "replace":
        path.write_bytes(raw)
    elif how == "insert":
        path.write_bytes(data[:at] + raw + data[at:])
    elif how == "truncate":
        path.write_bytes(data[:at])
    elif how == "delete":
        path.unlink()
    elif how == "json":
        path.write_text(json.dumps(value))
    else:  # one JSON line appended: a record of the wrong shape
        path.write_bytes(data + (json.dumps(value) + "\n").encode())


@fuzz(40)
@given(mutation=evidence_mutation())
def test_evidence_commands_on_mutated_folders(area, stored, mutation):
    case = Case(area)
    folder = Path(shutil.copytree(stored, case.given / "drill"))
    mutate(folder, mutation)
    for command in ("measure", "verify", "report"):
        case.run(command, str(folder))
    case.run("history", str(case.given))


# --- sandbox down on mutated pointers and state files ----------------------------------------

states = st.one_of(junk, values.map(lambda v: json.dumps(v).encode()),
                   st.dictionaries(st.sampled_from(["kind", "root", "spec", "events_file", "scenario_dir", "x"]),
                                   st.one_of(st.sampled_from(["sandbox", "external", "aws", "nope"]), values),
                                   max_size=5).map(lambda d: json.dumps(d).encode()))


@fuzz(150)
@given(pointer=st.one_of(junk, st.just(b"STATE")), state=states, via_env=st.booleans())
def test_sandbox_down_on_mutated_pointers(area, pointer, state, via_env):
    case = Case(area)
    state_file = case.given / "state" / "sandbox.json"
    state_file.parent.mkdir()
    state_file.write_bytes(state)
    pointer_file = case.given / "pointer"
    if via_env:
        case.run("sandbox down", "--pointer", str(case.given / "absent"), env={"DRILLKIT_SANDBOX": str(state_file)})
    else:
        pointer_file.write_bytes(str(state_file).encode() if pointer == b"STATE" else pointer)
        case.run("sandbox down", "--pointer", str(pointer_file))
