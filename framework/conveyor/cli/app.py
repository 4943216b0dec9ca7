"""Shared plumbing of the subcommands: finding the project, loading plugins, printing."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conveyor.config import CONFIG_FILE, find_project
from conveyor.errors import ConveyorError
from conveyor.plugins import PluginHost


class App:
    """What a subcommand handler gets: options, the project (found lazily) and plugins."""

    def __init__(self, *, directory: Path | None, debug: bool, host: PluginHost) -> None:
        self.directory = directory or Path.cwd()
        self.debug = debug
        self.host = host
        self._project: Path | None = None

    @property
    def project_dir(self) -> Path:
        if self._project is None:
            self._project = find_project(self.directory)
        return self._project

    def store(self) -> Any:
        from conveyor.store import open_store

        return open_store(self.project_dir)


def plugin_settings(project_dir: Path | None, overrides: Sequence[str]) -> tuple[list, list]:
    """`plugins.disable` and `plugins.local`, read before plugins load (they decide what loads),
    from the project's conveyor.yaml and the command line."""
    disable: list[str] = []
    local: list[str] = []
    if project_dir is not None and (project_dir / CONFIG_FILE).is_file():
        import yaml

        try:
            data = yaml.safe_load((project_dir / CONFIG_FILE).read_text()) or {}
        except yaml.YAMLError:
            data = {}  # composition reports the syntax error properly later
        section = data.get("plugins") if isinstance(data, dict) else None
        if isinstance(section, dict):
            disable = list(section.get("disable") or [])
            local = list(section.get("local") or [])
    for override in overrides:
        key, _, value = override.lstrip("+").partition("=")
        if key in ("plugins.disable", "plugins.local"):
            items = [v.strip().strip("'\"") for v in value.strip("[]").split(",") if v.strip()]
            if key == "plugins.disable":
                disable = items
            else:
                local = items
    return disable, local


def load_host(project_dir: Path | None, overrides: Sequence[str] = ()) -> PluginHost:
    disable, local = plugin_settings(project_dir, overrides)
    return PluginHost().load(disable=disable, local_modules=local, project_dir=project_dir)


def print_error(exc: BaseException, *, prefix: str = "") -> None:
    from conveyor.secrets import scrub

    if isinstance(exc, ConveyorError):
        text = f"{prefix}error: {exc.message}"
        if exc.hint:
            text += f"\n{prefix}  hint: {exc.hint}"
    else:
        text = f"{prefix}error: {type(exc).__name__}: {exc}"
    print(scrub(text), file=sys.stderr, flush=True)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def console() -> Any:
    from rich.console import Console

    # Piped output (files, CI logs, tests) gets wide lines rather than tables folded to 80.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)
