"""Conveyor's BentoML plugin: `conveyor serve` (the champion over HTTP, request checks derived
from data.schema, hot swap on promotion, every prediction logged) and `conveyor build` (a Bento of
a model version).

Hooks: the `serve` config section and its presets (conf/serve), and the command. BentoML is
imported only by the server processes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import conveyor

from conveyor_bentoml import settings

__version__ = "0.1.0"


@conveyor.hookimpl
def conveyor_config_schemas(register: Callable[[conveyor.ConfigSchema], None]) -> None:
    register(settings.SCHEMA)


@conveyor.hookimpl
def conveyor_config_dirs(register: Callable[[Path], None]) -> None:
    register(Path(__file__).parent / "conf")


@conveyor.hookimpl
def conveyor_cli_commands(register: Callable[[conveyor.CliCommand], None]) -> None:
    from conveyor_bentoml import build, commands

    register(commands.SERVE)
    register(build.BUILD)
