"""Names that become paths: project names, model names, monitored batch ids.

A model's name is a folder under `.conveyor/predictions/` and `.conveyor/monitor/profiles/`,
a batch id is a folder under the monitor's reports, a project name is the folder `conveyor init`
makes. So each is checked once, where it enters (the config check for `project` and every
`*.model_name` key, `conveyor init`, `Registry.register`, `Monitoring.record`), against one rule:

    1 to 100 characters: ASCII letters, digits, '.', '_' and '-', the first a letter or digit

which leaves out '/', '\\', '..' as a whole name, a leading '.' or '-', spaces and control
characters. Code that joins a name into a path calls `path_part`, which applies the same rule
again (a row written by an older Conveyor, or by hand, is refused rather than followed).
"""

from __future__ import annotations

import re
from pathlib import Path

from conveyor.errors import UsageError

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
NAME_RULE = ("1 to 100 characters: letters, digits, '.', '_' and '-', starting with a letter or "
             "digit")


class InvalidName(UsageError, ValueError):
    """A name that may not become a path: bad usage (exit 2), and a ValueError to callers of
    the Python API that caught one before this module existed."""


def is_valid_name(name: object) -> bool:
    """Whether `name` may become a file or folder name (see the module's rule)."""
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def name_problem(name: object, what: str) -> str | None:
    """Why `name` (described by `what`, e.g. "config key 'registry.model_name'") is not a
    usable name, or None when it is."""
    if is_valid_name(name):
        return None
    return (f"{what}: {name!r} is not a usable name; it becomes a folder name, so it must be "
            f"{NAME_RULE}")


def check_name(name: object, what: str) -> str:
    """`name` itself, or InvalidName (a UsageError: exit 2) naming `what` and the rule."""
    problem = name_problem(name, what)
    if problem is not None:
        raise InvalidName(problem)
    return name  # type: ignore[return-value]


def path_part(root: Path, name: str, what: str = "name") -> Path:
    """`root / name` for a checked name: never a path outside `root`."""
    return Path(root) / check_name(name, what)
