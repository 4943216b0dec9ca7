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


def test_work_of_a_cancelled_request_is_never_predicted():
    """Issue 14.9: a request answered 504 has its task cancelled; its queued job, and the rest
    of a body split into chunks of max_batch_size, used to be predicted anyway."""
    import asyncio

    from bentoml.exceptions import ServiceUnavailable

    batching.install()
    predicted: list[int] = []

    def overloaded():  # BentoML's fallback when the dispatcher drops a job
        raise ServiceUnavailable("process is overloaded")

    async def scenario() -> None:
        dispatcher = CorkDispatcher(max_latency_in_ms=60_000, max_batch_size=4,
                                    fallback=overloaded, get_batch_size=len)
        dispatcher.optimizer.wait = 0
        gate = asyncio.Event()

        async def infer(batches):
            await gate.wait()
            predicted.extend(x for batch in batches for x in batch)
            return batches

        call = dispatcher(infer)
        first = asyncio.ensure_future(call(list(range(0, 4))))  # occupies the model
        await asyncio.sleep(0.05)
        big = asyncio.ensure_future(call(list(range(100, 110))))  # split into 4 + 4 + 2
        lone = asyncio.ensure_future(call([200]))
        await asyncio.sleep(0.05)
        big.cancel()
        await asyncio.sleep(0.01)
        gate.set()
        assert await first == [0, 1, 2, 3] and await lone == [200]
        assert big.cancelled() and not dispatcher._queue
        dispatcher.shutdown()

    asyncio.run(scenario())
    assert not any(100 <= x < 110 for x in predicted), predicted


def test_records_wait_for_the_model_s_features_when_serve_started_without_them():
    import pytest
    from conveyor_bentoml.records import REQUEST_ID, request_type
    from pydantic import TypeAdapter, ValidationError

    features: list[str] | None = None
    adapter = TypeAdapter(request_type(None, [], lambda: features))
    assert adapter.validate_python([{"a": 1}])[0][REQUEST_ID]  # no model yet: predict says 503
    features = ["a", "b"]
    assert adapter.validate_python([{"a": 1, "b": None}])[0]["b"] is None
    with pytest.raises(ValidationError, match="field c is unknown"):
        adapter.validate_python([{"a": 1, "b": 2, "c": 3}])
    with pytest.raises(ValidationError, match="field b is missing"):
        adapter.validate_python([{"a": 1}])
