"""The uncertainty of a comparison: a paired bootstrap over rows.

Champion and challenger are scored on the same rows; resampling those rows (the same resample
for both models) and recomputing each model's score gives the distribution of the difference
challenger - champion, and its percentile interval. numpy is imported only when resampling.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

RESAMPLES = 1000
LEVEL = 0.95


def paired_differences(difference: Callable[[Any], float], rows: int, *,
                       resamples: int = RESAMPLES, seed: int = 0) -> list[float]:
    """`difference(indices)` (challenger - champion on those rows) for `resamples` bootstrap
    resamples of `rows` rows, seeded. A resample the metric cannot be computed on (one class
    only, for ROC AUC) is skipped."""
    import numpy as np

    rng = np.random.default_rng(seed)
    diffs: list[float] = []
    for _ in range(resamples):
        indices = rng.integers(0, rows, rows)
        try:
            value = float(difference(indices))
        except ValueError:
            continue
        if value == value:  # not NaN
            diffs.append(value)
    return diffs


def interval(diffs: Sequence[float], point: float, level: float = LEVEL,
             rows: int | None = None) -> dict[str, Any]:
    """{diff, low, high, level, rows, resamples}: the point difference and the percentile
    interval of the bootstrap differences at `level` (low = high = None without any)."""
    low = high = None
    if diffs:
        import numpy as np

        tail = (1 - level) / 2
        low, high = (float(v) for v in np.quantile(np.asarray(diffs, dtype=float),
                                                   [tail, 1 - tail]))
    return {"diff": float(point), "low": low, "high": high, "level": level, "rows": rows,
            "resamples": len(diffs)}


def describe(record: Mapping[str, Any] | None) -> str:
    """'Δ +0.0120 [95% CI -0.0040, +0.0270] on 412 rows' (challenger - champion)."""
    if not record:
        return ""
    text = f"Δ {record['diff']:+.4f}"
    if record.get("low") is not None:
        text += (f" [{_percent(record['level'])} CI {record['low']:+.4f}, "
                 f"{record['high']:+.4f}]")
    if record.get("rows"):
        text += f" on {record['rows']:,} rows"
    return text


def _percent(level: float) -> str:
    return f"{level * 100:g}%"
