"""Which way is better for a metric name, so the core can pick a best run or compare champions."""

LOWER_IS_BETTER_MARKERS = ("error", "loss", "mse", "mae", "rmse", "deviance", "brier")


def greater_is_better(metric: str) -> bool:
    name = metric.lower()
    if name.startswith("neg_"):
        return True
    return not any(marker in name for marker in LOWER_IS_BETTER_MARKERS)
