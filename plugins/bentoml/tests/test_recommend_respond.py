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
