"""Storing stage outputs on one background thread, so the next stage starts at once.

A stage is recorded as completed only after its artifacts are in place, so a killed process
still never leaves a completed stage without its outputs. Codecs may warm up their imports
(`Codec.prepare`) on this thread once the first stage has run: the main thread has done its own
imports by then, which keeps the two threads from importing the same modules at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from conveyor.contributions import Codec


class OutputWriter:
    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        # Warm-ups get a thread of their own: a stage's record must never wait behind an import.
        self._warmup: ThreadPoolExecutor | None = None
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
        for codec in codecs:
            if codec.prepare is not None:
                if self._warmup is None:
                    self._warmup = ThreadPoolExecutor(max_workers=1,
                                                      thread_name_prefix="conveyor-warmup")
                self._warmup.submit(_quietly, codec.prepare)

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
        for pool in (self._pool, self._warmup):
            if pool is not None:
                pool.shutdown(wait=True)
        self._pool = self._warmup = None
        if first is not None:
            raise first


def _quietly(prepare: Callable[[], None]) -> None:
    # Only an optimisation: if it fails, the real write imports again and reports.
    with contextlib.suppress(Exception):
        prepare()
