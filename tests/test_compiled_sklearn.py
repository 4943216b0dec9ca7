"""conveyor-sklearn's compiled form: every `model` option through the parity gate, the codec.

Each option of the `model` config group (its YAML params) is trained on a small table with
numbers, text and missing values, compiled by `conveyor_compile_model`'s implementation and
checked as the core checks a version (labels identical, probabilities or values within 1e-5
absolute). XGBoost's regressor adds its trees in float32, so its values drift from the exact
sum by more than that: it is served by Python, with the measured difference as the reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conveyor.compiled import TOLERANCE, CompiledModel, NotCompilable, check_parity

pytest.importorskip("onnxruntime")

from conveyor_sklearn import compiling
from conveyor_sklearn.preprocess import build_pipeline

CONF = Path(compiling.__file__).parent / "conf" / "model"
# Options whose versions the gate sends to Python, and why.
SERVED_BY_PYTHON = {"xgboost_regressor": "parity failed: max value difference"}


def _table(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "tenure": rng.integers(0, 72, rows).astype(float),
        "charges": rng.normal(70, 30, rows).round(2),
        "calls": rng.poisson(2, rows).astype(float),
        "plan": rng.choice(["basic", "plus", "pro"], rows).astype(object),
        "region": rng.choice(["north", "south", "east", "west"], rows).astype(object),
    })
    frame.loc[rng.random(rows) < 0.05, "charges"] = np.nan
    frame.loc[rng.random(rows) < 0.05, "plan"] = np.nan
    score = 0.04 * frame["tenure"] - 0.02 * frame["charges"].fillna(70) + frame["calls"] * 0.3
    frame["churned"] = (score + rng.normal(0, 1, rows) > 0).astype(int)
    frame["segment"] = np.where(score > 1, "high", np.where(score > -0.5, "mid", "low"))
    frame["spend"] = 400 + 9.5 * frame["tenure"] + 3 * frame["charges"].fillna(70) \
        + rng.normal(0, 20, rows)
    return frame


FEATURES = ["tenure", "charges", "calls", "plan", "region"]


def _option(name: str) -> object:
    spec = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    module, _, cls = spec["_target_"].rpartition(".")
    kind = getattr(pytest.importorskip(module), cls)
    params = {k: (1 if k == "n_jobs" else v) for k, v in (spec.get("params") or {}).items()}
    return kind(**params)


def _check(name: str, target: str) -> tuple[dict, str | None]:
    frame = _table()
    train, test = frame.iloc[:300], frame.iloc[300:]
    pipeline = build_pipeline(train[FEATURES], _option(name))
    pipeline.fit(train[FEATURES], train[target])
    artifact = compiling.compile_pipeline(pipeline, [], {})
    assert isinstance(artifact.model, CompiledModel) and artifact.codec == "onnx"
    return check_parity(artifact.model, pipeline, test)


OPTIONS = sorted(p.stem for p in CONF.glob("*.yaml"))


@pytest.mark.parametrize("name", OPTIONS)
def test_every_model_option_passes_the_parity_gate_or_says_why(name):
    regressor = "regressor" in name or name == "ridge"
    parity, failure = _check(name, "spend" if regressor else "churned")
    if name in SERVED_BY_PYTHON:
        assert failure is not None and failure.startswith(SERVED_BY_PYTHON[name])
        return
    assert failure is None, failure
    assert parity["rows"] == 100 and parity["labels_equal"]
    assert parity["max_abs_diff"] <= TOLERANCE


@pytest.mark.parametrize("name", ["hist_gradient_boosting", "random_forest",
                                  "logistic_regression", "lightgbm"])
def test_multiclass_text_labels_pass_the_parity_gate(name):
    parity, failure = _check(name, "segment")
    assert failure is None, failure
    assert parity["max_abs_diff"] <= TOLERANCE


def test_a_step_without_converter_is_named():
    pytest.importorskip("skl2onnx")
    from sklearn.neighbors import NearestCentroid

    frame = _table()
    pipeline = build_pipeline(frame[FEATURES], NearestCentroid()).fit(frame[FEATURES],
                                                                      frame["churned"])
    with pytest.raises(NotCompilable, match=r"no ONNX converter for step 'model' "
                                            r"\(NearestCentroid\)"):
        compiling.compile_pipeline(pipeline, [], {})


def test_a_model_that_is_not_a_conveyor_pipeline_is_left_to_other_plugins():
    from sklearn.linear_model import LogisticRegression

    assert compiling.compile_pipeline(LogisticRegression(), [], {}) is None


def test_the_codec_round_trips_and_unknown_categories_score_as_zeros(tmp_path):
    frame = _table()
    pipeline = build_pipeline(frame[FEATURES], _option("random_forest"))
    pipeline.fit(frame[FEATURES], frame["churned"])
    model = compiling.compile_pipeline(pipeline, [], {}).model
    assert compiling.ONNX.handles(model) and not compiling.ONNX.handles(pipeline)
    path = tmp_path / "m.onnx"
    compiling.ONNX.dump(model, path)
    loaded = compiling.ONNX.load(path)
    assert (loaded.features, loaded.kinds, loaded.classes) == \
        (model.features, model.kinds, [0, 1])
    columns = {"tenure": np.array([3.0, np.nan]), "charges": np.array([50.0, 20.0]),
               "calls": np.array([1.0, 0.0]), "plan": np.array(["never seen", None], object),
               "region": np.array(["north", ""], object)}
    result = loaded.predict_columns(columns)
    expected = pipeline.predict_proba(pd.DataFrame(
        {**columns, "plan": ["never seen", np.nan], "region": ["north", np.nan]}))
    assert np.abs(result.probabilities - expected).max() <= TOLERANCE
    assert result.predictions.tolist() == pipeline.classes_[expected.argmax(axis=1)].tolist()


def test_the_standard_pipeline_compiles_without_importing_skl2onnx():
    """skl2onnx costs about a second of CPU per process: every run that registers would pay
    it. The pipeline `preprocess.build_pipeline` makes is written without it."""
    import subprocess
    import sys

    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "import test_compiled_sklearn as t\n"
            "frame = t._table()\n"
            "for name in ('hist_gradient_boosting', 'logistic_regression'):\n"
            "    pipeline = t.build_pipeline(frame[t.FEATURES], t._option(name))\n"
            "    pipeline.fit(frame[t.FEATURES], frame['churned'])\n"
            "    artifact = t.compiling.compile_pipeline(pipeline, [], {})\n"
            "    assert 'skl2onnx' not in artifact.converters\n"
            "print('skl2onnx' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def _missing_tracks(model: compiling.OnnxModel) -> list[int]:
    import onnx

    graph = onnx.load_from_string(model.onnx_bytes).graph
    trees = next(n for n in graph.node if n.op_type == "TreeEnsemble")
    return next(list(a.ints) for a in trees.attribute
                if a.name == "nodes_missing_value_tracks_true")


def test_trees_after_imputation_have_no_missing_routes_and_still_score_nan_rows():
    """The standard pipeline imputes every number, so no NaN reaches the trees: they are
    written without missing-value routes (onnxruntime skips a NaN test per node), and rows
    with NaN still score as scikit-learn scores them."""
    frame = _table()
    pipeline = build_pipeline(frame[FEATURES], _option("hist_gradient_boosting"))
    pipeline.fit(frame[FEATURES], frame["churned"])
    model = compiling.compile_pipeline(pipeline, [], {}).model
    assert not any(_missing_tracks(model))
    rows = frame[FEATURES].copy()
    rows.loc[::3, "tenure"] = np.nan
    parity, failure = check_parity(model, pipeline, rows)
    assert failure is None and parity["max_abs_diff"] <= TOLERANCE


def test_a_nan_median_keeps_the_missing_routes():
    frame = _table()
    pipeline = build_pipeline(frame[FEATURES], _option("hist_gradient_boosting"))
    pipeline.fit(frame[FEATURES], frame["churned"])
    numeric = dict(pipeline.named_steps["preprocess"].named_transformers_["numeric"].steps)
    numeric["impute"].statistics_ = np.where(np.arange(3) == 0, np.nan,
                                             numeric["impute"].statistics_)
    model = compiling.compile_pipeline(pipeline, [], {}).model
    assert any(_missing_tracks(model))
