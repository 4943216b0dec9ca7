"""`POST /recommend` for a two-stage champion (conveyor-recsys's `pipeline=recommend_ranked`:
candidates re-ranked by LightGBM) on a real `conveyor serve`: the server treats it like any
recommender (`conveyor.serving.RecommendingModel`), answers the ranker's slates, falls back for
unknown users and logs every slate."""

from __future__ import annotations

import json

import httpx
import pytest
from _serve_support import run_cli
from conveyor.predictions import read_prediction_log
from conveyor.testing import Project

pytestmark = [pytest.mark.server]
pytest.importorskip("conveyor_recsys.ranker", reason="the two-stage model is conveyor-recsys's")
JSON = {"content-type": "application/json"}


def test_a_ranked_champion_answers_recommend_and_logs_its_slates(tmp_path, serve):
    from conveyor import api
    from conveyor_recsys.ranker import RankedRecommender
    from conveyor_recsys.simulate import RetailWorld, simulate

    run_cli("init", "shop", "--template", "recommender", cwd=tmp_path).check_returncode()
    project = Project(tmp_path / "shop")
    sim = simulate(RetailWorld(users=300, items=80, weeks=4, change_week=3, seed=43))
    data = project.path / "data"
    sim.interactions.drop(columns=["week"]).to_csv(data / "interactions.csv", index=False)
    sim.items[["item_id", "category", "price"]].to_csv(data / "items.csv", index=False)
    done = run_cli("run", "pipeline=recommend_ranked", "recsys.ranker.n_estimators=30",
                   "recsys.item_features=data/items.csv", cwd=project.path)
    assert done.returncode == 0, done.stdout + done.stderr
    model = api.load_model(project.path, "shop").model
    assert isinstance(model, RankedRecommender)
    known = model.user_ids[0].item()

    server = serve(project)
    meta = httpx.get(f"{server.url}/metadata").json()
    assert meta["task"] == "recommendation"
    assert meta["catalogue"]["items"] == model.item_count
    resp = httpx.post(f"{server.url}/recommend", headers=JSON, timeout=30,
                      content=json.dumps({"user_id": known, "k": 5}))
    assert resp.status_code == 200, resp.text
    slate = resp.json()
    assert slate["fallback"] is False
    assert [(i["item_id"], i["score"]) for i in slate["items"]] == list(model.recommend(known, 5))
    assert not set(model.seen(known)) & {i["item_id"] for i in slate["items"]}
    cold = httpx.post(f"{server.url}/recommend", headers=JSON, timeout=30,
                      content=json.dumps({"user_id": 10**9, "k": 3})).json()
    assert cold["fallback"] is True

    assert server.stop() == 0
    assert "Traceback" not in server.output()
    log = next(read_prediction_log(project.path, "shop"))
    assert log["request_id"].tolist() == [slate["request_id"], cold["request_id"]]
    assert log["fallback"].tolist() == [False, True]
