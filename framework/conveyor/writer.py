"""Storing stage outputs on one background thread, so the next stage starts at once.

A stage is recorded as completed only after its artifacts are in place, so a killed process
still never leaves a completed stage without its outputs. Codecs may warm up their imports
(`Codec.prepare`) on a thread of their own once the first stage has run: the main thread has
done its own imports by then, which keeps the two threads from importing the same modules at
once. That thread is a daemon nobody waits for: a run that ends (or is interrupted) before a
warm-up finishes does not wait for an import it no longer needs.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from conveyor.contributions import Codec


class OutputWriter:
    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[tuple[str, Future]] = []
        self._prepared = False

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="conveyor-writer")
        return self._pool

    def prepare(self, codecs: Iterable[Codec]) -> None:
        if self._prepared:
            return
        self._prepared = True
        prepares = [codec.prepare for codec in codecs if codec.prepare is not None]
        if prepares:
            # A stage's record must never wait behind an import: the writer is another thread.
            threading.Thread(target=_quietly, args=(prepares,), name="conveyor-warmup",
                             daemon=True).start()

    def submit(self, stage: str, job: Callable[[], Any]) -> Future:
        future = self._executor().submit(job)
        self._pending.append((stage, future))
        return future

    def raise_failures(self) -> None:
        """Surface a failed write as soon as it is known (between stages)."""
        for _, future in self._pending:
            if future.done() and future.exception() is not None:
                raise future.exception()  # type: ignore[misc]

    def drain(self) -> None:
        """Wait for every write; raise the first failure."""
        first: BaseException | None = None
        for _, future in self._pending:
            error = future.exception()
            if error is not None and first is None:
                first = error
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._pool = None
        if first is not None:
            raise first


def _quietly(prepares: list[Callable[[], None]]) -> None:
    # Only an optimisation: if one fails, the real write imports again and reports.
    for prepare in prepares:
        with contextlib.suppress(Exception):
            prepare()
