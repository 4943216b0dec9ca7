"""The `serve` config section (typed: unknown keys and wrong types stop a command before it
starts). `conveyor serve` reads it from the project's config; `--port`/`--host` win over it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import conveyor


@dataclass
class BatchingConfig:
    # Adaptive batching (BentoML's dispatcher): concurrent requests are predicted together, up
    # to max_batch_size records; a batch starts as soon as the model is free, with whatever
    # queued meanwhile (conveyor_bentoml.batching: no request waits for company).
    # max_latency_ms is the dispatcher's latency budget: a queued request it expects to miss
    # it is refused at once with 503 ("overloaded"). At 2 s, a burst of 40 x 50 records on a
    # busy 2-core machine got 503s (seen as "SIGTERM drops requests"), so it defaults to
    # serve.timeout's 10 s: the deadline (504) and serve.max_concurrency (429) are the limits
    # clients meet.
    enabled: bool = True
    max_batch_size: int = 64
    max_latency_ms: int = 10_000


@dataclass
class RecommendConfig:
    # POST /recommend (a recommender champion): the largest k a request may ask for; a larger
    # one gets 400. A k above the catalogue's size is not an error: the answer holds every item
    # the user may get and says "k_clipped": true.
    max_k: int = 100


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 3000
    # Worker processes (each loads the model once). 1 suits a small machine: batching, not
    # processes, is what gives throughput for a fast model.
    workers: int = 1
    # A request not answered within this many seconds gets 504 (its slot is freed).
    timeout: float = 10.0
    # Requests in progress at once per server; more get a fast 429. /livez, /readyz never count.
    max_concurrency: int = 128
    # Bodies larger than this get 413 before anything is read into memory.
    max_body_mb: float = 1.0
    # How often the server looks at the champion alias in the store (hot swap), in seconds.
    poll_seconds: float = 1.0
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    # The prediction log (.conveyor/predictions/<model>/): every request's inputs and outputs,
    # written by a background thread every flush_rows rows or flush_seconds seconds.
    log_predictions: bool = True
    log_flush_rows: int = 5000
    log_flush_seconds: float = 2.0
    # BentoML's access log line per request (off: it costs on every request).
    access_log: bool = False
    # Answer with the version's compiled form (conveyor.compiled: ONNX) when it has one; false
    # answers with the Python model (/metadata's `inference` says which, and why).
    compiled: bool = True


SCHEMA = conveyor.ConfigSchema("serve", ServeConfig,
                               "conveyor serve: port, batching, limits, prediction log")


def settings_from(config: Any) -> ServeConfig:
    """The section from a resolved config mapping (defaults where absent)."""
    return SCHEMA.read(config)


def as_dict(settings: ServeConfig) -> dict[str, Any]:
    return asdict(settings)
