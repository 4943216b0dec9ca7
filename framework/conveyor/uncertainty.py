"""The uncertainty of a comparison: a paired bootstrap over rows.

Champion and challenger are scored on the same rows; resampling those rows (the same resample
for both models) and recomputing each model's score gives the distribution of the difference
challenger - champion, and its percentile interval. numpy is imported only when resampling.

`paired_scores` does it for two fitted models and scorers (scikit-learn's, passed in by the
caller): each model predicts once and a resample re-applies the metric to the stored
predictions. Common metrics are recomputed with numpy from a confusion matrix or ranks
(scikit-learn's metric functions cost milliseconds per call, mostly checking their input),
and only when the numpy value agrees with the scorer's on all rows; any other metric goes
through its scorer.
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


def comparison_lines(comparison: Mapping[str, Any] | None) -> list[str]:
    """A recorded comparison (`ModelVersion.comparison()`), one line per metric: 'vs v1 on
    412 rows: accuracy Δ +0.0120 [95% CI -0.0040, +0.0270]'."""
    if not comparison:
        return []
    who = f"v{comparison.get('champion_version')}"
    if comparison.get("unavailable"):
        return [f"vs {who}: not compared ({comparison['unavailable']})"]
    rows = comparison.get("rows")
    where = f"vs {who} on {rows:,} rows" if rows else f"vs {who}"
    return [f"{where}: {metric} {describe({**interval, 'rows': None})}"
            for metric, interval in (comparison.get("intervals") or {}).items() if interval]


def _percent(level: float) -> str:
    return f"{level * 100:g}%"


RESPONSE_METHODS = ("predict", "predict_proba", "decision_function", "predict_log_proba")
LABEL_METRICS = ("accuracy", "balanced_accuracy", "f1", "f1_macro", "f1_micro", "f1_weighted",
                 "precision", "precision_macro", "recall", "recall_macro")
REGRESSION_METRICS = ("r2", "neg_mean_squared_error", "neg_root_mean_squared_error",
                      "neg_mean_absolute_error")


class Replay:
    """A fitted model answering a scorer from predictions it made once: the scorer's X is an
    array of row positions."""

    def __init__(self, model: Any, X: Any) -> None:
        self._model, self._X, self._cache = model, X, {}

    def response(self, name: str) -> Any:
        if name not in self._cache:
            self._cache[name] = getattr(self._model, name)(self._X)
        return self._cache[name]

    def __getattr__(self, name: str) -> Any:
        if name in RESPONSE_METHODS:
            getattr(self._model, name)  # AttributeError if the model lacks it

            def respond(rows: Any) -> Any:
                return self.response(name)[rows]
            respond.__name__ = name  # scikit-learn reads which response it got from the name
            return respond
        return getattr(self._model, name)


