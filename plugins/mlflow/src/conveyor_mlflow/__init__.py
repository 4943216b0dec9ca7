"""Conveyor's MLflow plugin: a mirror of the project's runs, model versions, aliases and gate
decisions to an MLflow tracking server (`mlflow.tracking_uri`), for teams that already use one.

Hooks: `conveyor_config_schemas` (the `mlflow` section, `conveyor_mlflow.settings`; a bad
setting stops every command before anything runs, exit 2), `conveyor_after_run`
(the run is mirrored, with whatever MLflow still lacks; a failure is a warning, never the
run's), `conveyor_cli_commands` (`conveyor mlflow sync`). What is mirrored and how ids map:
`conveyor_mlflow.mirror`. mlflow is imported only when a tracking URI is set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import conveyor

__version__ = "0.1.0"


@conveyor.hookimpl
def conveyor_config_schemas(register: Callable[[conveyor.ConfigSchema], None]) -> None:
    from conveyor_mlflow.settings import SCHEMA

    register(SCHEMA)


@conveyor.hookimpl
def conveyor_cli_commands(register: Callable[[conveyor.CliCommand], None]) -> None:
    from conveyor_mlflow.command import SYNC

    register(SYNC)


@conveyor.hookimpl
def conveyor_after_run(run: Any, status: str) -> None:
    from conveyor_mlflow.command import mirror_ended_run

    mirror_ended_run(run, status)
