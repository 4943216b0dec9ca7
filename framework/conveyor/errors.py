"""Every error Conveyor reports to a user, and the exit code each one maps to.

Exit codes are part of the user contract: 0 ok; 1 a stage failed or a gate/policy said no;
2 bad usage, bad config or a broken plugin (nothing ran); 70 an internal error (a bug);
130 interrupted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug in Conveyor or a plugin, not the user's input
EXIT_INTERRUPTED = 130


class ConveyorError(Exception):
    """Base of the errors shown to users as one clear message (no traceback unless --debug)."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(ConveyorError):
    """The command line is wrong (unknown run id, missing argument, not in a project)."""

    exit_code = EXIT_USAGE


class ConfigError(ConveyorError):
    """The resolved configuration is invalid; raised before any stage runs."""

    exit_code = EXIT_USAGE


class PluginError(ConveyorError):
    """A plugin failed to load or breaks the hook contract; names the plugin and its version."""

    exit_code = EXIT_USAGE


class StageFailed(ConveyorError):
    """A stage raised while running; the run is recorded as failed.

    `outputs` is evidence the failing stage hands over (the failure cases of a validation,
    say): the runner stores them as the failed stage's artifacts, with the metrics it logged.
    """

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None,
                 outputs: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.outputs = dict(outputs or {})


class GateRejected(ConveyorError):
    """A promotion was refused by the evaluation gate."""

    exit_code = EXIT_FAILED


class StoreError(ConveyorError):
    """The project store (.conveyor/) is unreadable or inconsistent."""

    exit_code = EXIT_FAILED
