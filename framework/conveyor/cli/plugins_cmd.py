"""`conveyor plugins list | new`: what is installed and what each plugin contributes, and a new
plugin package to start from. `conveyor plugin ...` is the same command (`plugin new` reads
better, `plugins list` too)."""

from __future__ import annotations

import argparse
import contextlib
from importlib import metadata
from pathlib import Path
from typing import Any

from conveyor.cli.app import console, print_json
from conveyor.plugins import PluginInfo, supported_conveyor
from conveyor.session import Session

NEW_DESCRIPTION = """\
Write a pip-installable plugin package, conveyor-NAME, into DIR (default: the current folder):
pyproject.toml with the `conveyor` entry point and the Conveyor versions it supports, the
module conveyor_NAME with a stage type (NAME.greet), a config section and config group (NAME),
an after-run hook, a README, and tests using Conveyor's pytest fixture `conveyor_project`.

  conveyor plugin new drift_alerts
  cd conveyor-drift-alerts
  pip install -e ".[test]"
  pytest
  conveyor plugins list

Guide: docs/writing-a-plugin.md; hooks: docs/reference/hooks.md (Conveyor's repository)."""


def configure(commands: Any) -> None:
    plugins = commands.add_parser(
        "plugins", aliases=["plugin"], help="installed plugins (list) and a new one (new)",
        description="List the installed plugins, or scaffold a new one. "
        "`conveyor plugin ...` is the same command.")
    sub = plugins.add_subparsers(dest="plugins_command", metavar="ACTION")
    listing = sub.add_parser("list", help="name, distribution, version, hooks, contributions")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=list_plugins)
    new = sub.add_parser("new", help="scaffold a pip-installable plugin package conveyor-NAME",
                         description=NEW_DESCRIPTION,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    new.add_argument("name", metavar="NAME",
                     help="a lowercase identifier: the entry point, the module conveyor_NAME and "
                     "the stage-type prefix")
    new.add_argument("--dir", type=Path, default=None, metavar="DIR",
                     help="where to create the conveyor-NAME folder (default: the current folder)")
    new.set_defaults(handler=new_plugin)


def new_plugin(args: argparse.Namespace, app: Session) -> int:
    from conveyor.plugins import CORE_COMMANDS, _version
    from conveyor.scaffold import check_name, compatible_range, create_plugin

    check_name(args.name)
    found = app.host.contributions
    taken = {*CORE_COMMANDS, *found.cli_commands, *app.host.info,
             *(info.name for info in app.host.disabled),
             *(stage.split(".", 1)[0] for stage in found.stage_types)}
    version = _version("conveyor")
    folder = create_plugin(args.name, (args.dir or Path.cwd()).absolute(), version, taken)
    module = f"conveyor_{args.name}"
    print(f"created {folder} (plugin '{args.name}', for Conveyor {compatible_range(version)})\n"
          f"  src/{module}/__init__.py  stage type {args.name}.greet, config section "
          f"'{args.name}', after-run hook\n"
          f"  src/{module}/conf/{args.name}/  config group {args.name}=friendly|formal\n"
          f"  tests/test_{args.name}.py  tests with Conveyor's conveyor_project fixture\n"
          f"next:\n  cd {folder}\n  pip install -e \".[test]\"\n  pytest")
    return 0


def describe_plugins(app: Session) -> list[dict[str, Any]]:
    """One row per plugin: the registered ones, then those switched off by plugins.disable."""
    found = app.host.contributions
    rows = []
    for name, info in app.host.info.items():
        owned = [k.split(":", 1) for k, v in found.provider.items() if v == name]
        groups = sorted(group.name for kind, folder in owned if kind == "config_dir"
                        for group in Path(folder).iterdir() if group.is_dir())
        rows.append({
            **_identity(info), "enabled": True, "hooks": app.host.hooks_of(name),
            "stage_types": sorted(n for kind, n in owned if kind == "stage"),
            "stage_type_outputs": {n: dict(found.stage_types[n].outputs)
                                   for kind, n in sorted(owned) if kind == "stage"},
            "commands": sorted(n for kind, n in owned if kind == "command"),
            "templates": sorted(n for kind, n in owned if kind == "template"),
            "config_sections": sorted(n for kind, n in owned if kind == "section"),
            "config_groups": groups,
            "codecs": sorted(n for kind, n in owned if kind == "codec"),
            "drift_detectors": sorted(n for kind, n in owned if kind == "drift detector")})
    for info in app.host.disabled:
        rows.append({**_identity(info), "enabled": False, "hooks": [], "stage_types": [],
                     "stage_type_outputs": {}, "commands": [], "templates": [], "config_sections": [],
                     "config_groups": [], "codecs": [], "drift_detectors": []})
    return rows


def _identity(info: PluginInfo) -> dict[str, Any]:
    supports = None
    if info.origin == "entry point":
        with contextlib.suppress(metadata.PackageNotFoundError):
            supports = supported_conveyor(metadata.distribution(info.distribution))
    return {"name": info.name, "distribution": info.distribution, "version": info.version,
            "origin": info.origin, "supports_conveyor": supports}


def list_plugins(args: argparse.Namespace, app: Session) -> int:
    rows = describe_plugins(app)
    if args.json:
        print_json(rows)
        return 0
    from rich.table import Table

    table = Table(title="plugins", title_justify="left")
    for column in ("plugin", "distribution", "version", "contributes", "hooks"):
        table.add_column(column, overflow="fold")
    for row in rows:
        contributes = "; ".join(
            f"{label}: {', '.join(row[key])}" for key, label in
            (("stage_types", "stages"), ("config_groups", "groups"), ("commands", "commands"),
             ("templates", "templates"), ("config_sections", "sections"),
             ("codecs", "codecs"), ("drift_detectors", "drift detectors")) if row[key])
        if not row["enabled"]:
            contributes = "(disabled by plugins.disable)"
        table.add_row(row["name"], row["distribution"], row["version"], contributes,
                      ", ".join(h.removeprefix("conveyor_") for h in row["hooks"]))
    console().print(table)
    return 0
