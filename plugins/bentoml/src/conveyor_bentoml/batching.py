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
"""

from __future__ import annotations

from bentoml._internal.marshal.dispatcher import Optimizer

_learn_batch_costs = Optimizer.trigger_refresh


def learn_batch_costs_never_hold(self: Optimizer) -> None:
    _learn_batch_costs(self)
    self.wait = 0


def install() -> None:
    """Idempotent; the service module calls it when it is imported."""
    Optimizer.trigger_refresh = learn_batch_costs_never_hold
