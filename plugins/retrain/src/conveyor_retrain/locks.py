"""One decision at a time per model, one watcher at a time per batch file.

Two `conveyor watch` processes on one inbox (or a `conveyor retrain` by hand beside a watcher)
must not monitor the same batch twice, nor train two challengers for one trigger and so
bypass the cooldown: each reads state (the watch state file, the decisions so far), acts on it,
and records the result, and that read-act-record must not interleave. Both locks are OS file
locks (filelock) under `.conveyor/locks/`: the kernel releases them when a process dies, so a
`kill -9` never leaves a project locked. They serialise processes on one machine, which is
where a project's SQLite store lives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

POLL_SECONDS = 0.1


@contextmanager
def held(project_dir: Path, what: str, *, log: Callable[[str], None] | None = None,
         description: str = "") -> Iterator[None]:
    """Hold the project's lock named `what` (any text: it is hashed into a file name); tell
    `log` when another process holds it and this one waits."""
    folder = Path(project_dir) / ".conveyor" / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(what.encode()).hexdigest()[:16]
    lock = FileLock(folder / f"{name}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if log is not None:
            log(f"waiting for another process to finish {description or what}")
        lock.acquire(poll_interval=POLL_SECONDS)
    try:
        yield
    finally:
        lock.release()


def decision_lock(project_dir: Path, model_name: str, *,
                  log: Callable[[str], None] | None = None):
    """Held while the retraining policy of `model_name` is applied, from reading the batches
    to recording the outcome."""
    return held(project_dir, f"retrain:{model_name}", log=log,
                description=f"its retraining decision for '{model_name}'")


def inbox_lock(project_dir: Path, inbox: Path, *, log: Callable[[str], None] | None = None):
    """Held while a watcher processes one file of `inbox` (check the state, monitor, decide,
    mark it done)."""
    return held(project_dir, f"watch:{Path(inbox).resolve()}", log=log,
                description=f"a batch of {inbox}")
