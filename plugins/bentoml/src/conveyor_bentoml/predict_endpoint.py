"""`POST /predict` answered by the version's compiled form, without BentoML's request path.

`CompiledPredictEndpoint` is a pure ASGI middleware just inside `RequestGuard` (which has
already refused what is not JSON, too large, or meant for another kind of model), in the place
`RecommendEndpoint` holds for /recommend. While the version serving has a compiled form
(`conveyor.compiled`) and no row transforms, it answers /predict itself: the body is validated
by the same request type BentoML's route uses (`records.request_type`, through one pydantic
`TypeAdapter`), the records go to the compiled model as typed columns
(`compiled_path.record_columns`), and the answer and the prediction log's rows are the ones
the route builds (`compiled_path.answers`). Anything else (a version served by its Python
model, or with row transforms) goes on to BentoML's route and its adaptive batching, as
before.

Why: the compiled model answers one record in ~50 microseconds, and BentoML's route around it
(its context and routing middleware, the IO model, its batching dispatcher, a worker thread)
cost several times that per request (wrk, c=32, 2 cores: 2,960 req/s through the route, about
8,500 here with the batching below).

Batching (`serve.batching`) is done here, on the event loop: the small requests (up to
`INLINE_RECORDS` records) that arrive together, within one turn of the loop, are scored in one
call of the compiled model, up to `serve.batching.max_batch_size` records per call, and each
gets its own answer; a request cancelled meanwhile (its deadline passed) is never scored. A
larger request is scored alone in a worker thread, so the loop keeps answering other requests,
the probes and the deadline (`serve.timeout`, 504), which BentoML's traffic middleware around
this one still enforces, as it does `serve.max_concurrency` (429). With batching off, each
request is scored as it comes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from pydantic import ValidationError

from conveyor_bentoml import compiled_path
from conveyor_bentoml.guard import read_body, send_json
from conveyor_bentoml.records import REQUEST_ID

logger = logging.getLogger("conveyor.serve")
PATH = "/predict"
# Up to this many records a request is scored on the event loop (~0.1 ms for a tree ensemble);
# beyond, in a worker thread.
INLINE_RECORDS = 64


class CompiledPredictEndpoint:
    """The ASGI middleware answering `POST /predict` with the compiled form (any other request,
    and /predict while the Python model serves, goes on to `app`).

    `state` is the service's State (the version serving, the prediction log); `adapter` a
    pydantic `TypeAdapter` of the request type (`records.request_type`); `max_batch_size` the
    most records one call of the model scores for requests batched together (0: no batching).
    """

    def __init__(self, app: Any, *, state: Any, adapter: Any, max_batch_size: int = 64) -> None:
        self.app = app
        self.state = state
        self.adapter = adapter
        self.batcher = Batcher(state, max_batch_size) if max_batch_size > 0 else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        serving = self.state.serving  # one snapshot: a swap never splits an answer
        if serving is None or serving.compiled is None or serving.transform is not None:
            return await self.app(scope, receive, send)
        body = await read_body(receive)
        if body is None:
            return  # the client went away
        try:
            records = self.adapter.validate_json(body)
        except ValidationError as exc:
            return await send_json(send, 400, rejected(exc))
        if len(records) > INLINE_RECORDS:
            import anyio.to_thread

            status, answer = await anyio.to_thread.run_sync(score, self.state, serving,
                                                            [records])
            answer = answer[0] if status == 200 else answer
        elif self.batcher is not None:
            status, answer = await self.batcher.score(serving, records)
        else:
            status, answers = score(self.state, serving, [records])
            answer = answers[0] if status == 200 else answers
        await send_json(send, status, answer)


class Batcher:
    """Requests that arrive within one turn of the event loop, scored together: the first
    schedules a call for the loop's next turn, the others join it (up to `max_batch_size`
    records a call)."""

    def __init__(self, state: Any, max_batch_size: int) -> None:
        self.state = state
        self.max_batch_size = max(1, int(max_batch_size))
        self._waiting: list[tuple[Any, list[dict[str, Any]], asyncio.Future]] = []

    async def score(self, serving: Any, records: list[dict[str, Any]]) -> tuple[int, Any]:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._run)
        self._waiting.append((serving, records, answer))
        return await answer

    def _run(self) -> None:
        waiting, self._waiting = self._waiting, []
        # Cancelled meanwhile (504): never scored, never logged.
        waiting = deque(entry for entry in waiting if not entry[2].done())
        while waiting:
            serving = waiting[0][0]  # a swap between two requests: each version its own call
            batch, size = [], 0
            while waiting and waiting[0][0] is serving and \
                    (not batch or size + len(waiting[0][1]) <= self.max_batch_size):
                entry = waiting.popleft()
                batch.append(entry)
                size += len(entry[1])
            try:
                status, answers = score(self.state, serving,
                                        [records for _, records, _ in batch])
            except Exception as exc:  # a bug here must not leave the requests waiting
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for index, (_, _, future) in enumerate(batch):
                if not future.done():
                    future.set_result((status, answers[index] if status == 200 else answers))


def score(state: Any, serving: Any, requests: list[list[dict[str, Any]]]
          ) -> tuple[int, Any]:
    """200 and each request's JSON answer (a list per request) for validated records scored by
    `serving.compiled` in one call, or 500 and one error for them all; the rows are appended to
    `state.log` once the answers are built (a failed answer logs nothing). No I/O: safe in a
    worker thread."""
    records = [record for request in requests for record in request]
    request_ids = [record.pop(REQUEST_ID) for record in records]
    compiled = serving.compiled
    try:
        columns = compiled_path.record_columns(records, compiled.features, compiled.kinds)
        results = compiled_path.score_and_log(serving, columns, records, request_ids, state.log)
    except Exception as exc:  # the model's failure is the server's 500, never a traceback
        message = (f"{serving.name} v{serving.version} ({compiled.form}) failed to predict: "
                   f"{type(exc).__name__}: {exc}")
        logger.error("%s %s", PATH, message, exc_info=True)
        return 500, {"error": message}
    answers, start = [], 0
    for request in requests:
        answers.append(results[start:start + len(request)])
        start += len(request)
    return 200, answers


def rejected(exc: ValidationError) -> dict[str, Any]:
    """A 400's answer naming each record and field (`loc`) and rule (`type`)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    logger.warning("rejected %s request: %d validation error(s), first: %s: %s (%s)", PATH,
                   len(errors), where, first["msg"], first["type"])
    return {"error": f"{where}: {first['msg']} ({first['type']})",
            "errors": [{"loc": list(e["loc"]), "type": e["type"], "msg": e["msg"]}
                       for e in errors]}
