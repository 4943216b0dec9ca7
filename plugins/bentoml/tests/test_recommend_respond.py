"""`conveyor_bentoml.recommend.respond` without a server: what the endpoint answers for each
state of the service (nothing loaded, the other kind of model) and a slate nobody can fill."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from conveyor_bentoml.recommend import respond
from conveyor_bentoml.records import recommend_request_type

REQUEST = recommend_request_type(50)


class Slate(list):
    fallback = False


class SeenItAll:
    """A RecommendingModel whose one user has seen the whole catalogue."""

    item_count, user_count, user_id_type = 3, 1, int

    def recommend(self, user_id, k=10, exclude_seen=True):
        slate = Slate([] if exclude_seen else [(1, 0.5), (2, 0.25), (3, 0.125)][:k])
        slate.fallback = user_id != 7
        return slate


@dataclass
class Serving:
    model: Any
    name: str = "shop"
    version: int = 4
    recommends: bool = True


@dataclass
class State:
    serving: Any = None
    error: str | None = None
    log: Any = None

    def refusal(self, path):
        return None if self.serving.recommends else "shop v4 is not a recommender; POST /predict"


class Log:
    def __init__(self):
        self.rows = []

    def append(self, *args):
        self.rows.append(args)


def body(**fields) -> bytes:
    return json.dumps(fields).encode()


def test_nothing_loaded_is_503_and_another_kind_of_model_409():
    status, answer = respond(State(error="v3: tampered"), REQUEST, body(user_id=7))
    assert status == 503 and "tampered" in answer["error"]
    status, answer = respond(State(Serving(object(), recommends=False)), REQUEST, body(user_id=7))
    assert status == 409 and "POST /predict" in answer["error"]


def test_an_empty_slate_is_answered_clipped_and_logged():
    state = State(Serving(SeenItAll()), log=Log())
    status, answer = respond(state, REQUEST, body(user_id=7, k=2))
    assert status == 200 and answer["items"] == [] and answer["k_clipped"] is True
    assert answer["fallback"] is False and answer["model_version"] == 4
    records, predictions, _, version, request_id = state.log.rows[0]
    assert records == [{"user_id": 7, "k": 2, "exclude_seen": True, "fallback": False,
                        "scores": []}]
    assert (predictions, version, request_id) == ([[]], 4, answer["request_id"])
    status, answer = respond(state, REQUEST, body(user_id=7, k=2, exclude_seen=False))
    assert [(i["item_id"], i["position"]) for i in answer["items"]] == [(1, 1), (2, 2)]
    assert answer["k_clipped"] is False


def test_a_text_id_for_numeric_ids_and_a_k_too_large_name_the_field_and_are_not_logged():
    state = State(Serving(SeenItAll()), log=Log())
    status, answer = respond(state, REQUEST, body(user_id="7"))
    assert status == 400 and answer["errors"][0]["loc"] == ["user_id"]
    assert "whole numbers" in answer["error"]
    status, answer = respond(state, REQUEST, body(user_id=7, k=51))
    assert status == 400 and "serve.recommend.max_k" in answer["error"]
    assert state.log.rows == []


class NumpyScores:
    """A RecommendingModel of another plugin: numpy ids and scores, a NaN among them."""

    item_count, user_count, user_id_type = 3, 1, int

    def recommend(self, user_id, k=10, exclude_seen=True):
        import numpy as np

        return Slate([(np.int64(1), np.float32(0.5)), (np.str_("b"), np.float64("nan")),
                      (np.int64(3), np.float64("inf"))][:k])


class Broken:
    item_count, user_count, user_id_type = 3, 1, int

    def recommend(self, user_id, k=10, exclude_seen=True):
        raise KeyError("feature table went missing")


class OddIds:
    item_count, user_count, user_id_type = 3, 1, int

    def recommend(self, user_id, k=10, exclude_seen=True):
        return Slate([((1, 2), 0.5)])


def test_numpy_ids_and_scores_are_plain_json_and_non_finite_scores_are_null():
    state = State(Serving(NumpyScores()), log=Log())
    status, answer = respond(state, REQUEST, body(user_id=7, k=3))
    assert status == 200
    assert answer["items"] == [{"item_id": 1, "score": 0.5, "position": 1},
                               {"item_id": "b", "score": None, "position": 2},
                               {"item_id": 3, "score": None, "position": 3}]
    assert type(answer["items"][0]["item_id"]) is int
    json.loads(json.dumps(answer, allow_nan=False))  # valid JSON: no NaN, no Infinity
    records, predictions, *_ = state.log.rows[0]
    assert predictions == [[1, "b", 3]] and records[0]["scores"] == [0.5, None, None]


def test_a_failing_model_is_a_one_line_500_naming_it_and_logs_no_slate(caplog, monkeypatch):
    import logging

    # Earlier tests in the same worker may have configured logging (BentoML's dictConfig
    # disables loggers that existed before it, DVC's handlers stop propagation): listen on
    # the service's logger itself.
    served = logging.getLogger("conveyor.serve")
    monkeypatch.setattr(served, "disabled", False)
    monkeypatch.setattr(served, "level", logging.NOTSET)
    served.addHandler(caplog.handler)
    monkeypatch.setattr(served, "propagate", False)  # each record seen once, by caplog
    try:
        _refused_once_each(caplog)
    finally:
        served.removeHandler(caplog.handler)


def _refused_once_each(caplog) -> None:
    for model, needle in ((Broken(), "KeyError"), (OddIds(), "whole numbers or text")):
        state = State(Serving(model), log=Log())
        caplog.clear()
        status, answer = respond(state, REQUEST, body(user_id=7))
        assert status == 500 and set(answer) == {"error"}
        assert answer["error"].startswith("shop v4 failed to recommend for user_id 7: ")
        assert needle in answer["error"] and "\n" not in answer["error"]
        assert state.log.rows == []  # the answer failed: no slate in the log
        assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1


class Threads(SeenItAll):
    """Notes the thread each recommend runs on."""

    def __init__(self, slow):
        self.slow_recommend = slow
        self.threads = []

    def recommend(self, user_id, k=10, exclude_seen=True):
        import threading

        self.threads.append(threading.current_thread())
        return super().recommend(user_id, k, exclude_seen)


def test_a_slow_model_recommends_in_a_worker_thread_a_fast_one_on_the_loop():
    import threading

    import anyio
    from conveyor_bentoml.recommend import RecommendEndpoint

    async def ask(endpoint):
        sent = []

        async def receive():
            return {"type": "http.request", "body": body(user_id=7, k=2, exclude_seen=False)}

        async def send(message):
            sent.append(message)

        await endpoint({"type": "http", "path": "/recommend", "method": "POST"}, receive, send)
        return sent[0]["status"], json.loads(sent[1]["body"])

    for slow in (True, False):
        model = Threads(slow)
        state = State(Serving(model), log=Log())
        status, answer = anyio.run(ask, RecommendEndpoint(None, state=state,
                                                          request_type=REQUEST))
        assert status == 200 and [i["item_id"] for i in answer["items"]] == [1, 2]
        assert len(state.log.rows) == 1
        on_loop = model.threads == [threading.main_thread()]
        assert on_loop is not slow
