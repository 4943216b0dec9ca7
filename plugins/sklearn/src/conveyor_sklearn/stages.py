"""The plugin's stage types: sklearn.load, sklearn.split, sklearn.train, sklearn.evaluate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import conveyor
from conveyor.tables import read_table

from conveyor_sklearn import settings as s

DATASET_PREFIX = "sklearn:"


# --- load -------------------------------------------------------------------------------------


def _source_files(settings: Mapping[str, Any]) -> Iterable[str]:
    source = settings.get("source")
    return [] if not source or source.startswith(DATASET_PREFIX) else [source]


def _check_load(settings: Mapping[str, Any], ctx: conveyor.CheckContext) -> None:
    source = settings.get("source")
    if not source:
        raise conveyor.ConfigError("data.source is not set: there is no data to load",
                                   hint="set data.source=path/to/data.csv (or sklearn:load_wine)")
    if source.startswith(DATASET_PREFIX):
        name = source[len(DATASET_PREFIX):]
        import sklearn.datasets

        if not name.startswith("load_") or not hasattr(sklearn.datasets, name):
            bundled = [n for n in dir(sklearn.datasets) if n.startswith("load_")
                       and n not in ("load_files", "load_svmlight_file", "load_svmlight_files",
                                     "load_sample_image", "load_sample_images")]
            raise conveyor.ConfigError(f"data.source '{source}' is not a bundled scikit-learn "
                                       f"dataset", hint="bundled: " + ", ".join(
                                           DATASET_PREFIX + n for n in bundled))
        return
    path = ctx.project_dir / source
    if not path.is_file():
        raise conveyor.ConfigError(f"data file not found: {path} (data.source={source})",
                                   hint="paths are relative to the project folder")
    if path.suffix.lower() not in (".csv", ".parquet", ".pq", ".tsv"):
        raise conveyor.ConfigError(f"data.source {source}: unsupported file type "
                                   f"'{path.suffix}'", hint="use .csv, .tsv or .parquet")


def _load(ctx: conveyor.StageContext) -> Mapping[str, Any]:
    source = ctx.settings["source"]
    if source.startswith(DATASET_PREFIX):
        import sklearn.datasets

        frame = getattr(sklearn.datasets, source[len(DATASET_PREFIX):])(as_frame=True).frame
    else:
        frame = read_table(ctx.project_dir / source)
    if frame.empty:
        raise conveyor.StageFailed(f"{source} has no rows")
    ctx.log(f"{len(frame):,} rows x {frame.shape[1]} columns from {source}")
    return {"data": frame}


# --- split ------------------------------------------------------------------------------------


def _check_target(settings: Mapping[str, Any], ctx: conveyor.CheckContext) -> None:
    if not settings.get("target"):
        raise conveyor.ConfigError("data.target is not set: which column should the model "
                                   "predict?", hint="set data.target=COLUMN")


def _check_split(settings: Mapping[str, Any], ctx: conveyor.CheckContext) -> None:
    _check_target(settings, ctx)
    size = settings.get("test_size")
    if not 0 < size < 1:
        raise conveyor.ConfigError(f"data.test_size={size}: the share of rows held out for "
                                   "testing must be between 0 and 1", hint="e.g. data.test_size=0.2")


def _require_column(frame: Any, column: str, what: str) -> None:
    if column not in frame.columns:
        import difflib

        close = difflib.get_close_matches(column, [str(c) for c in frame.columns], n=1)
        raise conveyor.StageFailed(
            f"{what} '{column}' is not a column of the data"
            + (f"; did you mean '{close[0]}'?" if close else ""),
            hint="columns: " + ", ".join(map(str, frame.columns[:30])))


def is_classification_target(y: Any) -> bool:
    return y.dtype.kind not in "f" or (y.nunique() <= 20 and (y.dropna() % 1 == 0).all())


def _split(ctx: conveyor.StageContext) -> Mapping[str, Any]:
    from sklearn.model_selection import train_test_split

    frame = ctx.inputs["data"]
    target = ctx.settings["target"]
    _require_column(frame, target, "data.target")
    missing = int(frame[target].isna().sum())
    if missing:
        ctx.log(f"dropping {missing:,} rows with no value in target '{target}'")
        frame = frame[frame[target].notna()]
    y = frame[target]
    stratify = None
    if ctx.settings["stratify"] and is_classification_target(y) and y.value_counts().min() >= 2:
        stratify = y
    train, test = train_test_split(frame, test_size=ctx.settings["test_size"],
                                   random_state=ctx.settings["seed"], stratify=stratify)
    ctx.log(f"train {len(train):,} rows, test {len(test):,} rows"
            + (", stratified" if stratify is not None else ""))
    return {"train": train.reset_index(drop=True), "test": test.reset_index(drop=True)}


# --- train ------------------------------------------------------------------------------------


def _check_train(settings: Mapping[str, Any], ctx: conveyor.CheckContext) -> None:
    _check_target(settings, ctx)
    model = settings.get("model") or {}
    target = model.get("_target_")
    if not target:
        raise conveyor.ConfigError("model._target_ is not set: which estimator should be trained?",
                                   hint="choose one: model=hist_gradient_boosting")
    estimator = ctx.import_target(target)
    params = model.get("params") or {}
    from inspect import signature

    try:
        accepted = signature(estimator).parameters
    except (TypeError, ValueError):
        return
    unknown = [p for p in params if p not in accepted]
    if unknown and not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
        import difflib

        close = difflib.get_close_matches(unknown[0], list(accepted), n=1)
        raise conveyor.ConfigError(
            f"model.params.{unknown[0]} is not a parameter of {target}"
            + (f"; did you mean '{close[0]}'?" if close else ""))
    _validate_params(estimator, params, target)


def _validate_params(estimator_class: Any, params: Mapping[str, Any], target: str) -> None:
    """scikit-learn checks parameter types only inside fit(); ask it up front instead, so a bad
    value stops the run before anything executes. Nothing is called but the class (an estimator
    class, see conveyor.targets) and scikit-learn's own parameter validation."""
    from sklearn.base import BaseEstimator

    try:
        estimator = estimator_class(**params)
    except Exception as exc:
        raise conveyor.ConfigError(f"model.params do not fit {target}: {exc}") from exc
    if getattr(type(estimator), "_validate_params", None) is not BaseEstimator._validate_params \
            or not hasattr(type(estimator), "_parameter_constraints"):
        return  # not scikit-learn's own validation (LightGBM checks its parameters in fit)
    validate = BaseEstimator._validate_params.__get__(estimator)
    try:
        validate()
    except (ValueError, TypeError) as exc:
        message = str(exc).replace("The '", "model.params.", 1).replace("' parameter", "", 1)
        raise conveyor.ConfigError(f"invalid {message}") from exc


