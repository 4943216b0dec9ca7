"""Stage-by-stage progress: a live rich display on a terminal, plain lines otherwise.

Progress is for the person watching, never part of the run: when its reader goes away
(`conveyor run | head`) the display falls silent and the run goes on, rather than failing
with BrokenPipeError in the middle of a stage.
"""

from __future__ import annotations

import os
import sys
from typing import Any


class StageDisplay:
    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stdout.isatty()
        self._status: Any = None
        self._console: Any = None
        if self.tty and not quiet:
            from rich.console import Console

            self._console = Console(highlight=False)

    def header(self, text: str) -> None:
        self._print(text)

    def start(self, name: str, reason: str) -> None:
        if self._console is not None:
            self._status = self._console.status(f"[bold]{name}[/] running: {reason}")
            self._status.start()
        elif not self.quiet:
            self._plain(f"  {name}: running ({reason})")

    def log(self, name: str, message: str) -> None:
        """A message under a stage's line; lines after the first (a table) are indented."""
        first, *rest = message.splitlines() or [""]
        text = "\n".join([f"    {name}: {first}", *(f"      {line}" for line in rest)])
        if self._console is not None:
            from rich.markup import escape

            self._console.print(f"[dim]{escape(text)}[/]")
        elif not self.quiet:
            self._plain(text)

    def finish(self, name: str, status: str, duration: float, reason: str = "") -> None:
        self._stop()
        mark = {"completed": "✓", "cached": "↺", "failed": "✗"}.get(status, "·")
        detail = f"cached, {reason}" if status == "cached" else f"{duration:.2f}s"
        if self._console is not None:
            colour = {"completed": "green", "cached": "cyan", "failed": "red"}.get(status, "white")
            self._console.print(f"  [{colour}]{mark}[/] {name:<16} [{colour}]{status:<9}[/] "
                                f"[dim]{detail}[/]")
        elif not self.quiet:
            self._plain(f"  {mark} {name:<16} {status:<9} {detail}")

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _print(self, text: str) -> None:
        if self._console is not None:
            self._console.print(text)
        elif not self.quiet:
            self._plain(text)

    def _plain(self, text: str) -> None:
        try:
            print(text, flush=True)
        except BrokenPipeError:
            # The reader is gone: stop printing; later writes (and the flush at exit) go to
            # /dev/null instead of raising again.
            self.quiet = True
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    def close(self) -> None:
        self._stop()
