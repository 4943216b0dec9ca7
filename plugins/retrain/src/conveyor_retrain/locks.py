"""One decision at a time per model, one watcher at a time per batch file.

Two `conveyor watch` processes on one inbox (or a `conveyor retrain` by hand beside a watcher)
must not monitor the same batch twice, nor train two challengers for one trigger and so
bypass the cooldown: each reads state (the watch state file, the decisions so far), acts on it,
and records the result, and that read-act-record must not interleave. Both locks are the
store's named locks (`conveyor.store.Store.lock`): an OS file lock under `.conveyor/locks/` on
an SQLite store, a PostgreSQL advisory lock on a shared one, so processes on every machine
sharing the store take turns. Either dies with its holder, so a `kill -9` never leaves a project
locked, and a decision left "running" whose lock nobody holds was interrupted
(`conveyor_retrain.records`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from conveyor.store import open_store


def decision_lock_name(model_name: str) -> str:
    """The store lock held while a decision for `model_name` is made."""
    return f"retrain:{model_name}"


@contextmanager
def held(project_dir: Path, what: str, *, log: Callable[[str], None] | None = None,
         description: str = "") -> Iterator[None]:
    """Hold the project store's lock named `what` (`Store.lock`); tell `log` when another
    process holds it and this one waits."""
    store = open_store(Path(project_dir))
    try:
        with store.lock(what, log=log, description=description):
            yield
    finally:
        store.close()


def decision_lock(project_dir: Path, model_name: str, *,
                  log: Callable[[str], None] | None = None):
    """Held while the retraining policy of `model_name` is applied, from reading the batches
    to recording the outcome."""
    return held(project_dir, decision_lock_name(model_name), log=log,
                description=f"its retraining decision for '{model_name}'")


def inbox_lock(project_dir: Path, inbox: Path, *, log: Callable[[str], None] | None = None):
    """Held while a watcher processes one file of `inbox` (check the state, monitor, decide,
    mark it done)."""
    return held(project_dir, f"watch:{Path(inbox).resolve()}", log=log,
                description=f"a batch of {inbox}")
