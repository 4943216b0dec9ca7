"""Conveyor's web UI: `conveyor ui` serves pages for a project's runs, compare, pipeline,
models and monitoring, read from the project store through the core's public API.

Hooks: `conveyor_cli_commands` (the `ui` command). The web stack (Starlette, uvicorn, Jinja2)
is imported only when the command runs.
"""

from __future__ import annotations

from collections.abc import Callable

import conveyor

__version__ = "0.1.0"


@conveyor.hookimpl
def conveyor_cli_commands(register: Callable[[conveyor.CliCommand], None]) -> None:
    from conveyor_ui.cli import DESCRIPTION, configure, run

    register(conveyor.CliCommand(
        name="ui", help="browse runs, models, the pipeline and monitoring in a web browser",
        configure=configure, run=run, description=DESCRIPTION))
