"""The shape the code keeps: no import cycles between drillkit's modules, no module past ~800 lines,
and a stage never reaches into another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_LINES = 800


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "drillkit").rglob("*.py"):
        if "workspace" in path.parts:  # templates copied by `drillkit init`, not drillkit's code
            continue
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Every drillkit module `path` imports, at module level or deferred inside a function: a
    deferred import hides a cycle from Python, not from the reader."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(path, name, modules) for name, path in modules.items()}
    # a package's __init__ importing its own submodule is how packages re-export; not a cycle
    graph = {n: {d for d in deps if not d.startswith(n + ".")} for n, deps in graph.items()}
    seen, stack, cycles = set(), [], []

    def visit(node: str) -> None:
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for dep in sorted(graph[node]):
            visit(dep)
        stack.pop()

    for name in sorted(graph):
        visit(name)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_module_is_past_the_split_point():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules: {long}"


def test_no_module_imports_another_modules_private_names():
    modules = _modules()
    leaks = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("drillkit"):
                leaks += [f"{name} imports {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not leaks, leaks


STAGES = [
    {"drillkit", "drillkit.errors", "drillkit.escape", "drillkit.durations", "drillkit.yamlfile", "drillkit.host"},
    {"drillkit.evidence", "drillkit.redact"},
    {"drillkit.net"},
    {"drillkit.scenario"},
    {"drillkit.targets"},
    {"drillkit.load", "drillkit.chaos"},
    {"drillkit.measure"},
    {"drillkit.judge"},
    {"drillkit.report"},
    {"drillkit.run"},
    {"drillkit.cli"},
]
"""The pipeline's ladder, bottom first: a module imports only from its own rung or those below."""


def _rung(module: str) -> int | None:
    for rung, names in enumerate(STAGES):
        if any(module == n or (n != "drillkit" and module.startswith(n + ".")) for n in names):
            return rung
    return None


def test_every_module_has_a_rung_on_the_ladder():
    assert not [m for m in _modules() if _rung(m) is None], "give these a rung in STAGES"


def test_no_import_runs_back_up_the_ladder():
    modules = _modules()
    upward = [f"{name} -> {dep}" for name, path in sorted(modules.items())
              for dep in sorted(_imports(path, name, modules))
              if (_rung(dep) or 0) > (_rung(name) or 0)]
    assert not upward, upward


_DOTTED = r"[a-z][a-z_]*(\.[a-z][a-z_]*)+"
EVENT_WRITERS = {"append_event", "record_event", "record", "event", "_event", "_trip"}


def _event_kinds() -> set[str]:
    import re

    import drillkit.evidence as evidence

    return {v for k, v in vars(evidence).items()
            if k.isupper() and isinstance(v, str) and re.fullmatch(_DOTTED, v)
            and not re.search(r"\.(jsonl?|yaml|csv|html|xml|txt|log)$", v)}   # file names are not kinds


def _literals(tree: ast.AST) -> list[ast.Constant]:
    """The string constants of a module that are not docstrings."""
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_every_event_kind_is_spelled_once_in_evidence():
    """An event kind is a constant of drillkit.evidence: no module outside it spells one, and no
    event is written with a kind spelled on the spot."""
    import re

    kinds = _event_kinds()
    spelled = []
    for name, path in sorted(_modules().items()):
        if name == "drillkit.evidence" or name.startswith("drillkit.evidence."):
            continue
        tree = ast.parse(path.read_text())
        spelled += [f"{path.relative_to(SRC)}:{c.lineno} {c.value!r}" for c in _literals(tree) if c.value in kinds]
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call) and n.args):
            fn = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
            first = call.args[1] if fn in ("append_event", "record_event") and len(call.args) > 1 else call.args[0]
            if (fn in EVENT_WRITERS and isinstance(first, ast.Constant) and isinstance(first.value, str)
                    and re.fullmatch(_DOTTED, first.value)):
                spelled.append(f"{path.relative_to(SRC)}:{call.lineno} {first.value!r} (unregistered)")
    assert not spelled, "use drillkit.evidence's constants: " + "; ".join(sorted(set(spelled)))


def test_no_system_kind_is_switched_on_outside_targets():
    """What differs between kinds of system is its target plug-in's (drillkit.targets): no module
    outside it compares anything with a kind's name (`spec.kind != "sandbox"`, `kind in ("aws", …)`)."""
    from drillkit.targets import KINDS

    def names(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [v for elt in node.elts for v in names(elt)]
        return []

    switches = []
    for name, path in sorted(_modules().items()):
        if name == "drillkit.targets" or name.startswith("drillkit.targets."):
            continue
        for cmp in (n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Compare)):
            found = [v for side in (cmp.left, *cmp.comparators) for v in names(side) if v in KINDS]
            switches += [f"{path.relative_to(SRC)}:{cmp.lineno} {v!r}" for v in found]
    assert not switches, "ask the target plug-in (drillkit.targets) instead: " + "; ".join(switches)


def test_tests_and_benches_share_helpers_only_through_tests_support():
    """A helper two test modules (or a test and a benchmark) use lives in tests/support/: no test
    module imports another, nor conftest; a benchmark imports tests/support/, never a test."""
    root = SRC.parent
    crossing = []
    for path in sorted([*(root / "tests").glob("*.py"), *(root / "tests" / "support").glob("*.py"),
                        *(root / "bench").glob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            crossing += [f"{path.relative_to(root)}:{node.lineno} {n}" for n in names
                         if n.split(".")[0].startswith("test_") or n.split(".")[0] == "conftest"]
    assert not crossing, "move the helper to tests/support/: " + "; ".join(crossing)
