"""Adaptive batching as `conveyor serve` uses it: BentoML 1.4's dispatcher (CorkDispatcher),
with its learned hold time kept at zero.

The dispatcher learns what a batch costs (kept: it refuses requests it expects to miss
`serve.batching.max_latency_ms`) and also the average time requests waited before their batch
started, and then holds new requests, polling every millisecond, until they have waited that
long. Under load requests wait anyway, for the batch running before them; so after a burst the
learned hold made each lone request wait. Measured with tests/bench/bench_serve.py's model at
concurrency 1 after 5 s at 32: p50 went from 3.8 ms to 9.7 ms (p99 16.8 ms) and took 15 s to
come back. With no hold, a batch starts as soon as the model is free and takes every request
queued by then (up to max_batch_size): batches still grow with the load, and a lone request
never waits for company.

A request answered 504 (`serve.timeout`) has its task cancelled, which cancels its job's future
but BentoML leaves the job queued: the dispatcher then predicted it anyway, and a body larger
than max_batch_size is split into chunks whose futures are new ones, never cancelled. After a
timeout storm, a lone request queued behind seconds of predictions nobody would read (measured:
504 for ~10 s after 40 requests of 3,000 records at serve.timeout=0.3). Here a job whose future
is cancelled leaves the queue, a split job's chunks are cancelled with it, and a
request cancelled by its deadline ends cancelled rather than as BentoML's "process is overloaded"
error (logged with a traceback, after the 504 was already sent).
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

from bentoml._internal.marshal.dispatcher import CorkDispatcher, Job, Optimizer
from bentoml.exceptions import ServiceUnavailable

_learn_batch_costs = Optimizer.trigger_refresh
_split_job = CorkDispatcher.split_job
_wrap = CorkDispatcher.__call__


def learn_batch_costs_never_hold(self: Optimizer) -> None:
    _learn_batch_costs(self)
    self.wait = 0


def _forget_when_cancelled(self: CorkDispatcher, job: Job) -> None:
    """A job whose future is cancelled (a 504, a client gone) leaves the queue at once, so it
    is neither predicted nor counted in the dispatcher's latency estimates (which shed live
    requests with 503 when the queue looks long)."""

    def forget(future: asyncio.Future) -> None:
        if future.cancelled() and any(queued is job for queued in self._queue):
            live = [queued for queued in self._queue if queued is not job]
            self._queue.clear()
            self._queue.extend(live)

    job.future.add_done_callback(forget)


async def inbound_call(self: CorkDispatcher, data: Any) -> Any:
    """BentoML 1.4's CorkDispatcher.inbound_call, the job forgotten when cancelled."""
    job = Job(time.time(), data, self._loop.create_future())
    _forget_when_cancelled(self, job)
    self._queue.append(job)
    async with self._wake_event:
        self._wake_event.notify_all()
    return await job.future


def split_job_cancelled_together(self: CorkDispatcher, job: Job, split_indexes: list[int]
                                 ) -> tuple[Job, Job]:
    first, second = _split_job(self, job, split_indexes)
    _forget_when_cancelled(self, second)  # the rest goes back to the queue

    def cancel_chunks(future: asyncio.Future) -> None:
        if future.cancelled():
            first.future.cancel()
            second.future.cancel()

    job.future.add_done_callback(cancel_chunks)
    return first, second


def cancelled_stays_cancelled(self: CorkDispatcher, callback: Any) -> Any:
    batched = _wrap(self, callback)

    @functools.wraps(batched)
    async def call(data: Any) -> Any:
        try:
            return await batched(data)
        except ServiceUnavailable:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # our deadline: already answered 504
                raise asyncio.CancelledError from None
            raise  # the dispatcher shed the job itself: 503, as BentoML answers

    return call


def install() -> None:
    """Idempotent; the service module calls it when it is imported."""
    Optimizer.trigger_refresh = learn_batch_costs_never_hold
    CorkDispatcher.inbound_call = inbound_call
    CorkDispatcher.split_job = split_job_cancelled_together
    CorkDispatcher.__call__ = cancelled_stays_cancelled
