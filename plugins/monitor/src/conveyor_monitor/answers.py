"""The project's metrics on what a service answered (the prediction log), not on a re-prediction.

A delayed label is scored against the answer its request got: the logged `prediction`, and for
probability metrics (roc_auc, neg_log_loss, ...) the logged `proba__<class>` columns. Rows that
different model versions answered (a hot swap inside a period) are scored together, each by its
own answer, and no model is loaded. sklearn's scorers do the arithmetic, so a metric name means
what it means in `evaluate.metrics`: they score `LoggedAnswers`, an estimator that replays the log.

Classes are coded by their position in the logged `proba__` columns (the model's `classes_`
order), so "positive class" keeps its meaning in binary metrics; a label outside those classes
counts as wrong. A metric that needs probabilities the log lacks (a version that served without
them, a classifier without predict_proba) is skipped with a note, the others are still computed.
"""

from __future__ import annotations

from typing import Any

PREDICTION = "prediction"
PROBA = "proba__"


class MissingAnswers(ValueError):
    """The log lacks the answer a metric needs (probabilities)."""


def _replay(classifier: bool, predicted: Any, proba: Any) -> Any:
    """An sklearn estimator whose answers for X (row positions) are the logged ones."""
    import numpy as np
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

    def fit(self: Any, x: Any = None, y: Any = None) -> Any:
        return self

    def predict(self: Any, x: Any) -> Any:
        return predicted[np.asarray(x).ravel()]

    def predict_proba(self: Any, x: Any) -> Any:
        if proba is None:
            raise MissingAnswers("the log holds no probabilities (proba__ columns)")
        chosen = proba[np.asarray(x).ravel()]
        if np.isnan(chosen).any():
            missing = int(np.isnan(chosen).any(axis=1).sum())
            raise MissingAnswers(f"{missing:,} of these rows were logged without "
                                 "probabilities for every class")
        return chosen

    methods: dict[str, Any] = {"fit": fit, "predict": predict}
    if classifier:
        methods["predict_proba"] = predict_proba
    mixin = ClassifierMixin if classifier else RegressorMixin
    return type("LoggedAnswers", (mixin, BaseEstimator), methods)()


def logged_answers(rows: Any, classifier: bool) -> tuple[Any, Any, Any]:
    """(estimator, X, encode): `estimator` replays `rows`' logged answers for X = row positions;
    `encode(labels)` puts labels in the estimator's terms (class codes, or floats)."""
    import numpy as np

    proba_columns = [c for c in rows.columns if str(c).startswith(PROBA)]
    positions = np.arange(len(rows)).reshape(-1, 1)
    if not classifier:
        predicted = rows[PREDICTION].to_numpy(dtype=np.float64)
        estimator = _replay(False, predicted, None)
        return estimator, positions, lambda labels: np.asarray(labels, dtype=np.float64)
    names = [str(c)[len(PROBA):] for c in proba_columns]
    if not names:
        names = sorted({_text(v) for v in rows[PREDICTION]})
    codes = {name: index for index, name in enumerate(names)}

    def encode(values: Any) -> Any:
        return np.array([codes.get(_text(v), len(names)) for v in values], dtype=np.int64)

    predicted = encode(rows[PREDICTION])
    proba = rows[proba_columns].to_numpy(dtype=np.float64) if proba_columns else None

    estimator = _replay(True, predicted, proba)
    estimator.classes_ = np.arange(len(names))
    return estimator, positions, encode


def score_answers(rows: Any, labels: Any, metrics: list[str], classifier: bool
                  ) -> tuple[dict[str, float], list[str]]:
    """The metrics (default accuracy or r2) of the logged answers in `rows` against `labels`,
    and notes naming each metric that could not be computed and why."""
    import warnings

    from sklearn.metrics import check_scoring

    estimator, x, encode = logged_answers(rows, classifier)
    y = encode(labels)
    out: dict[str, float] = {}
    notes: list[str] = []
    for name in metrics or (["accuracy"] if classifier else ["r2"]):
        try:
            scorer = check_scoring(estimator, scoring=name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[name] = float(scorer(estimator, x, y))
        except MissingAnswers as exc:
            notes.append(f"{name} skipped: it needs probabilities and {exc}")
        except (ValueError, TypeError, AttributeError) as exc:
            notes.append(f"{name} cannot be computed on these {len(y):,} labelled answers: "
                         f"{exc}")
    return out, notes


def _text(value: Any) -> str:
    """A class label as the log's column names spell it (1.0 read from a CSV is class 1)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "item"):
        return _text(value.item())
    return str(value)
