"""XGBoost's estimators end to end (`model=xgboost`, `model=xgboost_regressor`): trained,
registered and made champion, loaded back through the skops codec (XGBoost's own binary model
inside, restored as data: no code runs on load), scored by `conveyor predict` and checked by
`conveyor monitor`; text class labels are a clear failure, not a traceback."""

from __future__ import annotations

import json

import pytest
from conveyor import api
from conveyor.testing import assert_run_failed

pytest.importorskip("xgboost")


def test_an_xgboost_classifier_trains_becomes_champion_predicts_and_is_monitored(new_project, cli):
    project = new_project("classification")
    result = project.run("model=xgboost", "model.params.n_estimators=30")
    assert result.returncode == 0, result.stderr
    models = json.loads(cli("models", "list", "--json", cwd=project.path).stdout)
    assert [(m["version"], m["aliases"]) for m in models] == [(1, ["champion"])]
    loaded = api.load_model(project.path)
    assert type(loaded.model[-1]).__name__ == "XGBClassifier"
    data = project.path / "data" / "customers.csv"
    scored = cli("predict", "--data", str(data), "-o", str(project.path / "scored.csv"),
                 cwd=project.path)
    assert scored.returncode == 0, scored.stderr
    import pandas as pd

    frame = pd.read_csv(project.path / "scored.csv")
    assert len(frame) == len(pd.read_csv(data)) and frame["prediction"].isin([0, 1]).all()
    monitored = cli("monitor", "--data", str(data), cwd=project.path)
    assert monitored.returncode == 0, monitored.stderr


def test_an_xgboost_regressor_trains_and_loads(new_project):
    project = new_project("regression")
    result = project.run("model=xgboost_regressor", "model.params.n_estimators=30")
    assert result.returncode in (0, 1), result.stderr  # a gate may say no; the model is stored
    record = api.resolve_model(project.path, version=1)
    loaded = api.load_model(project.path, record.name, version=1)
    assert type(loaded.model[-1]).__name__ == "XGBRegressor"


def test_text_class_labels_are_a_clear_failure_naming_the_target(new_project):
    import pandas as pd

    project = new_project("classification")
    data = project.path / "data" / "customers.csv"
    frame = pd.read_csv(data)
    frame["churned"] = frame["churned"].map({0: "no", 1: "yes"})
    frame.to_csv(data, index=False)
    result = project.run("model=xgboost", "model.params.n_estimators=5", "data.schema=null")
    assert_run_failed(result, "XGBClassifier takes class labels 0..n-1", "'churned'")


@pytest.mark.server
@pytest.mark.slow
def test_an_xgboost_champion_is_served_by_conveyor_serve(new_project, tmp_path):
    import os
    import subprocess
    import time

    import httpx
    import pandas as pd
    from conveyor.testing import conveyor_executable, free_port, stop_process

    project = new_project("classification")
    assert project.run("model=xgboost", "model.params.n_estimators=30").returncode == 0
    records = pd.read_csv(project.path / "data" / "customers.csv").drop(columns=["churned"])
    records = json.loads(records.head(3).to_json(orient="records"))
    port = free_port()
    log = tmp_path / "serve.log"
    server = subprocess.Popen([conveyor_executable(), "serve", "--port", str(port)],
                              cwd=project.path, stdout=log.open("w"), stderr=subprocess.STDOUT,
                              env={**os.environ, "CONVEYOR_TEST": "1"})
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert server.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        resp = httpx.post(f"{url}/predict", content=json.dumps(records),
                          headers={"content-type": "application/json"}, timeout=30)
        assert resp.status_code == 200, resp.text
        answers = resp.json()
        assert len(answers) == 3 and all(a["prediction"] in (0, 1) for a in answers), answers
        assert {a["model_version"] for a in answers} == {1}
    finally:
        stop_process(server)
