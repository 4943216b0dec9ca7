"""`POST /recommend`: the top-k items of a recommender champion for one user.

Answered by `RecommendEndpoint`, a pure ASGI middleware just inside `RequestGuard` (which has
already refused what is not JSON, too large, or meant for another kind of model): a slate costs
tens of microseconds to score, and going on through BentoML's context middleware and Starlette's
routing to a mounted route cost ten times that (measured with wrk on a 150-item model: 1,170
req/s at c=32 through a mounted route, ~2,000 as here). Scored on the event loop for the same
reason: a hop to a worker thread would cost more than the slate; a model that says its
`recommend` is slow (`slow_recommend`, e.g. the LightGBM re-ranker) is called in a worker
thread instead, so one slow slate never stalls the loop (probes included).

The request body is `records.recommend_request_type`; `check` refuses what cannot be answered
(no I/O), `build` calls the model and builds the answer and the slate's row (no I/O: safe in a
thread), `record` appends that row to the prediction log once the answer is built; `respond`
does the three in a row (testable without a server).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from conveyor_bentoml.guard import read_body, send_json
from conveyor_bentoml.records import new_request_id

logger = logging.getLogger("conveyor.serve")
PATH = "/recommend"


class RecommendEndpoint:
    """The ASGI middleware answering `POST /recommend` (any other request goes on to `app`).

    `state` is the service's State (the model serving, its refusals, the prediction log);
    `request_type` the pydantic model of the body (`records.recommend_request_type`). A
    model whose `recommend` is slow (`slow_recommend` true, e.g. a LightGBM re-ranker: a
    predict per request) is called in a worker thread so the loop keeps answering other
    requests and the probes; the others on the loop (a hop costs more than their slate)."""

    def __init__(self, app: Any, *, state: Any, request_type: Any) -> None:
        self.app = app
        self.state = state  # the service's State: the model serving, the prediction log
        self.request_type = request_type

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            return await self.app(scope, receive, send)
        if scope["method"] != "POST":
            return await send_json(send, 405, {"error": f"{scope['method']} {PATH}: use POST "
                                               'with {"user_id": ..., "k": 10}'})
        body = await read_body(receive)
        if body is None:
            return  # the client went away
        checked = check(self.state, self.request_type, body)
        if isinstance(checked, Answer):
            return await send_json(send, checked.status, checked.body)
        serving, asked = checked
        if getattr(serving.model, "slow_recommend", False):
            import anyio.to_thread

            answer = await anyio.to_thread.run_sync(build, serving, asked)
        else:
            answer = build(serving, asked)
        record(self.state, serving, answer)
        await send_json(send, answer.status, answer.body)


@dataclass(frozen=True)
class Answer:
    """A status and JSON body; `slate` is the row for the prediction log (records,
    predictions, request id) when a slate was answered."""

    status: int
    body: dict[str, Any]
    slate: tuple[list[dict[str, Any]], list[list[Any]], str] | None = None


def respond(state: Any, request_type: Any, body: bytes) -> tuple[int, dict[str, Any]]:
    """The status and JSON answer for one request body; a slate answered is appended to
    `state.log` (one row, as `conveyor.predictions` documents). What the endpoint does, all
    on the calling thread."""
    checked = check(state, request_type, body)
    if isinstance(checked, Answer):
        return checked.status, checked.body
    serving, asked = checked
    answer = build(serving, asked)
    record(state, serving, answer)
    return answer.status, answer.body


def check(state: Any, request_type: Any, body: bytes) -> Answer | tuple[Any, Any]:
    """The refusal (503 nothing loaded, 409 another kind of model, 400 a bad body or user id)
    or the serving snapshot and the request to answer. No I/O."""
    serving = state.serving  # one snapshot: a swap never splits an answer
    if serving is None:
        return Answer(503, {"error": "no model is loaded: " + (state.error or "starting")})
    refusal = state.refusal(PATH)
    if refusal:
        return Answer(409, {"error": refusal})
    try:
        asked = request_type.model_validate_json(body)
    except ValidationError as exc:
        return Answer(400, rejected(exc))
    id_type = getattr(serving.model, "user_id_type", object)
    if id_type in (int, str) and not isinstance(asked.user_id, id_type):
        kind = "whole numbers" if id_type is int else "text"
        message = (f"user_id: {asked.user_id!r} is not of the model's user id type: "
                   f"{serving.name} v{serving.version} knows users by {kind}")
        logger.warning("rejected %s request: %s", PATH, message)
        return Answer(400, {"error": message, "errors": [
            {"loc": ["user_id"], "type": "user_id_type", "msg": message}]})
    return serving, asked


def build(serving: Any, asked: Any) -> Answer:
    """The model's slate for `asked` as the answer, ids and scores made JSON's (see
    `plain_item`, `plain_score`); any failure of the model, or an id that is not a whole
    number or text, is a 500 with a one-line error naming the model and version (logged
    once, with its traceback). No I/O: safe in a worker thread."""
    try:
        slate = serving.model.recommend(asked.user_id, asked.k, exclude_seen=asked.exclude_seen)
        fallback = bool(slate.fallback)
        pairs = [(plain_item(item), plain_score(score)) for item, score in slate]
    except Exception as exc:  # a model's failure is the server's 500, never a bare traceback
        message = (f"{serving.name} v{serving.version} failed to recommend for user_id "
                   f"{asked.user_id!r}: {type(exc).__name__}: {exc}")
        logger.error("%s %s", PATH, message, exc_info=True)
        return Answer(500, {"error": message})
    request_id = new_request_id()
    items = [{"item_id": item, "score": score, "position": position}
             for position, (item, score) in enumerate(pairs, 1)]
    row = {"user_id": asked.user_id, "k": asked.k, "exclude_seen": asked.exclude_seen,
           "fallback": fallback, "scores": [score for _, score in pairs]}
    return Answer(200, {"request_id": request_id, "model": serving.name,
                        "model_version": serving.version, "user_id": asked.user_id,
                        "k": asked.k, "fallback": fallback, "k_clipped": len(items) < asked.k,
                        "items": items},
                  ([row], [[item for item, _ in pairs]], request_id))


def record(state: Any, serving: Any, answer: Answer) -> None:
    """Append the answered slate to `state.log` (after the answer is built, so a failed
    answer logs nothing)."""
    if answer.slate is not None and state.log is not None:
        records, predictions, request_id = answer.slate
        state.log.append(records, predictions, None, serving.version, request_id)


def plain_item(item: Any) -> int | str:
    """An item id as JSON has it: numpy scalars made plain (`.item()`); an id that is then
    not a whole number or text is refused (TypeError), as `RecommendingModel` documents."""
    value = item.item() if hasattr(item, "item") else item
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"item id {item!r} is a {type(item).__name__}; item ids are whole "
                        "numbers or text")
    return value


def plain_score(score: Any) -> float | None:
    """A score as JSON has it: a float, or null when it is not finite (NaN or infinite:
    JSON has no such number; the item keeps its position)."""
    value = float(score)
    return value if math.isfinite(value) else None


def rejected(exc: ValidationError) -> dict[str, Any]:
    """A 400's answer naming each field (`loc`) and rule (`type`), as /predict's do."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    if first["loc"] == ("k",) and first["type"] == "less_than_equal":
        first["msg"] += " (serve.recommend.max_k)"
    logger.warning("rejected %s request: %s: %s (%s)", PATH, where, first["msg"], first["type"])
    return {"error": f"{where}: {first['msg']} ({first['type']})",
            "errors": [{"loc": list(e["loc"]), "type": e["type"], "msg": e["msg"]}
                       for e in errors]}
