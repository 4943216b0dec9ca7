"""Preprocessing derived from column types, as part of the model's scikit-learn Pipeline."""

from __future__ import annotations

from typing import Any

MAX_CATEGORIES = 50


def feature_columns(frame: Any, *, target: str, id_column: str | None) -> list[str]:
    return [c for c in frame.columns if c != target and c != id_column]


def build_pipeline(frame: Any, estimator: Any) -> Any:
    """prepare (dtypes) -> preprocess (by column type) -> estimator, as one scikit-learn Pipeline,
    so whoever loads the model (serving, monitoring) applies exactly the same steps."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    return Pipeline([
        ("prepare", FunctionTransformer(as_model_input)),
        ("preprocess", build_preprocessor(frame)),
        ("model", estimator),
    ])


def build_preprocessor(frame: Any) -> Any:
    """Numbers: median-impute and scale. Everything else: impute and one-hot encode."""
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
    """Text columns as object dtype with NaN for missing, the form scikit-learn's imputers take."""
    import numpy as np

    converted = {}
    for column in frame.columns:
        if frame[column].dtype.kind == "b":
            converted[column] = frame[column].astype(float)
        elif frame[column].dtype.kind not in "iuf":
            converted[column] = frame[column].astype(object).where(frame[column].notna(), np.nan)
    return frame.assign(**converted) if converted else frame
