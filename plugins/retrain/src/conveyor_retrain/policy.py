"""Does the policy say retrain? Conditions on monitored batches, parsed with `conveyor.gate`.

A batch *breaches* when any (or, with `mode: all`, every) condition of `retrain.when` holds on
it. The policy triggers when the newest `consecutive` usable batches since the last retrain all
breach and at least `cooldown` batches were monitored since that retrain. Batches that failed
validation or had too little data ("invalid", "insufficient") neither breach nor break a streak:
they are skipped, as the issue asks, and the loop goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor import ConfigError
from conveyor.gate import Condition, parse_condition

from conveyor_retrain.settings import RetrainConfig, flatten

USABLE = ("ok", "drift")
KEYS = ("drift.share", "drift.features", "prediction.drift", "quality.invalid_share",
        "quality.unexpected_share")


@dataclass
class Verdict:
    retrain: bool
    reasons: list[str] = field(default_factory=list)
    considered: list[str] = field(default_factory=list)  # batch ids, newest last


def parse_when(settings: RetrainConfig) -> dict[str, Condition]:
    if settings.mode not in ("any", "all"):
        raise ConfigError(f"retrain.mode must be 'any' or 'all', not '{settings.mode}'")
    if settings.consecutive < 1:
        raise ConfigError("retrain.consecutive must be at least 1")
    if not 0 < settings.holdout_fraction < 1:
        raise ConfigError("retrain.holdout_fraction must be between 0 and 1 (exclusive)")
    conditions = {}
    for key, text in flatten(settings.when).items():
        if key not in KEYS and not key.startswith("metrics."):
            raise ConfigError(f"retrain.when.{key} is not a quantity monitoring measures",
                              hint="use " + ", ".join(KEYS) + " or metrics.NAME")
        condition = parse_condition(text, f"retrain.when.{key}", key.removeprefix("metrics."))
        if condition.relative:
            raise ConfigError(f"retrain.when.{key}: '{text}' compares with the champion, which "
                              "a monitored batch has no value for",
                              hint="write an absolute threshold such as '< 0.78'")
        conditions[key] = condition
    return conditions


def measure(batch: Any, key: str) -> float | None:
    if key == "drift.share":
        return batch.drift_share
    if key == "drift.features":
        return float(batch.drifted_features)
    if key == "prediction.drift":
        return batch.prediction_drift
    if key.startswith("quality."):  # the batch's data quality (conveyor-monitor's figures)
        quality = (getattr(batch, "details", None) or {}).get("quality") or {}
        return quality.get(key.removeprefix("quality."))
    return batch.performance.get(key.removeprefix("metrics."))


def breaches(batch: Any, conditions: dict[str, Condition], mode: str) -> tuple[bool, list[str]]:
    held, notes = [], []
    for key, condition in conditions.items():
        value = measure(batch, key)
        if value is None:
            held.append(False)
            notes.append(f"{key}: not measured on this batch")
            continue
        ok, text = condition.check(key, float(value), None)
        held.append(ok)
        notes.append(text.replace("meets", "breaches").replace("misses", "within"))
    hit = any(held) if mode == "any" else bool(held) and all(held)
    return hit, notes


def decide(settings: RetrainConfig, batches: Sequence[Any], last_retrain_at: float | None
           ) -> Verdict:
    """Apply the policy to the monitored batches (oldest first) of the champion's model."""
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
        hit, notes = breaches(batch, conditions, settings.mode)
        reasons.append(f"batch {batch.id} {'breaches' if hit else 'does not breach'}: "
                       + "; ".join(notes))
        if not hit:
            return Verdict(False, reasons, [b.id for b in recent])
    return Verdict(True, reasons, [b.id for b in recent])
