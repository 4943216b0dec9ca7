"""`POST /recommend`: the top-k items of a recommender champion for one user.

Answered by `RecommendEndpoint`, a pure ASGI middleware just inside `RequestGuard` (which has
already refused what is not JSON, too large, or meant for another kind of model): a slate costs
tens of microseconds to score, and going on through BentoML's context middleware and Starlette's
routing to a mounted route cost ten times that (measured with wrk on a 150-item model: 1,170
req/s at c=32 through a mounted route, ~2,000 as here). Scored on the event loop for the same
reason: a hop to a worker thread would cost more than the slate.

The request body is `records.recommend_request_type`; the answer, the 400s and the slate's row
in the prediction log are built by `respond` (no I/O, testable on its own).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from conveyor_bentoml.guard import send_json
from conveyor_bentoml.records import new_request_id

logger = logging.getLogger("conveyor.serve")
PATH = "/recommend"


class RecommendEndpoint:
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
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        status, answer = respond(self.state, self.request_type, b"".join(chunks))
        await send_json(send, status, answer)


def respond(state: Any, request_type: Any, body: bytes) -> tuple[int, dict[str, Any]]:
    """The status and JSON answer for one request body; a slate answered is appended to
    `state.log` (one row, as `conveyor.predictions` documents)."""
    serving = state.serving  # one snapshot: a swap never splits an answer
    if serving is None:
        return 503, {"error": "no model is loaded: " + (state.error or "starting")}
    refusal = state.refusal(PATH)
    if refusal:
        return 409, {"error": refusal}
    try:
        asked = request_type.model_validate_json(body)
    except ValidationError as exc:
        return 400, rejected(exc)
    model = serving.model
    id_type = getattr(model, "user_id_type", object)
    if id_type in (int, str) and not isinstance(asked.user_id, id_type):
        kind = "whole numbers" if id_type is int else "text"
        message = (f"user_id: {asked.user_id!r} is not of the model's user id type: "
                   f"{serving.name} v{serving.version} knows users by {kind}")
        logger.warning("rejected %s request: %s", PATH, message)
        return 400, {"error": message, "errors": [{"loc": ["user_id"], "type": "user_id_type",
                                                   "msg": message}]}
    slate = model.recommend(asked.user_id, asked.k, exclude_seen=asked.exclude_seen)
    request_id = new_request_id()
    fallback = bool(slate.fallback)
    items = [{"item_id": item, "score": score, "position": position}
             for position, (item, score) in enumerate(slate, 1)]
    if state.log is not None:
        state.log.append([{"user_id": asked.user_id, "k": asked.k,
                           "exclude_seen": asked.exclude_seen, "fallback": fallback,
                           "scores": [score for _, score in slate]}],
                         [[item for item, _ in slate]], None, serving.version, request_id)
    return 200, {"request_id": request_id, "model": serving.name,
                 "model_version": serving.version, "user_id": asked.user_id, "k": asked.k,
                 "fallback": fallback, "k_clipped": len(items) < asked.k, "items": items}


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
