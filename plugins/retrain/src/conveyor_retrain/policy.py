"""Does the policy say retrain? Conditions on monitored batches, parsed with `conveyor.gate`.

A batch *breaches* when any (or, with `mode: all`, every) condition of `retrain.when` holds on
it. The policy triggers when the newest `consecutive` usable batches since the last retrain all
breach and at least `cooldown` batches were monitored since that retrain. Batches that failed
validation or had too little data ("invalid", "insufficient") neither breach nor break a streak:
they are skipped, as the issue asks, and the loop goes on.

A `metrics.NAME` condition may be relative to the champion's own validation score: "< champion -
0.05" compares each batch's measured value with the value the version it was checked against
measured on its test split when it was trained (its registry metrics).

The batch that starts the breaching streak which triggers a retrain is the *change*; the
decision records it. With `refresh: true`, every newly labelled batch after a change triggers a
refresh retrain (subject to `cooldown`) until `window.max_batches` batches lie since the change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor import ConfigError
from conveyor.gate import Condition, parse_condition

from conveyor_retrain.settings import WINDOW_SINCE, RetrainConfig, flatten

USABLE = ("ok", "drift")
# drift.popularity, drift.new_items, drift.new_users: a recommender's drift figures, which
# `conveyor feedback` records per period (details["drift"]).
RECOMMENDER_DRIFT = ("drift.popularity", "drift.new_items", "drift.new_users")
KEYS = ("drift.share", "drift.features", "prediction.drift", "quality.invalid_share",
        "quality.unexpected_share", *RECOMMENDER_DRIFT)


@dataclass(frozen=True)
class Change:
    """Where the behaviour changed: the first batch of the breaching streak that triggered."""

    batch: str
    at: float  # the batch's created_at

    def as_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "at": self.at}


@dataclass
class Verdict:
    retrain: bool
    reasons: list[str] = field(default_factory=list)
    considered: list[str] = field(default_factory=list)  # batch ids, newest last
    change: Change | None = None  # detected by this verdict, or the one it refreshes after
    refresh: bool = False  # a refresh after an earlier change, not a new breach


def parse_when(settings: RetrainConfig) -> dict[str, Condition]:
    if settings.mode not in ("any", "all"):
        raise ConfigError(f"retrain.mode must be 'any' or 'all', not '{settings.mode}'")
    if settings.consecutive < 1:
        raise ConfigError("retrain.consecutive must be at least 1")
    if settings.window.since not in WINDOW_SINCE:
        raise ConfigError(f"retrain.window.since must be one of {', '.join(WINDOW_SINCE)}, not "
                          f"'{settings.window.since}'")
    if settings.window.batches < 1 or settings.window.max_batches < 1:
        raise ConfigError("retrain.window.batches and retrain.window.max_batches must be at "
                          "least 1")
    if settings.refresh and settings.window.since != "change":
        raise ConfigError("retrain.refresh needs retrain.window.since: change (a refresh "
                          "retrains on every batch since the change)",
                          hint="set retrain.window.since=change, or retrain.refresh=false")
    if not 0 < settings.holdout_fraction < 1:
        raise ConfigError("retrain.holdout_fraction must be between 0 and 1 (exclusive)")
    conditions = {}
    for key, text in flatten(settings.when).items():
        if key not in KEYS and not key.startswith("metrics."):
            raise ConfigError(f"retrain.when.{key} is not a quantity monitoring measures",
                              hint="use " + ", ".join(KEYS) + " or metrics.NAME")
        condition = parse_condition(text, f"retrain.when.{key}", key.removeprefix("metrics."))
        if condition.relative and not key.startswith("metrics."):
            raise ConfigError(f"retrain.when.{key}: '{text}' compares with the champion, which "
                              "has a validation score only for metrics",
                              hint="write an absolute threshold such as '> 0.3', or compare "
                                   "metrics.NAME with the champion: '< champion - 0.05'")
        conditions[key] = condition
    return conditions


def measure(batch: Any, key: str) -> float | None:
    if key == "drift.share":
        return batch.drift_share
    if key == "drift.features":
        return float(batch.drifted_features)
    if key == "prediction.drift":
        return batch.prediction_drift
    if key in RECOMMENDER_DRIFT:
        return ((getattr(batch, "details", None) or {}).get("drift") or {}).get(
            key.removeprefix("drift."))
    if key.startswith("quality."):  # the batch's data quality (conveyor-monitor's figures)
        quality = (getattr(batch, "details", None) or {}).get("quality") or {}
        return quality.get(key.removeprefix("quality."))
    return batch.performance.get(key.removeprefix("metrics."))


def breaches(batch: Any, conditions: dict[str, Condition], mode: str,
             champion_metrics: Mapping[int, Mapping[str, float]] | None = None
             ) -> tuple[bool, list[str]]:
    held, notes = [], []
    for key, condition in conditions.items():
        value = measure(batch, key)
        if value is None:
            held.append(False)
            notes.append(f"{key}: not measured on this batch")
            continue
        reference = None
        if condition.relative:
            version = getattr(batch, "model_version", None)
            reference = (champion_metrics or {}).get(version, {}).get(
                key.removeprefix("metrics."))
            if reference is None:
                held.append(False)
                notes.append(f"{key}: v{version}, which the batch was checked against, "
                             "recorded no validation score to compare with")
                continue
        # The direction (is higher better?) follows the metric's own name, not the key's
        # ("metrics.neg_log_loss" reads as a loss); the line still names the key.
        metric = key.removeprefix("metrics.")
        ok, text = condition.check(metric, float(value), reference)
        text = key + text[len(metric):]
        held.append(ok)
        notes.append(text.replace("meets", "breaches").replace("misses", "within"))
    hit = any(held) if mode == "any" else bool(held) and all(held)
    return hit, notes


def decide(settings: RetrainConfig, batches: Sequence[Any], last_retrain_at: float | None, *,
           change: Change | None = None,
           champion_metrics: Mapping[int, Mapping[str, float]] | None = None) -> Verdict:
    """Apply the policy to the monitored batches (oldest first) of the champion's model.

    `change` is the last change an earlier decision detected (for `refresh`);
    `champion_metrics` maps each version to its validation metrics (for relative conditions).
    """
    conditions = parse_when(settings)
    if not conditions:
        return Verdict(False, ["retrain.when is empty: the policy never triggers on its own"])
    usable = [b for b in batches if b.status in USABLE]
    since = [b for b in usable if last_retrain_at is None or b.created_at > last_retrain_at]
    if last_retrain_at is not None and len(since) < settings.cooldown:
        return Verdict(False, [f"cooldown: {len(since)} of {settings.cooldown} batches monitored "
                               "since the last retrain"], [b.id for b in since])
    recent = since[-settings.consecutive:]
    if len(recent) < settings.consecutive:
        return Verdict(False, [f"{len(recent)} usable batch(es) since the last retrain; the "
                               f"policy needs {settings.consecutive} breaching in a row"],
                       [b.id for b in recent])
    reasons: list[str] = []
    for batch in recent:
        hit, notes = breaches(batch, conditions, settings.mode, champion_metrics)
        reasons.append(f"batch {batch.id} {'breaches' if hit else 'does not breach'}: "
                       + "; ".join(notes))
        if not hit:
            return _refresh(settings, usable, since, change, reasons, [b.id for b in recent])
    return Verdict(True, reasons, [b.id for b in recent],
                   change=Change(recent[0].id, float(recent[0].created_at)))


def _refresh(settings: RetrainConfig, usable: list[Any], since: list[Any], change: Change | None,
             reasons: list[str], considered: list[str]) -> Verdict:
    """No breach: still retrain when a change is recent and new labels arrived since the last
    retrain (`refresh`), so the champion grows into one trained on all the new behaviour."""
    if not settings.refresh or change is None:
        return Verdict(False, reasons, considered)
    after = [b for b in usable if b.created_at >= change.at]
    if len(after) > settings.window.max_batches:
        return Verdict(False, [*reasons, f"no refresh: the change at batch {change.batch} lies "
                                         f"{len(after)} batches back, beyond "
                                         f"retrain.window.max_batches ({settings.window.max_batches})"],
                       considered)
    labelled = [b for b in since if getattr(b, "labelled_rows", 0)]
    if not labelled:
        return Verdict(False, [*reasons, "no refresh: no labelled batch since the last retrain"],
                       considered)
    return Verdict(True, [*reasons, f"refresh: {len(labelled)} labelled batch(es) since the last "
                                    f"retrain, {len(after)} since the change at batch "
                                    f"{change.batch}"],
                   [b.id for b in labelled], change=change, refresh=True)
