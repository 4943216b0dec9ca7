"""An XGBoost champion (`model=xgboost`, conveyor-sklearn's [xgboost] extra) served by the real
`conveyor serve`: loaded through the skops codec, XGBoost's binary model inside."""

from __future__ import annotations

import json

import httpx
import pytest
from _serve_support import RECORD, run_cli
from conveyor.testing import Project

pytest.importorskip("xgboost")
pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_an_xgboost_champion_answers_predict(tmp_path, serve):
    run_cli("init", "shop", cwd=tmp_path).check_returncode()
    project = tmp_path / "shop"
    done = run_cli("run", "model=xgboost", "model.params.n_estimators=30", cwd=project)
    assert done.returncode == 0, done.stderr
    server = serve(Project(project))
    records = [RECORD, {**RECORD, "customer_id": "C2", "tenure_months": 60}]
    resp = httpx.post(f"{server.url}/predict", content=json.dumps(records),
                      headers={"content-type": "application/json"}, timeout=30)
    assert resp.status_code == 200, resp.text
    answers = resp.json()
    assert [a["prediction"] in (0, 1) for a in answers] == [True, True], answers
    assert {a["model_version"] for a in answers} == {1}
