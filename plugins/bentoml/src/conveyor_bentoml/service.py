"""The BentoML service `conveyor serve` runs (and a Bento made by `conveyor build` contains).

One class, `Predictor`, in BentoML 1.4's `@bentoml.service` style:

* `POST /predict`: a JSON list of records -> one result per record (prediction, class
  probabilities for classifiers, the model name and version that answered, the request id).
  The body is checked by the request type of `conveyor_bentoml.records` (derived from the
  project's schema) while BentoML parses it, and by `RequestGuard` before that (415, 413).
  Records of concurrent requests are predicted together (BentoML's adaptive batching; a
  version with a compiled form is answered by `conveyor_bentoml.predict_endpoint`, which
  batches the requests arriving together itself, without BentoML's route).
* `POST /recommend` (a recommender champion: `conveyor.serving.RecommendingModel`):
  `{"user_id": ..., "k": 10, "exclude_seen": true}` -> the top-k items with scores and positions,
  `fallback` (the user was unknown: the popularity fallback) and `k_clipped` (fewer items than
  k could be given: the catalogue, less what the user saw, is smaller). The body is checked by
  `records.recommend_request_type` (400 naming the field); a user id of the other type than the
  model's ids (text for a model of numeric ids, or the reverse) is a 400 too, never a fallback.
  /predict on a recommender, and /recommend on any other model, answer 409 naming the other.
  Each slate is one row of the prediction log (its module documents the row). Answered by
  `conveyor_bentoml.recommend.RecommendEndpoint`, a middleware inside `RequestGuard`.
* `GET /metadata`: model name, version, run id, sha256, task, features, input schema, and for
  a recommender its catalogue (items, users, max_k).
* `/livez`, `/healthz`, `/readyz`: BentoML's; ready once a verified model is loaded.

The model is loaded only through `conveyor.api.load_model` (sha256 checked before anything is
deserialised). A thread looks at the champion alias every `serve.poll_seconds`; a new champion
is loaded next to the one serving and replaces it with one reference assignment, so requests in
flight finish on the old model and none fails. Every prediction is appended to the project's
prediction log (`conveyor.predictions`) and written by a background thread.

Deliberate choices for the request path (measured in tests/bench/bench_serve.py): responses are
returned as ready-made JSON (BentoML would otherwise rebuild the output's JSON schema for every
response), tracing spans are skipped for /predict, metrics and the access log are off by
default, predict runs on BentoML's thread, never on the event loop, and the batching dispatcher
never holds a request while the model is idle (`conveyor_bentoml.batching`).
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bentoml
from bentoml._internal.server.http.traffic import TimeoutMiddleware
from conveyor.compiled import THREADS_ENV as INFERENCE_THREADS
from conveyor.compiled import CompiledStatus
from conveyor.serving import is_recommender
from conveyor.validation import SchemaDescription
from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from conveyor_bentoml import batching, compiled_path
from conveyor_bentoml import spec as specs
from conveyor_bentoml.guard import RequestGuard
from conveyor_bentoml.predict_endpoint import CompiledPredictEndpoint
from conveyor_bentoml.recommend import RecommendEndpoint
from conveyor_bentoml.records import REQUEST_ID, recommend_request_type, request_type
from conveyor_bentoml.settings import RecommendConfig

logger = logging.getLogger("conveyor.serve")

SPEC = specs.current()
SETTINGS = SPEC.settings
BATCHING = SETTINGS["batching"]
DESCRIPTION = SchemaDescription.from_dict(SPEC.schema) if SPEC.schema else None
# Fields checked against the model's features only when they were not known at start and the
# model takes them as they come (no row transforms).
Records = request_type(DESCRIPTION, SPEC.features, lambda: STATE.serving.features
                       if STATE.serving and STATE.serving.transform is None else None)
# A Bento built before serve.recommend existed has no such key in its spec: the default then.
MAX_K = int(SETTINGS.get("recommend", {}).get("max_k", RecommendConfig.max_k))
RecommendRequest = recommend_request_type(MAX_K)


@dataclass(frozen=True)
class Serving:
    """The model version answering now (replaced whole on a swap, never modified)."""

    model: Any
    name: str
    version: int
    run_id: str
    sha256: str
    features: list[str]
    classes: list[Any] | None
    loaded_at: float = field(default_factory=time.time)
    transform: Any = None  # the version's inference path (LoadedModel.transform), if any
    recommends: bool = False  # a conveyor.serving.RecommendingModel: /recommend, not /predict
    compiled: Any = None  # the version's conveyor.compiled.CompiledModel; None: Python scores
    status: Any = None  # its conveyor.compiled.CompiledStatus (what /metadata shows)


@dataclass
class State:
    serving: Serving | None = None
    error: str | None = None
    swaps: int = 0
    in_flight: int = 0  # /predict and /recommend requests being answered (RequestGuard)
    log: Any = None  # the PredictionLogWriter, when serve.log_predictions

    def refusal(self, path: str) -> str | None:
        """Why a request to `path` is for the other kind of model than the one serving."""
        serving = self.serving
        if serving is None:
            return None
        if serving.recommends and path == "/predict":
            return (f"{serving.name} v{serving.version} is a recommender: it recommends, it does "
                    'not predict; POST /recommend {"user_id": ..., "k": 10}')
        if not serving.recommends and path == "/recommend":
            return (f"{serving.name} v{serving.version} is not a recommender; POST /predict "
                    "with a list of records")
        return None


STATE = State()


def load(version: int | None) -> Serving:
    """A registered version (the champion when None), through conveyor.api.load_model."""
    from conveyor import api

    # One intra-op thread: a worker answers requests one batch at a time, and more threads
    # only contend for the cores (tests/bench/bench_serve.py); CONVEYOR_INFERENCE_THREADS wins.
    threads = None if os.environ.get(INFERENCE_THREADS) else 1
    loaded = api.load_model(Path(SPEC.project_dir), SPEC.model_name, version=version,
                            compiled=True, threads=threads)
    model = loaded.model
    compiled, status = loaded.compiled, loaded.compiled_status
    if not SETTINGS.get("compiled", True) and compiled is not None:
        compiled, status = None, CompiledStatus.python("serve.compiled is false")
    features = [str(c) for c in getattr(model, "feature_names_in_", SPEC.features)]
    classes = getattr(model, "classes_", None) if hasattr(model, "predict_proba") else None
    classes = None if classes is None else [_plain(c) for c in classes]
    if compiled is not None:
        features = list(compiled.features)
        classes = None if compiled.classes is None else list(compiled.classes)
    return Serving(model=model, name=loaded.name, version=loaded.number, run_id=loaded.run_id,
                   sha256=loaded.sha256, features=features, classes=classes,
                   transform=loaded.transform if loaded.contract is not None
                   and loaded.contract.transforms else None,
                   recommends=is_recommender(model), compiled=compiled,
                   status=status)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


async def metadata(_: Request) -> JSONResponse:
    serving = STATE.serving
    return JSONResponse({
        "model": SPEC.model_name,
        "version": serving.version if serving else None,
        "run_id": serving.run_id if serving else None,
        "sha256": serving.sha256 if serving else None,
        "loaded_at": serving.loaded_at if serving else None,
        "swaps": STATE.swaps,
        "ready": serving is not None,
        "error": STATE.error,
        "task": _task(serving),
        "catalogue": {"items": serving.model.item_count, "users": serving.model.user_count,
                      "max_k": MAX_K} if serving and serving.recommends else None,
        "classes": serving.classes if serving else None,
        "features": serving.features if serving else SPEC.features,
        "input_schema": SPEC.schema,
        "hot_swap": SPEC.hot_swap,
        "inference": serving.status.to_dict() if serving and serving.status else None,
    })


def _task(serving: Serving | None) -> str:
    if serving is not None and serving.recommends:
        return "recommendation"
    return "classification" if serving and serving.classes is not None else "regression"


# Mounted at the root: BentoML matches a mount passively, so /predict and the probes still
# reach their own routes, and GET /metadata needs no trailing slash.
metadata_app = Starlette(routes=[Route("/metadata", metadata, methods=["GET"])])


@bentoml.asgi_app(metadata_app, path="/")
@bentoml.service(
    name="conveyor",
    workers=int(SETTINGS["workers"]),
    traffic={"timeout": float(SETTINGS["timeout"]),
             "max_concurrency": int(SETTINGS["max_concurrency"])},
    metrics={"enabled": False},
    logging={"access": {"enabled": bool(SETTINGS["access_log"])}},
    tracing={"excluded_urls": ["predict", "metadata", "recommend"]},
)
class Predictor:
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._log = None
        if SETTINGS["log_predictions"]:
            from conveyor.predictions import PredictionLogWriter

            self._log = PredictionLogWriter(
                Path(SPEC.project_dir), SPEC.model_name, flush_rows=SETTINGS["log_flush_rows"],
                flush_seconds=SETTINGS["log_flush_seconds"])
        STATE.log = self._log
        try:
            STATE.serving = load(SPEC.version)
            logger.info("serving %s v%s", SPEC.model_name, STATE.serving.version)
        except Exception as exc:  # not ready (503) until a loadable champion appears
            STATE.error = f"{type(exc).__name__}: {exc}"
            logger.error("cannot load the champion of %s: %s", SPEC.model_name, STATE.error)
        self._failed: int | None = None
        # Everything loaded so far (BentoML, pandas, scikit-learn, the model: ~200k objects)
        # lives as long as the process; left to the collector, every full collection walked it
        # all, a 120-270 ms pause every few seconds under load (the c=1 p99).
        gc.collect()
        gc.freeze()
        if SPEC.hot_swap:
            threading.Thread(target=self._watch, name="champion-watch", daemon=True).start()

    @bentoml.api(route="/predict", batchable=bool(BATCHING["enabled"]),
                 max_batch_size=int(BATCHING["max_batch_size"]),
                 max_latency_ms=int(BATCHING["max_latency_ms"]))
    def predict(self, records: Records, /) -> list[dict[str, Any]]:  # type: ignore[valid-type]
        serving = STATE.serving  # one snapshot for the whole batch: a swap never splits it
        if serving is None:
            raise bentoml.exceptions.ServiceUnavailable(STATE.error or "no model loaded")
        request_ids = [record.pop(REQUEST_ID) for record in records]
        if serving.compiled is not None:
            return self._predict_compiled(serving, records, request_ids)
        import pandas as pd

        if serving.transform is None:
            inputs = pd.DataFrame.from_records(records, columns=serving.features)
        else:  # raw records through the row transforms the model was trained after
            inputs = serving.transform(pd.DataFrame.from_records(records)).reindex(
                columns=serving.features)
        if serving.classes is not None:
            proba = serving.model.predict_proba(inputs)
            predictions = [serving.classes[i] for i in proba.argmax(axis=1)]
            rows = proba.tolist()
            results = [{"prediction": p, "probabilities": dict(zip(serving.classes, r,
                                                                     strict=True)),
                        "model": serving.name, "model_version": serving.version,
                        "request_id": rid}
                       for p, r, rid in zip(predictions, rows, request_ids, strict=True)]
        else:
            proba = None
            predictions = serving.model.predict(inputs).tolist()
            results = [{"prediction": p, "model": serving.name,
                        "model_version": serving.version, "request_id": rid}
                       for p, rid in zip(predictions, request_ids, strict=True)]
        if self._log is not None:
            # The records as they came (a few objects each), not a frame (dozens): a part
            # buffers thousands of requests, and each object is work for the collector.
            self._log.append(records, predictions, proba, serving.version, request_ids,
                             classes=serving.classes)
        return results

    def _predict_compiled(self, serving: Serving, records: list[dict[str, Any]],
                          request_ids: list[str]) -> list[dict[str, Any]]:
        compiled = serving.compiled
        if serving.transform is None:  # validated records straight to typed columns
            columns = compiled_path.record_columns(records, compiled.features, compiled.kinds)
        else:  # raw records through the row transforms, then the model's columns
            import pandas as pd
            from conveyor.compiled import columns_from_frame

            frame = serving.transform(pd.DataFrame.from_records(records))
            columns = columns_from_frame(frame, compiled.features, compiled.kinds)
        return compiled_path.score_and_log(serving, columns, records, request_ids, self._log)

    def __is_ready__(self) -> bool:
        return STATE.serving is not None

    @bentoml.on_shutdown
    async def shutdown(self) -> None:
        # SIGTERM: uvicorn stopped accepting and waited for the requests it had; this wait (up
        # to the request deadline) covers any still counted, so the log holds them all.
        deadline = time.monotonic() + float(SETTINGS["timeout"])
        while STATE.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self._stop.set()
        if self._log is not None:
            await asyncio.to_thread(self._log.close)

    def _watch(self) -> None:
        from conveyor.store import Registry, open_store

        store = None
        while not self._stop.wait(float(SETTINGS["poll_seconds"])):
            try:
                if store is None:
                    store = open_store(Path(SPEC.project_dir))
                champion = Registry(store).aliases(SPEC.model_name).get("champion")
            except Exception as exc:
                logger.warning("cannot read the champion alias: %s", exc)
                store = None
                continue
            serving = STATE.serving
            if champion is None or champion == self._failed or \
                    (serving is not None and serving.version == champion):
                continue
            try:
                new = load(champion)
            except Exception as exc:  # keep answering with the version we have
                self._failed = champion
                STATE.error = f"v{champion}: {type(exc).__name__}: {exc}"
                logger.error("not swapping to %s v%s: %s", SPEC.model_name, champion, exc)
                continue
            STATE.serving, STATE.error, self._failed = new, None, None
            STATE.swaps += 1
            logger.info("now serving %s v%s (was v%s)", SPEC.model_name, new.version,
                        serving.version if serving else None)


Predictor.add_asgi_middleware(RequestGuard, paths=("/predict", "/recommend"),
                              max_body_bytes=int(float(SETTINGS["max_body_mb"]) * 2**20),
                              state=STATE)
# Inside the guard (added after it): /recommend is answered there (conveyor_bentoml.recommend),
# and /predict while a compiled form serves (conveyor_bentoml.predict_endpoint).
Predictor.add_asgi_middleware(RecommendEndpoint, state=STATE, request_type=RecommendRequest)
RECORDS_ADAPTER = TypeAdapter(Records)
Predictor.add_asgi_middleware(CompiledPredictEndpoint, state=STATE, adapter=RECORDS_ADAPTER,
                              max_batch_size=int(BATCHING["max_batch_size"])
                              if BATCHING["enabled"] else 0)


def _parse_with(adapter: Any) -> Any:
    def model_validate_json(cls: Any, json_data: Any, **_: Any) -> Any:
        return cls.model_construct(root=adapter.validate_json(json_data))

    return classmethod(model_validate_json)


# BentoML 1.4 parses a root-typed body by building the type's whole JSON schema (to see whether
# it is a string), then json.loads, then validating the Python objects: per request, and a body
# that is not JSON becomes a 500. Here the body goes straight to pydantic-core's JSON
# validation with an adapter built once: malformed JSON is a 400 (json_invalid) like any other
# bad input. The output is a plain JSON list: naming its media type spares BentoML from
# building the output's JSON schema on every response just to find it.
_API = Predictor.apis["predict"]


class _ClientErrorsAreNotServerErrors(logging.Filter):
    """BentoML logs a rejected request body as an error with a traceback; it is the client's
    error, already answered with a 400 that names the field and the rule: one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            record.msg, record.args, record.exc_info = (
                "rejected request: %d validation error(s), first: %s",
                (exc.error_count(), exc.errors(include_url=False, include_input=False)[0]),
                None)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


