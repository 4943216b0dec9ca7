"""Where a config key came from: a command-line override or a line of a YAML file."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml


def key_origin(
    key: str,
    *,
    overrides: Sequence[str],
    files: Iterable[tuple[Path, str]],
) -> str | None:
    """Describe where `key` (dotted path) was set: 'command line: a.b=1' or 'path:line'."""
    for override in overrides:
        name = override.split("=", 1)[0].lstrip("+~")
        if name == key or key.startswith(name + ".") or name.startswith(key + "."):
            return f"the command line ('{override}')"
    for path, package in files:
        line = _find_line(path, package, key)
        if line is not None:
            return f"{path}:{line}"
    return None


def _find_line(path: Path, package: str, key: str) -> int | None:
    if package:
        if key == package or not key.startswith(package + "."):
            return None
        key = key[len(package) + 1:]
    try:
        node = yaml.compose(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for part in key.split("."):
        if not isinstance(node, yaml.MappingNode):
            return line
        for key_node, value_node in node.value:
            if key_node.value == part:
                line, node = key_node.start_mark.line + 1, value_node
                break
        else:
            return None
    return line


def package_of(path: Path, group: str) -> str:
    """The package a config file's keys land in: its `# @package` header, else its group."""
    try:
        with open(path) as handle:
            first = handle.readline()
    except OSError:
        return group.replace("/", ".")
    if first.startswith("# @package"):
        package = first.split("@package", 1)[1].strip()
        return "" if package == "_global_" else package.replace("_group_", group.replace("/", "."))
    return group.replace("/", ".")
