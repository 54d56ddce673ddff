"""The one way drillkit reads a YAML file: scenarios, workload mappings and the scenario.yaml an
evidence folder keeps.

Bounded: the file is at most MAX_FILE_BYTES, and the document at most MAX_NODES nodes once every
alias is expanded. The bound is checked on the composed node graph, where an alias is a shared
node and costs nothing, before any Python object is built, so an alias bomb ("billion laughs")
is refused in milliseconds instead of being expanded by whoever walks the data first (the
`${VAR}` expansion under `system:` did, for minutes). An alias that refers to its own ancestor
(a cycle) is refused too: no consumer can walk it. A key given twice is refused: PyYAML would
keep the last silently, hiding a typo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from drillkit.errors import InputError

MAX_FILE_BYTES = 1 << 20
"""Scenarios and experiments are hand-written; anything bigger is the wrong file (or /dev/zero)."""

MAX_NODES = 100_000
"""Nodes of the document with every alias expanded. A large scenario has a few hundred."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.get(key)
        except TypeError:
            continue
        if first is not None:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"key {key!r} is given twice (first on line {first.start_mark.line + 1})", key_node.start_mark)
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


class _Unbounded(Exception):
    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


def expanded_size(root: yaml.Node | None, limit: int = MAX_NODES) -> int:
    """Nodes of the document once every alias is expanded, counted on the shared graph (linear in
    its distinct nodes). Raises _Unbounded past `limit` or on a cycle."""
    if root is None:
        return 0
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    # iterative post-order walk: a deep document must not exhaust Python's stack
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            total = 1 + sum(sizes[id(c)] for c in children)
            if total > limit:
                raise _Unbounded(f"more than {limit:,} values once its aliases are expanded")
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise _Unbounded("an alias refers to a value that contains it (a loop)")
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                raise _Unbounded("an alias refers to a value that contains it (a loop)")
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def parse_yaml(text: str, shown: str) -> Any:
    """The data of one YAML document, bounded (module doc); InputError naming `shown` otherwise."""
    loader = None
    try:
        loader = _UniqueKeyLoader(text)  # its reader refuses some characters already
        node = loader.get_single_node()
        expanded_size(node)
        return None if node is None else loader.construct_document(node)
    except _Unbounded as exc:
        raise InputError(f"refused: {exc.why}", file=shown) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"not valid YAML: {problem}", file=shown, field=where) from None
    except RecursionError:
        raise InputError("not valid YAML: nested too deeply", file=shown) from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"not valid YAML: {exc}", file=shown) from None
    finally:
        if loader is not None:
            loader.dispose()


def read_text(path: Path, what: str) -> str:
    """The file's text (at most MAX_FILE_BYTES, UTF-8), or an InputError that says why not."""
    shown = str(path)
    try:
        if path.is_dir():
            raise InputError(f"is a folder, not a {what} file", file=shown)
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"no such {what} file", file=shown) from None
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror or exc}", file=shown) from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"larger than {MAX_FILE_BYTES >> 20} MiB: not a {what}", file=shown)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"not UTF-8 text (byte 0x{data[exc.start]:02x})", file=shown, field=f"line {line}") from None


def load_yaml(path: Path, what: str) -> Any:
    """Read and parse a YAML file, both bounded; InputError naming the file otherwise."""
    return parse_yaml(read_text(path, what), str(path))
