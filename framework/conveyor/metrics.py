"""Which way is better for a metric.

The direction comes from whoever computes the metric: an evaluate stage reports it with its
metrics (`{"directions": {name: "higher" | "lower"}}`, scikit-learn's scorers know their sign),
and the gate, the registry and sweeps use what was reported. The name-based guess below is only
a fallback for names no computer reported a direction for.
"""

from __future__ import annotations

from collections.abc import Mapping

LOWER_IS_BETTER_MARKERS = ("error", "loss", "mse", "mae", "rmse", "deviance", "brier")
# Scores whose names contain a marker above but are better when higher: d2 (a fraction of
# deviance explained, like r2) and scikit-learn's negated errors.
HIGHER_IS_BETTER_PREFIXES = ("neg_", "d2_", "r2", "explained_variance")
HIGHER, LOWER = "higher", "lower"


def greater_is_better(metric: str, reported: Mapping[str, str] | None = None) -> bool:
    """True when a larger value of `metric` is better: as `reported` ({name: "higher" |
    "lower"}, from the stage that computed it) says, else guessed from the name."""
    direction = (reported or {}).get(metric)
    if direction in (HIGHER, LOWER):
        return direction == HIGHER
    name = metric.lower()
    if name.startswith(HIGHER_IS_BETTER_PREFIXES):
        return True
    return not any(marker in name for marker in LOWER_IS_BETTER_MARKERS)
