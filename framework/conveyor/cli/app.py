"""Shared plumbing of the subcommands: printing. A handler gets the command's `Session`."""

from __future__ import annotations

import json
import sys
from typing import Any

from conveyor.messages import print_error
from conveyor.session import Session

__all__ = ["Session", "console", "print_error", "print_json"]


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def console() -> Any:
    from rich.console import Console

    # Piped output (files, CI logs, tests) gets wide lines rather than tables folded to 80.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)