def _train(ctx: conveyor.StageContext) -> Mapping[str, Any]:
    import pandas as pd

    from conveyor_sklearn.preprocess import build_pipeline, feature_columns

    train = ctx.inputs["train"]
    target = ctx.settings["target"]
    model = ctx.settings["model"]
    _require_column(train, target, "data.target")
    features = feature_columns(train, target=target, id_column=ctx.settings.get("id_column"))
    estimator_class = ctx.import_target(model["_target_"])
    params = dict(model.get("params") or {})
    if _accepts(estimator_class, "random_state") and "random_state" not in params:
        params["random_state"] = ctx.settings["seed"]
    estimator = estimator_class(**params)
    pipeline = build_pipeline(train[features], estimator)
    ctx.log(f"fitting {estimator_class.__name__} on {len(train):,} rows, "
            f"{len(features)} features")
    try:
        pipeline.fit(train[features], train[target])
    except ValueError as exc:
        if "Invalid classes inferred" not in str(exc):  # XGBoost's classifier, on text labels
            raise
        labels = ", ".join(map(repr, sorted(train[target].dropna().unique().tolist())[:5]))
        raise conveyor.StageFailed(
            f"{estimator_class.__name__} takes class labels 0..n-1 only; data.target "
            f"'{target}' holds {labels}",
            hint="encode the target as 0/1 (yes -> 1, no -> 0), or use another model") from exc
    # One fingerprint per training row (its features and target), kept with the version: a
    # later evaluation scores this model only on rows it never trained on.
    from conveyor.fingerprints import row_fingerprints

    fingerprints = row_fingerprints(train, [*features, target])
    # The model's part of its contract (conveyor.ModelContract), recorded with the version.
    contract = {"target": target, "features": [{"name": str(c), "dtype": str(train[c].dtype)}
                                               for c in features]}
    return {"model": pipeline, "training_rows": pd.DataFrame({"fingerprint": fingerprints}),
            "contract": contract}


