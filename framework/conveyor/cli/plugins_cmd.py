"""`conveyor plugins list`: what is installed and what each plugin contributes."""

from __future__ import annotations

import argparse
from typing import Any

from conveyor.cli.app import App, console, print_json


def configure(commands: Any) -> None:
    plugins = commands.add_parser("plugins", help="installed plugins and their contributions")
    sub = plugins.add_subparsers(dest="plugins_command", metavar="ACTION")
    listing = sub.add_parser("list", help="name, distribution, version, hooks, contributions")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=list_plugins)


def describe_plugins(app: App) -> list[dict[str, Any]]:
    found = app.host.contributions
    rows = []
    for name, info in app.host.info.items():
        owned = [k.split(":", 1) for k, v in found.provider.items() if v == name]
        groups: list[str] = []
        plugin = app.host.pm.get_plugin(name)
        if plugin is not None and hasattr(plugin, "__file__"):
            for folder in found.config_dirs:
                if str(folder).startswith(str(_root(plugin.__file__))):
                    groups += sorted(p.name for p in folder.iterdir() if p.is_dir())
        rows.append({
            "name": name, "distribution": info.distribution, "version": info.version,
            "origin": info.origin, "hooks": app.host.hooks_of(name),
            "stage_types": sorted(n for kind, n in owned if kind == "stage"),
            "commands": sorted(n for kind, n in owned if kind == "command"),
            "templates": sorted(n for kind, n in owned if kind == "template"),
            "config_sections": sorted(n for kind, n in owned if kind == "section"),
            "config_groups": groups})
    return rows


def _root(module_file: str) -> str:
    from pathlib import Path

    return str(Path(module_file).parent)


def list_plugins(args: argparse.Namespace, app: App) -> int:
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
             ("templates", "templates"), ("config_sections", "sections")) if row[key])
        table.add_row(row["name"], row["distribution"], row["version"], contributes,
                      ", ".join(h.removeprefix("conveyor_") for h in row["hooks"]))
    console().print(table)
    return 0
