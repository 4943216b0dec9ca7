"""The benchmark's work done without Conveyor: plain pandas and scikit-learn.

These are the baselines of figures 3 and 5 and the node functions of the DVC and Kedro
baselines. The preprocessing is a copy of `conveyor_sklearn.preprocess.build_pipeline` (run.py
checks that the two build the same Pipeline): importing the plugin would import Conveyor too,
and that import cost belongs to the framework, not to the plain script.

    python workload.py three DATA.csv     # load -> split -> train a LogisticRegression
    python workload.py e2e DATA.csv       # load -> split -> fit HistGradientBoosting -> score
    python workload.py three DATA.csv --gc-tuned   # with the `conveyor` command's GC policy

`--gc-tuned` gives the plain script what `conveyor.collection` gives the `conveyor` command
(no collection while importing, the imports frozen, no final collection at exit), so the
benchmark can show the framework's overhead like for like as well as against the script a
user would write.
"""

from __future__ import annotations

import json
import sys
from typing import Any

TARGET = "target"
SEED = 0
TEST_SIZE = 0.2
MAX_CATEGORIES = 50
# The same estimators and parameters as the plugin's config group `model/` (seed 0 added by the
# sklearn.train stage as random_state, where the estimator takes one).
LOGISTIC_PARAMS = {"C": 1.0, "max_iter": 1000}
HGB_PARAMS = {"max_iter": 200, "learning_rate": 0.1, "max_depth": None, "early_stopping": "auto"}
E2E_METRICS = ["accuracy", "roc_auc"]


def load(path: str) -> Any:
    """sklearn.load: pandas' pyarrow CSV reader."""
    import pandas as pd

    return pd.read_csv(path, engine="pyarrow")


def split(frame: Any) -> tuple[Any, Any]:
    """sklearn.split: stratified train_test_split."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(frame, test_size=TEST_SIZE, random_state=SEED,
                                   stratify=frame[TARGET])
    return train.reset_index(drop=True), test.reset_index(drop=True)


def features(frame: Any) -> list[str]:
    return [c for c in frame.columns if c != TARGET]


def fit(train: Any, estimator: Any) -> Any:
    """sklearn.train: preprocessing + estimator as one Pipeline, fitted."""
    columns = features(train)
    pipeline = build_pipeline(train[columns], estimator)
    pipeline.fit(train[columns], train[TARGET])
    return pipeline


def logistic_regression() -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(**LOGISTIC_PARAMS, random_state=SEED)


def hist_gradient_boosting() -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(**HGB_PARAMS, random_state=SEED)


def score(model: Any, test: Any, metrics: list[str]) -> dict[str, float]:
    """sklearn.evaluate: the scikit-learn scorers of the metric names."""
    from sklearn.metrics import check_scoring

    scorer = check_scoring(model, scoring=metrics)
    return {k: float(v) for k, v in scorer(model, test[features(test)], test[TARGET]).items()}


# --- a copy of conveyor_sklearn.preprocess ---------------------------------------------------


def build_pipeline(frame: Any, estimator: Any) -> Any:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    return Pipeline([
        ("prepare", FunctionTransformer(as_model_input)),
        ("preprocess", build_preprocessor(frame)),
        ("model", estimator),
    ])


def build_preprocessor(frame: Any) -> Any:
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in frame.columns if frame[c].dtype.kind in "biuf"]
    categorical = [c for c in frame.columns if c not in numeric]
    transformers = []
    if numeric:
        transformers.append(("numeric", Pipeline([
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]), numeric))
    if categorical:
        transformers.append(("categorical", Pipeline([
            ("impute", SimpleImputer(strategy="constant", fill_value="missing",
                                     missing_values=np.nan)),
            ("encode", OneHotEncoder(handle_unknown="infrequent_if_exist",
                                     max_categories=MAX_CATEGORIES, sparse_output=False)),
        ]), categorical))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)


def as_model_input(frame: Any) -> Any:
    import numpy as np

    converted = {}
    for column in frame.columns:
        if frame[column].dtype.kind == "b":
            converted[column] = frame[column].astype(float)
        elif frame[column].dtype.kind not in "iuf":
            converted[column] = frame[column].astype(object).where(frame[column].notna(), np.nan)
    return frame.assign(**converted) if converted else frame


# --- the two plain scripts -------------------------------------------------------------------


def three(path: str) -> dict[str, Any]:
    train, _ = split(load(path))
    model = fit(train, logistic_regression())
    return {"rows": len(train), "n_iter": int(model[-1].n_iter_[0])}


def end_to_end(path: str) -> dict[str, Any]:
    train, test = split(load(path))
    model = fit(train, hist_gradient_boosting())
    return score(model, test, E2E_METRICS)


def main(argv: list[str]) -> None:
    tuned = "--gc-tuned" in argv
    kind, path = [a for a in argv if a != "--gc-tuned"]
    if tuned:
        import gc

        gc.disable()
        _import_up_front(kind)
        gc.freeze()
        gc.enable()
    result = three(path) if kind == "three" else end_to_end(path)
    print(json.dumps(result, sort_keys=True))
    if tuned:
        gc.freeze()


def _import_up_front(kind: str) -> None:
    """The steps' imports, done before any step (as Conveyor's checks do before any stage)."""
    import importlib

    modules = ["pandas", "sklearn.compose", "sklearn.impute", "sklearn.model_selection",
               "sklearn.pipeline", "sklearn.preprocessing"]
    modules += ["sklearn.linear_model"] if kind == "three" else ["sklearn.ensemble",
                                                                 "sklearn.metrics"]
    for module in modules:
        importlib.import_module(module)


if __name__ == "__main__":
    main(sys.argv[1:])