def _accepts(estimator_class: Any, name: str) -> bool:
    from inspect import signature

    try:
        return name in signature(estimator_class).parameters
    except (TypeError, ValueError):
        return False


# --- evaluate ---------------------------------------------------------------------------------


def default_metrics(model: Any, y: Any) -> list[str]:
    from sklearn.base import is_classifier

    if is_classifier(model):
        return ["accuracy", "roc_auc"] if y.nunique() == 2 else ["accuracy", "f1_macro"]
    return ["r2", "neg_root_mean_squared_error"]


def _check_evaluate(settings: Mapping[str, Any], ctx: conveyor.CheckContext) -> None:
    _check_target(settings, ctx)
    if not settings.get("metrics"):
        return
    from sklearn.metrics import get_scorer_names

    known = set(get_scorer_names())
    for name in settings["metrics"]:
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, sorted(known), n=3)
            raise conveyor.ConfigError(
                f"evaluate.metrics: '{name}' is not a scikit-learn metric name",
                hint=("did you mean " + " or ".join(f"'{c}'" for c in close) + "?") if close
                else "see sklearn.metrics.get_scorer_names()")


def score(model: Any, frame: Any, target: str, metrics: list[str]) -> dict[str, float]:
    from sklearn.metrics import check_scoring

    features = _model_features(model, frame)
    scorer = check_scoring(model, scoring=metrics)
    return {k: float(v) for k, v in scorer(model, frame[features], frame[target]).items()}


def _model_features(model: Any, frame: Any) -> list[str]:
    names = getattr(model, "feature_names_in_", None)
    if names is None:
        return [c for c in frame.columns]
    missing = [n for n in names if n not in frame.columns]
    if missing:
        raise conveyor.StageFailed(f"the data lacks feature columns the model needs: "
                                   f"{', '.join(map(str, missing[:10]))}")
    return list(names)


def directions(metrics: Iterable[str]) -> dict[str, str]:
    """Which way is better for each metric as scored here: a scikit-learn scorer applies its
    sign (an error becomes neg_*), so every value it returns is better when higher."""
    return {name: "higher" for name in metrics}


def _evaluate(ctx: conveyor.StageContext) -> Mapping[str, Any]:
    model = ctx.inputs["model"]
    test = ctx.inputs["test"]
    target = ctx.settings["target"]
    metrics = list(ctx.settings["metrics"]) or default_metrics(model, test[target])
    overall = score(model, test, target, metrics)
    ctx.log_metrics(overall)
    champion = ctx.registry.alias(ctx.settings["model_name"])
    comparison = None
    if champion is not None:  # promotion is only over this one
        comparison = conveyor.ChampionComparison.from_dict(
            _compare(ctx, champion, model, test, target, metrics))
    slices: dict[str, dict[str, float]] = {}
    column = ctx.settings.get("slice_column")
    if column and column not in test.columns:
        ctx.log(f"evaluate.slices.column '{column}' is not in the data: no slice metrics")
        column = None
    if column:
        for value, part in test.groupby(column, dropna=False):
            if len(part) < ctx.settings["slice_min_rows"] or part[target].nunique() < 2:
                continue
            try:
                slices[str(value)] = score(model, part, target, metrics)
            except ValueError as exc:
                ctx.log(f"slice {column}={value}: {exc}")
    result = conveyor.EvaluationResult(
        overall=overall, metrics=tuple(metrics), rows=len(test),
        directions=directions(metrics),
        champion=(comparison.champion or None) if comparison else None,
        champion_version=champion.version if champion is not None else None,
        slices=slices, slice_column=column, comparison=comparison)
    return {"metrics": result.to_dict()}