def paired_scores(champion: Any, challenger: Any, frame: Any, features: Callable[[Any], list],
                  target: str, metrics: list[str], *, get_scorer: Callable[[str], Any],
                  resamples: int = RESAMPLES, seed: int = 0,
                  inputs: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Both fitted models on the rows of `frame` (`features(model)` names each model's
    columns): {"champion": {metric: score}, "challenger": {...}, "bootstrap": {metric:
    [challenger - champion per resample]}}. `get_scorer(name)` gives a scorer(model, X, y)
    (scikit-learn's `sklearn.metrics.get_scorer`: the caller owns that dependency).
    `inputs(model)`, when given, is that model's input frame for the same rows in the same order
    (its own inference path applied to them), instead of `frame[features(model)]`."""
    import numpy as np

    y = frame[target].to_numpy()
    rows = np.arange(len(frame))
    if inputs is None:
        def inputs(model: Any) -> Any:
            return frame[features(model)]
    old = Replay(champion, inputs(champion))
    new = Replay(challenger, inputs(challenger))
    result: dict[str, Any] = {"champion": {}, "challenger": {}, "bootstrap": {}}
    for metric in metrics:
        scorer = get_scorer(metric)
        result["champion"][metric] = float(scorer(old, rows, y))
        result["challenger"][metric] = float(scorer(new, rows, y))
        if resamples <= 0:
            continue
        fast_old, fast_new = _fast(metric, old, y), _fast(metric, new, y)
        if (fast_old is not None and fast_new is not None
                and np.isclose(fast_old(rows), result["champion"][metric], atol=1e-9)
                and np.isclose(fast_new(rows), result["challenger"][metric], atol=1e-9)):
            def difference(idx: Any, a: Any = fast_new, b: Any = fast_old) -> float:
                return a(idx) - b(idx)
        else:
            def difference(idx: Any, scorer: Any = scorer) -> float:
                return scorer(new, idx, y[idx]) - scorer(old, idx, y[idx])
        result["bootstrap"][metric] = [round(d, 6) for d in paired_differences(
            difference, len(frame), resamples=resamples, seed=seed)]
    return result


def _fast(metric: str, model: Replay, y: Any) -> Callable[[Any], float] | None:
    """The metric on a resample's row positions, with numpy (None: use the scorer)."""
    import numpy as np

    try:
        if metric in LABEL_METRICS:
            return _label_metric(metric, y, model.response("predict"))
        if metric == "roc_auc":
            classes = list(model.classes_)
            if len(classes) != 2:
                return None
            if hasattr(model._model, "decision_function"):
                score = np.asarray(model.response("decision_function"), dtype=float)
            else:
                score = np.asarray(model.response("predict_proba"), dtype=float)[:, 1]
            return _auc(np.asarray(y == classes[1]), score)
        if metric in REGRESSION_METRICS:
            return _regression(metric, np.asarray(y, dtype=float),
                               np.asarray(model.response("predict"), dtype=float))
    except (AttributeError, ValueError, TypeError):
        return None
    return None


def _label_metric(metric: str, y: Any, predicted: Any) -> Callable[[Any], float] | None:
    import numpy as np

    labels, codes = np.unique(np.concatenate([np.asarray(y), np.asarray(predicted)]),
                              return_inverse=True)
    k = len(labels)
    truth, guess = codes[:len(y)], codes[len(y):]
    positive = [i for i, label in enumerate(labels) if label == 1 or label is True]
    if metric in ("f1", "precision", "recall") and (k > 2 or not positive):
        return None

    def value(rows: Any) -> float:
        cm = np.bincount(truth[rows] * k + guess[rows], minlength=k * k).reshape(k, k)
        tp = np.diag(cm).astype(float)
        support, predicted_n = cm.sum(axis=1), cm.sum(axis=0)
        fp, fn = predicted_n - tp, support - tp
        present = (support + predicted_n) > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
            precision = np.where(predicted_n > 0, tp / predicted_n, 0.0)
            recall = np.where(support > 0, tp / support, 0.0)
        if metric in ("accuracy", "f1_micro"):
            return float(tp.sum() / len(rows))
        if metric == "balanced_accuracy":
            return float(recall[support > 0].mean())
        if metric == "f1_macro":
            return float(f1[present].mean())
        if metric == "f1_weighted":
            return float((f1 * support).sum() / support.sum())
        if metric == "precision_macro":
            return float(precision[present].mean())
        if metric == "recall_macro":
            return float(recall[present].mean())
        chosen = {"f1": f1, "precision": precision, "recall": recall}[metric]
        return float(chosen[positive[0]])

    return value


def _auc(positive: Any, score: Any) -> Callable[[Any], float]:
    """ROC AUC of a resample without sorting it: the scores are ranked once, and a resample is
    a count per row (the Mann-Whitney statistic, ties counting one half)."""
    import numpy as np

    _, inverse = np.unique(score, return_inverse=True)
    groups = int(inverse.max()) + 1 if len(inverse) else 0
    positive = np.asarray(positive, dtype=bool)

    def value(rows: Any) -> float:
        counts = np.bincount(rows, minlength=len(positive)).astype(float)
        pos = np.bincount(inverse, weights=counts * positive, minlength=groups)
        neg = np.bincount(inverse, weights=counts * ~positive, minlength=groups)
        n_pos, n_neg = pos.sum(), neg.sum()
        if n_pos == 0 or n_neg == 0:
            raise ValueError("one class only in this resample")
        below = np.cumsum(neg) - neg
        return float((pos * (below + neg / 2)).sum() / (n_pos * n_neg))

    return value


def _regression(metric: str, y: Any, predicted: Any) -> Callable[[Any], float]:
    import numpy as np

    def value(rows: Any) -> float:
        truth, error = y[rows], y[rows] - predicted[rows]
        if metric == "r2":
            total = ((truth - truth.mean()) ** 2).sum()
            return float(1 - (error ** 2).sum() / total) if total > 0 else float("nan")
        if metric == "neg_mean_squared_error":
            return -float((error ** 2).mean())
        if metric == "neg_root_mean_squared_error":
            return -float(np.sqrt((error ** 2).mean()))
        return -float(np.abs(error).mean())

    return value
