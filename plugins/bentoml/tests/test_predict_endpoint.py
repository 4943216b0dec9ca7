"""`conveyor_bentoml.predict_endpoint` without a server: the requests that arrive together are
scored in one call of the compiled model, each gets its own answer, a cancelled one is never
scored, a swap splits the call, and a failing model is one 500 that logs nothing. (The
endpoint through a real `conveyor serve` is in test_serve_compiled.py and test_serve.py.)"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from conveyor.compiled import CompiledPrediction
from conveyor_bentoml.predict_endpoint import Batcher, score
from conveyor_bentoml.records import REQUEST_ID


class Doubler:
    """A compiled classifier: P(1) is x / 10; counts its calls and the rows of each."""

    features = ["x"]
    kinds = {"x": "number"}
    form = "onnx"

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.fail = fail

    def predict_columns(self, columns):
        if self.fail:
            raise RuntimeError("bad graph")
        x = np.asarray(columns["x"], dtype=float)
        self.calls.append(len(x))
        proba = np.column_stack([1 - x / 10, x / 10])
        return CompiledPrediction(np.array([0, 1])[proba.argmax(axis=1)], proba)


@dataclass
class Serving:
    compiled: Any
    version: int = 3
    name: str = "shop"
    classes: list = field(default_factory=lambda: [0, 1])


class Log:
    def __init__(self) -> None:
        self.appends: list[tuple] = []

    def append(self, records, predictions, proba, version, request_ids, *, classes=None):
        self.appends.append((list(records), list(predictions), version, list(request_ids)))


@dataclass
class State:
    log: Any = field(default_factory=Log)


def request(rid: str, *values: float) -> list[dict[str, Any]]:
    return [{"x": v, REQUEST_ID: rid} for v in values]


def test_requests_arriving_together_are_one_call_and_each_gets_its_own_answer():
    state, serving = State(), Serving(Doubler())

    async def main():
        batcher = Batcher(state, max_batch_size=64)
        return await asyncio.gather(batcher.score(serving, request("a", 1.0)),
                                    batcher.score(serving, request("b", 9.0, 2.0)))

    (status_a, answer_a), (status_b, answer_b) = asyncio.run(main())
    assert serving.compiled.calls == [3]
    assert status_a == status_b == 200
    assert [r["request_id"] for r in answer_a] == ["a"]
    assert [(r["prediction"], r["request_id"]) for r in answer_b] == [(1, "b"), (0, "b")]
    assert answer_b[0]["probabilities"] == {0: 0.09999999999999998, 1: 0.9}
    assert answer_a[0]["model"] == "shop" and answer_a[0]["model_version"] == 3
    (records, predictions, version, ids), = state.log.appends
    assert ids == ["a", "b", "b"] and predictions == [0, 1, 0] and version == 3
    assert all(REQUEST_ID not in r for r in records)


def test_a_call_holds_at_most_max_batch_size_records_and_a_swap_splits_it():
    state = State()
    old, new = Serving(Doubler()), Serving(Doubler(), version=4)

    async def main():
        batcher = Batcher(state, max_batch_size=4)
        return await asyncio.gather(
            batcher.score(old, request("a", 1, 2, 3)), batcher.score(old, request("b", 4, 5)),
            batcher.score(new, request("c", 6)), batcher.score(old, request("d", 7)))

    answers = asyncio.run(main())
    assert [status for status, _ in answers] == [200] * 4
    assert old.compiled.calls == [3, 2, 1] and new.compiled.calls == [1]
    assert answers[2][1][0]["model_version"] == 4 and answers[3][1][0]["model_version"] == 3


def test_a_request_cancelled_while_waiting_is_never_scored_nor_logged():
    state, serving = State(), Serving(Doubler())

    async def main():
        batcher = Batcher(state, max_batch_size=64)
        gone = asyncio.ensure_future(batcher.score(serving, request("gone", 1)))
        kept = asyncio.ensure_future(batcher.score(serving, request("kept", 2)))
        await asyncio.sleep(0)  # both are waiting for the loop's next turn
        gone.cancel()
        return await kept

    status, answer = asyncio.run(main())
    assert status == 200 and answer[0]["request_id"] == "kept"
    assert serving.compiled.calls == [1]
    assert [ids for *_, ids in state.log.appends] == [["kept"]]


def test_a_failing_model_is_one_500_naming_it_for_every_request_and_logs_nothing():
    state, serving = State(), Serving(Doubler(fail=True))

    async def main():
        batcher = Batcher(state, max_batch_size=64)
        return await asyncio.gather(batcher.score(serving, request("a", 1)),
                                    batcher.score(serving, request("b", 2)))

    for status, answer in asyncio.run(main()):
        assert status == 500
        assert answer["error"] == "shop v3 (onnx) failed to predict: RuntimeError: bad graph"
    assert state.log.appends == []
    status, answer = score(state, Serving(Doubler(fail=True)), [request("c", 1)])
    assert status == 500 and "bad graph" in answer["error"] and state.log.appends == []
