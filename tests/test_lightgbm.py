"""LightGBM's estimators end to end (`model=lightgbm`, `model=lightgbm_regressor`): trained,
registered, loaded back through the skops codec (its text model inside: no code runs on load),
scored by `conveyor predict` and checked by `conveyor monitor`."""

from __future__ import annotations

import pytest
from conveyor import api

pytest.importorskip("lightgbm")


def test_a_lightgbm_classifier_trains_registers_predicts_and_is_monitored(new_project, cli):
    project = new_project("classification")
    result = project.run("model=lightgbm", "model.params.n_estimators=50")
    assert result.returncode == 0, result.stderr
    loaded = api.load_model(project.path)
    assert type(loaded.model[-1]).__name__ == "LGBMClassifier"
    data = project.path / "data" / "customers.csv"
    scored = cli("predict", "--data", str(data), "-o", str(project.path / "scored.csv"),
                 cwd=project.path)
    assert scored.returncode == 0, scored.stderr
    assert (project.path / "scored.csv").stat().st_size > 0
    monitored = cli("monitor", "--data", str(data), cwd=project.path)
    assert monitored.returncode == 0, monitored.stderr


def test_a_lightgbm_regressor_trains_and_loads(new_project):
    project = new_project("regression")
    result = project.run("model=lightgbm_regressor", "model.params.n_estimators=50")
    assert result.returncode in (0, 1), result.stderr  # a gate may say no; the model is stored
    record = api.resolve_model(project.path, version=1)
    loaded = api.load_model(project.path, record.name, version=1)
    assert type(loaded.model[-1]).__name__ == "LGBMRegressor"