def _compare(ctx: conveyor.StageContext, champion: Any, model: Any, test: Any, target: str,
             metrics: list[str]) -> dict[str, Any]:
    """The champion and this model on the test rows the champion never trained on."""
    label = f"champion v{champion.version}"
    comparison: dict[str, Any] = {"champion_version": champion.version, "test_rows": len(test)}

    def unavailable(reason: str) -> dict[str, Any]:
        ctx.log(f"{reason}: relative gate conditions fail closed")
        return {**comparison, "unavailable": reason}

    try:
        champion_model = ctx.load_artifact(champion.artifact)
    except conveyor.ConveyorError as exc:
        return unavailable(f"{label} cannot be loaded: {exc.message}")
    rows = test
    seen = champion.gate.get("training_rows")
    if seen:
        try:
            features = _model_features(champion_model, test)
            _require_column(test, target, "data.target")
            known = ctx.load_artifact(seen)["fingerprint"].to_numpy()
        except conveyor.ConveyorError as exc:
            return unavailable(f"{label} cannot be scored here: {exc.message}")
        from conveyor.fingerprints import unseen

        rows = test[unseen(test, [*features, target], known)].reset_index(drop=True)
        comparison["excluded"] = int(len(test) - len(rows))
        if comparison["excluded"]:
            ctx.log(f"{label} trained on {comparison['excluded']:,} of the {len(test):,} test "
                    f"rows: it is compared on the other {len(rows):,}")
    else:
        comparison["note"] = f"{label} recorded no training rows: compared on every test row"
    comparison["rows"] = len(rows)
    minimum = ctx.settings["champion_min_rows"]
    if len(rows) < minimum:
        return unavailable(f"only {len(rows):,} of the {len(test):,} test rows are rows {label} "
                           f"never trained on; evaluate.champion_min_rows is {minimum:,}")
    try:
        from conveyor.uncertainty import paired_scores
        from sklearn.metrics import get_scorer

        paired = paired_scores(champion_model, model, rows,
                               lambda m: _model_features(m, rows), target, metrics,
                               get_scorer=get_scorer, resamples=ctx.settings["bootstrap"],
                               seed=ctx.seed)
    except (conveyor.ConveyorError, ValueError, KeyError) as exc:
        message = exc.message if isinstance(exc, conveyor.ConveyorError) else str(exc)
        return unavailable(f"{label} cannot be scored here: {message}")
    comparison.update(paired)
    ctx.log(f"{label} on {len(rows):,} test rows it never trained on: "
            + ", ".join(f"{k}={v:.4g}" for k, v in paired["champion"].items()))
    return comparison


STAGE_TYPES = [
    conveyor.StageType("sklearn.load", _load, "load a CSV, Parquet file or bundled dataset",
                       settings_schema=s.LoadSettings, input_files=_source_files,
                       ephemeral_outputs=frozenset({"data"}), check=_check_load,
                       outputs={"data": "the rows read (a pandas DataFrame)"}),
    conveyor.StageType("sklearn.split", _split, "split into train and test sets",
                       settings_schema=s.SplitSettings, check=_check_split,
                       outputs={"train": "the training rows (a DataFrame)",
                                "test": "the held-out test rows (a DataFrame)"}),
    conveyor.StageType("sklearn.train", _train,
                       "fit preprocessing + estimator as one scikit-learn Pipeline",
                       settings_schema=s.TrainSettings, check=_check_train,
                       outputs={"model": "the fitted scikit-learn Pipeline",
                                "training_rows": "a fingerprint per training row (which rows "
                                                 "the model trained on)",
                                "contract": "the model's part of its contract: target and "
                                            "features with their dtypes"}),
    conveyor.StageType("sklearn.evaluate", _evaluate,
                       "score the model (and the champion, and slices) on the test set",
                       settings_schema=s.EvaluateSettings, check=_check_evaluate,
                       outputs={"metrics": "the evaluation (conveyor.EvaluationResult, as "
                                           "a mapping): test-set scores, the champion's "
                                           "comparison, the slices' scores"}),
]