logging.getLogger("bentoml._internal.server.http_app").addFilter(_ClientErrorsAreNotServerErrors())
_API.input_spec.model_validate_json = _parse_with(RECORDS_ADAPTER)
_API.output_spec.media_type = "application/json"


async def _deadline(self: Any, scope: dict[str, Any], receive: Any, send: Any) -> None:
    """BentoML 1.4's TimeoutMiddleware.__call__, with its timer cancelled once the response
    starts and run outside the request's context.

    BentoML's own leaves a `serve.timeout`-long timer per request, which keeps the request's
    context (its Request, futures, closures: ~20 objects) alive for that long: 10 s x 1,400
    req/s held 270k objects for the collector to walk, full collections grew to 100-250 ms,
    and they were the c=32 p99.
    """
    if scope["type"] not in ("http", "websocket"):
        return await self.app(scope, receive, send)
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    timer = loop.call_later(self.timeout, _time_out, waiter, context=contextvars.Context())

    async def started(message: Any) -> None:
        if not waiter.done():
            waiter.set_result(None)
            timer.cancel()
        await send(message)

    task = asyncio.ensure_future(self.app(scope, receive, started))
    # An app that ends without answering (an error, a client gone) ends the wait too, so its
    # error reaches the error middleware now rather than never.
    task.add_done_callback(lambda _: waiter.done() or waiter.set_result(None))
    try:
        await waiter
    except TimeoutError:
        if task.cancel():  # its queued predict work is dropped too (conveyor_bentoml.batching)
            logger.warning("%s %s timed out after %s s: answered 504", scope.get("method", ""),
                           scope.get("path", ""), self.timeout)
            await JSONResponse({"error": f"Not able to process the request in {self.timeout} "
                                "seconds"}, status_code=504)(scope, receive, send)
    else:
        await task
    finally:
        timer.cancel()


def _time_out(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError)


TimeoutMiddleware.__call__ = _deadline
batching.install()
