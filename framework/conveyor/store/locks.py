"""Named locks held across a long operation, through the store (`Store.lock`, `Store.lock_held`).

    with store.lock("retrain:churn", log=print):
        ...   # read state, train for minutes, record the outcome: never interleaved

`Store.write(lock=...)` serialises one short transaction; these locks cover work that runs
for minutes and commits many times (a retraining decision, a watcher handling one batch file).
They are exclusive, not re-entrant (taking a lock this process already holds is an error, not a
deadlock), and they die with their holder, so a `kill -9` never leaves a project locked:

* SQLite store: an OS file lock (filelock) under `<project>/.conveyor/locks/`, the name hashed
  into the file name; the kernel frees it when the process dies. It serialises the processes
  of one machine, which is where an SQLite store lives.
* PostgreSQL store: a session-level advisory lock (`pg_advisory_lock(key)`, key = `lock_key(name)`,
  a stable 64-bit hash) on a connection of its own, held open for the duration; the server
  frees it when that connection dies (its process killed, its machine gone). It serialises the
  processes of every machine sharing the store.

A process that must wait says so once through `log` ("waiting for another process to finish
...") and then blocks until the holder lets go (Ctrl-C stops the wait). `wait=False` raises
`LockBusy` instead. `Store.lock_held(name)` tells whether another process holds a lock now
(try it, let go): how a record left "running" whose lock nobody holds is known to be
interrupted, whatever machine its process ran on.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from conveyor.errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

LOCKS_DIR = "locks"
POLL_SECONDS = 0.1

# The locks this process holds, by (store, name): a lock is not re-entrant, and asking whether
# "another process" holds one this process holds must not try to take it again.
_held: Counter[tuple[str, str]] = Counter()
_held_guard = threading.Lock()


class LockBusy(StoreError):
    """`Store.lock(name, wait=False)` found the lock held by another process."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for a PostgreSQL advisory lock named `name`."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def lock_file(root: Path, name: str) -> Path:
    """The file under `root` (a project's `.conveyor/`) whose OS lock stands for `name`."""
    return root / LOCKS_DIR / f"{hashlib.sha256(name.encode()).hexdigest()[:16]}.lock"


@contextmanager
def holding(store_id: str, name: str) -> Iterator[None]:
    """Mark `name` of the store `store_id` held by this process while the block runs."""
    key = (store_id, name)
    with _held_guard:
        if _held[key]:
            raise StoreError(f"this process already holds the lock '{name}'",
                             hint="a store lock is not re-entrant: take it once, around the "
                                  "whole operation")
        _held[key] += 1
    try:
        yield
    finally:
        with _held_guard:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]


def held_here(store_id: str, name: str) -> bool:
    """Whether this process holds the lock `name` of the store `store_id`."""
    with _held_guard:
        return bool(_held[(store_id, name)])


def _waiting(log: Callable[[str], None] | None, name: str, description: str) -> None:
    if log is not None:
        log(f"waiting for another process to finish {description or name}")


def _busy(name: str, where: str) -> LockBusy:
    return LockBusy(f"another process holds the lock '{name}' of {where}",
                    hint="wait for it to finish, or try again later")


@contextmanager
def file_lock(root: Path, name: str, *, wait: bool = True,
              log: Callable[[str], None] | None = None, description: str = "",
              where: str = "") -> Iterator[None]:
    """Hold the OS file lock standing for `name` under `root` (see the module docstring)."""
    from filelock import FileLock, Timeout

    path = lock_file(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not wait:
            raise _busy(name, where or str(root)) from None
        _waiting(log, name, description)
        lock.acquire(poll_interval=POLL_SECONDS)
    try:
        yield
    finally:
        lock.release()


def file_lock_held(root: Path, name: str) -> bool:
    """Whether a process holds the file lock standing for `name` (tried, and let go)."""
    from filelock import FileLock, Timeout

    path = lock_file(root, name)
    if not path.exists():
        return False
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def _lock_connection(engine: Engine) -> Connection:
    # Autocommit: the lock is the session's, and the connection must not sit "idle in
    # transaction" for the minutes it is held.
    return engine.connect().execution_options(isolation_level="AUTOCOMMIT")


@contextmanager
def advisory_lock(engine: Engine, name: str, *, wait: bool = True,
                  log: Callable[[str], None] | None = None, description: str = "",
                  where: str = "") -> Iterator[None]:
    """Hold PostgreSQL's session-level advisory lock for `name` on a connection of its own
    (see the module docstring)."""
    from sqlalchemy import text

    key = {"key": lock_key(name)}
    connection = _lock_connection(engine)
    try:
        if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar():
            if not wait:
                raise _busy(name, where or "the store")
            _waiting(log, name, description)
            connection.execute(text("SELECT pg_advisory_lock(:key)"), key)
        try:
            yield
        finally:
            try:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)
            except Exception:
                # The connection is gone, and the server freed the lock with it.
                connection.invalidate()
    finally:
        connection.close()


def advisory_lock_held(engine: Engine, name: str) -> bool:
    """Whether a session holds PostgreSQL's advisory lock for `name` (tried, and let go)."""
    from sqlalchemy import text

    key = {"key": lock_key(name)}
    with _lock_connection(engine) as connection:
        if not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), key).scalar():
            return True
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), key)
        return False
