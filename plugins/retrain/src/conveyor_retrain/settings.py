"""The `retrain` config section (typed: an unknown key or a wrong type stops before anything runs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import conveyor

WINDOW_SINCE = ("last", "change")
COMPARE = ("holdout", "evaluation")


@dataclass
class WindowConfig:
    # Which labelled batches (that passed validation) the challenger trains on:
    #   last:   the newest `batches` of them;
    #   change: every one since the change the policy detected (the first batch of the breaching
    #           streak that triggered a retrain), at most `max_batches` of the newest. Training on
    #           the new behaviour only, and on all of it, is what catches up after a shift.
    since: str = "last"
    batches: int = 2
    max_batches: int = 12
    # ...plus the project's original training data (data.source) when true.
    include_history: bool = False


@dataclass
class RetrainConfig:
    # Conditions on monitored batches, e.g. {"drift.share": "> 0.3", "metrics.roc_auc": "< 0.78"}.
    # Keys: drift.share (drifted features / features tested), drift.features (their number),
    # prediction.drift (the prediction drift score), metrics.NAME (performance on the labels),
    # quality.invalid_share (rows set aside for breaking the schema / rows read),
    # quality.unexpected_share (rows with a value outside the schema's expectations / rows kept).
    # A metrics.NAME condition may be relative to the champion's own validation score (the
    # value its training run measured on its test split): "< champion - 0.05".
    # Empty: the policy never triggers on its own (`conveyor retrain --force` still works).
    when: dict[str, Any] = field(default_factory=dict)
    mode: str = "any"  # any | all: which of the conditions must hold for a batch to breach
    consecutive: int = 1  # breaching batches in a row (newest last) before acting
    cooldown: int = 0  # batches that must be monitored after a retrain before the next one
    min_rows: int = 500  # rows the challenger must have to train on, or the retrain is skipped
    window: WindowConfig = field(default_factory=WindowConfig)
    # Share of the newest window batch held out: challenger and champion are scored on it.
    holdout_fraction: float = 0.25
    # What the challenger must do on the hold-out to replace the champion, e.g. {"roc_auc":
    # "+0.005"} (beat it by 0.005) or {"accuracy": ">= champion"}. Empty: not be worse on the
    # project's primary metric (evaluate.primary, else the first of evaluate.metrics).
    promote_if: dict[str, Any] = field(default_factory=dict)
    # After a change was detected, each newly labelled batch trains a refresh challenger on the
    # window since the change (window.since: change), which must clear promote_if like any
    # other, until the change lies window.max_batches batches back. A champion trained on the
    # first week after a shift thus grows into one trained on all of the new behaviour.
    refresh: bool = False
    model_name: str | None = None  # default: registry.model_name
    # The config key the challenger's run gets the window file as (and, with
    # window.include_history, the history file is read from): data.source for the sklearn
    # pipelines, recsys.source for the recommend pipeline.
    source_key: str = "data.source"
    # How the challenger is compared with the champion:
    #   holdout:    both scored with scikit-learn scorers on a hold-out of the newest batch
    #               (holdout_fraction of it, labelled by data.target);
    #   evaluation: the challenger's own evaluate stage, which scores it and the champion on its
    #               test period, on what the champion never trained on, with a paired bootstrap
    #               (the version's recorded comparison); promote_if is checked against that.
    #               No target column and no hold-out: the window trains whole, and monitored
    #               files are read whole, each once (a recommender's feedback files).
    compare: str = "holdout"
    # Config overrides for the challenger's training run only (Hydra syntax, as on the command
    # line), e.g. [recsys.refit=true]: what a retrain registers may be trained differently from
    # what experiments on the same data register.
    overrides: list[str] = field(default_factory=list)


def flatten(conditions: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"drift": {"share": "> 0.3"}} and {"drift.share": "> 0.3"} both mean drift.share."""
    flat: dict[str, str] = {}
    for key, value in conditions.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = str(value)
    return flat


SCHEMA = conveyor.ConfigSchema("retrain", RetrainConfig,
                               "retraining policy: when, window, promote_if")


def settings_from(config: Mapping[str, Any]) -> RetrainConfig:
    """The section from a resolved config mapping (defaults where absent); the model defaults
    to the registry's model, else the project's name."""
    settings = SCHEMA.read(config)
    if settings.model_name is None:
        settings.model_name = (config.get("registry") or {}).get("model_name") or config.get("project")
    return settings
