"""Errors as the user reads them: one line and a hint, with secrets scrubbed."""

from __future__ import annotations

import sys

from conveyor.errors import ConveyorError


def print_error(exc: BaseException, *, prefix: str = "") -> None:
    """`error: MESSAGE` (and `  hint: HINT`) on stderr; any other exception as its type and
    text. Secrets Conveyor knows of (conveyor.secrets) are scrubbed from both."""
    from conveyor.secrets import scrub

    if isinstance(exc, ConveyorError):
        text = f"{prefix}error: {exc.message}"
        if exc.hint:
            text += f"\n{prefix}  hint: {exc.hint}"
    else:
        text = f"{prefix}error: {type(exc).__name__}: {exc}"
    print(scrub(text), file=sys.stderr, flush=True)
