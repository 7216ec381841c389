"""Reads a workflow (or settings) YAML file safely: bounded size, depth and alias expansion, YAML 1.2 booleans."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

# A workflow file is a few kilobytes; the largest compiled machine Step Functions accepts is 1 MiB of JSON, and
# the YAML that produces it is smaller still. Anything bigger is refused before a byte of it is parsed.
MAX_FILE_BYTES = 1_048_576
# Mappings and lists inside one another. Each nested step costs two levels (the step list, the step), so this
# allows about 45 steps inside one another: far past any workflow a person reads, far below Python's recursion
# limit, which the parser, the models and the compiler all recurse against.
MAX_DEPTH = 96
# Values once every alias is expanded (the size pydantic, the compiler and json.dumps will walk). Anchors and
# aliases stay usable for repeated filters; an alias bomb ("billion laughs") is refused before it is expanded.
MAX_NODES = 200_000


class YamlFileError(Exception):
    """The file cannot be read as a workflow's YAML; the message names the file and, where known, the line."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2's booleans: only true/false (any case). YAML 1.1 also reads yes/no/on/off/y/n as
    booleans, which turns `id: yes` into True and `reason: off` into False."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _check_events(text: str, path: str) -> None:
    """Depth and node count from the event stream (the parser is iterative: no recursion on hostile input)."""
    depth = 0
    nodes = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise YamlFileError(
                    path, f"line {line}: nested more than {MAX_DEPTH} levels deep; move part of it into another "
                    "workflow (start_workflow)"
                )  # fmt: skip
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > MAX_NODES:
                raise YamlFileError(path, f"more than {MAX_NODES:,} values; a workflow file is far smaller")


def _expanded_size(root: yaml.Node, path: str) -> int:
    """How many values the document holds once aliases are expanded, counted without expanding them (each
    distinct node once, iteratively); a node that contains itself through an alias is refused."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            children = _children(node)
            total = 1 + sum(sizes[id(c)] for c in children)
            sizes[key] = min(total, MAX_NODES + 1)
            continue
        if key in sizes:
            continue
        if key in on_path:
            line = node.start_mark.line + 1
            raise YamlFileError(path, f"line {line}: an alias refers to a value that contains it (a loop)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in _children(node) if id(c) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def read_text(path: str | Path, limit: int = MAX_FILE_BYTES) -> str:
    """The file's text as UTF-8, refusing it unread when it is larger than `limit` bytes."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > limit:
            raise YamlFileError(
                str(p), f"{size:,} bytes, over the {limit:,}-byte limit for a workflow file; split it into workflows"
            )
        data = p.read_bytes()
    except OSError as err:
        raise YamlFileError(str(p), f"cannot read: {err.strerror or err}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise YamlFileError(
            str(p), f"line {line}: not UTF-8 text (byte 0x{data[err.start]:02x}); save the file as UTF-8"
        ) from None


def loads(text: str, path: str = "<workflow>") -> Any:
    """The YAML document in `text`, within the limits above; raises YamlFileError naming `path` and the line."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise YamlFileError(path, f"over the {MAX_FILE_BYTES:,}-byte limit for a workflow file")
    try:
        _check_events(text, path)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            if _expanded_size(node, path) > MAX_NODES:
                raise YamlFileError(
                    path, f"its aliases expand to more than {MAX_NODES:,} values (an alias bomb?); write the values out"
                )
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise YamlFileError(path, f"{where}not valid YAML: {problem}") from None
    except RecursionError:
        raise YamlFileError(path, f"nested too deeply (more than {MAX_DEPTH} levels)") from None


def load_file(path: str | Path) -> Any:
    """read_text then loads: the one way workflow and settings files are read (validate, simulate and synth)."""
    return loads(read_text(path), str(path))
