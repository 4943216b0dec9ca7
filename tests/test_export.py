"""`conveyor export --format onnx`: onnxruntime agrees with scikit-learn on the hold-out set.

Tolerance: labels identical; class probabilities within 1e-5 absolute; regression outputs
within 1e-5 relative or 1e-6 of the largest prediction absolute, whichever is larger (the
estimator's ONNX operators compute in float32, so a sum of 200 trees' leaves near 0 carries the
rounding of the values summed; the preprocessing runs in double, as in scikit-learn).
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from _support import assert_usage_error
from conveyor import api
from conveyor.store import ArtifactRef, open_store

onnxruntime = pytest.importorskip("onnxruntime")
PROBA_ATOL = 1e-5
REGRESSION_RTOL = 1e-5


def _holdout(project, run_id):
    """The test split the model was evaluated on, as the run stored it."""
    import pyarrow.feather as feather

    store = open_store(project.path)
    row = store.query("SELECT outputs FROM stages WHERE run_id=? AND name='split'", (run_id,))[0]
    ref = ArtifactRef.from_dict(json.loads(row["outputs"])["test"])
    return feather.read_table(store.artifacts.path(ref)).to_pandas()


def _feeds(session, frame):
    feeds = {}
    for spec in session.get_inputs():
        column = frame[spec.name]
        if spec.type == "tensor(string)":
            values = column.astype(object).where(column.notna(), "").astype(str).to_numpy()
        else:
            values = column.to_numpy(dtype=np.float64, na_value=np.nan)
        feeds[spec.name] = values.reshape(-1, 1)
    return feeds


@pytest.mark.parametrize(("template", "overrides"), [
    ("classification", []),
    ("classification", ["model=logistic_regression"]),
    ("regression", []),
])
def test_onnx_matches_scikit_learn_on_the_holdout_set(new_project, template, overrides):
    project = new_project(template)
    project.run(*overrides, check=True)
    result = project.cli("export", "--format", "onnx", "-o", "model.onnx", check=True)
    assert "exported to" in result.stdout
    loaded = api.load_model(project.path)
    test = _holdout(project, loaded.run_id)
    features = list(loaded.model.feature_names_in_)
    session = onnxruntime.InferenceSession(str(project.path / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert (meta["conveyor.model"], meta["conveyor.version"]) == ("proj", "1")
    assert meta["conveyor.sha256"] == loaded.sha256
    outputs = dict(zip([o.name for o in session.get_outputs()],
                       session.run(None, _feeds(session, test)), strict=True))
    if template == "classification":
        assert (outputs["label"] == loaded.model.predict(test[features])).all()
        gap = np.abs(outputs["probabilities"] - loaded.model.predict_proba(test[features])).max()
        assert gap <= PROBA_ATOL, gap
    else:
        expected = loaded.model.predict(test[features])
        np.testing.assert_allclose(outputs["variable"].ravel(), expected, rtol=REGRESSION_RTOL,
                                   atol=1e-6 * np.abs(expected).max())


def test_an_estimator_skl2onnx_cannot_convert_gets_a_clear_message(new_project):
    project = new_project("classification")
    project.run("model=logistic_regression", "model._target_=sklearn.neighbors.NearestCentroid",
                "~model.params.C", "~model.params.max_iter", check=True)
    result = project.cli("export", "--format", "onnx")
    assert_usage_error(result, "cannot convert the estimator sklearn.neighbors.NearestCentroid",
                       "supported_converters")
    assert not list(project.path.glob("*.onnx")) and not list(project.path.glob(".*.tmp"))


def test_export_without_the_extra_names_it(new_project, tmp_path):
    """skl2onnx missing: a stand-in package on PYTHONPATH that fails to import as a missing
    one would (uninstalling it from the shared test environment is not an option)."""
    project = new_project("classification")
    project.run(check=True)
    site = tmp_path / "site"
    (site / "skl2onnx").mkdir(parents=True)
    (site / "skl2onnx" / "__init__.py").write_text(textwrap.dedent("""\
        raise ModuleNotFoundError("No module named 'skl2onnx'", name="skl2onnx")
    """))
    result = project.cli("export", "--format", "onnx", env={"PYTHONPATH": str(site)})
    assert_usage_error(result, "needs skl2onnx", "conveyor-sklearn[onnx]")


def test_export_bad_model_argument_and_no_champion(new_project):
    project = new_project("classification")
    assert project.run("evaluate.gate.balanced_accuracy='>= 0.99'").returncode == 1
    assert_usage_error(project.cli("export", "--format", "onnx"), "has no champion yet")
    assert_usage_error(project.cli("export", "--format", "onnx", "--model", "proj:x"),
                       "is not NAME:VERSION")
    project.cli("export", "--format", "onnx", "--model", "proj:1", check=True)
    assert (project.path / "proj-v1.onnx").is_file()
