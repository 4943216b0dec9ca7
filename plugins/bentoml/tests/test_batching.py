"""conveyor_bentoml.batching: BentoML's dispatcher still learns what a batch costs, but never
learns to hold a request while the model is idle."""

from __future__ import annotations

from bentoml._internal.marshal.dispatcher import CorkDispatcher, Optimizer
from conveyor_bentoml import batching


def test_the_dispatcher_learns_batch_costs_but_no_hold_time():
    batching.install()
    optimizer = Optimizer(max_latency=10.0)
    # What a burst leaves behind: batches of 1 to 32 that waited 20 ms each for the one before.
    for size in range(1, 33):
        optimizer.log_outbound(n=size, wait=0.020, duration=0.002 + 0.0003 * size)
    optimizer.trigger_refresh()
    assert optimizer.wait == 0
    assert abs(optimizer.o_a - 0.0003) < 1e-6 and abs(optimizer.o_b - 0.002) < 1e-6


def test_a_lone_request_is_dispatched_at_once_after_a_burst():
    """The controller's hold test, with the learned figures of a burst: without the fix it holds
    a single queued request (1 * (wait + tick + a) <= learned wait * decay)."""
    batching.install()
    optimizer = Optimizer(max_latency=10.0)
    for size in range(1, 33):
        optimizer.log_outbound(n=size, wait=0.020, duration=0.002 + 0.0003 * size)
    optimizer.trigger_refresh()
    n, waited = 1, 0.0002
    holds = n * (waited + CorkDispatcher.TICKET_INTERVAL + optimizer.o_a) <= optimizer.wait * 0.95
    assert not holds
