"""`conveyor predict` with a recommender champion: a clear usage error naming the model, its
version and `conveyor recommend`, with no run recorded and no file written."""

from __future__ import annotations

import pytest
from _support import assert_usage_error
from conveyor import api

pytest.importorskip("conveyor_recsys", reason="needs the recommender template (conveyor-recsys)")


def test_predict_refuses_a_recommender_and_names_conveyor_recommend(new_project):
    books = new_project("recommender")
    books.run(check=True)
    runs = len(api.list_runs(books.path))
    done = books.cli("predict", "--data", "data/interactions.csv")
    name = api.resolve_model(books.path).name
    assert_usage_error(done, f"model '{name}' v1 is a recommender",
                       "conveyor recommend --users FILE")
    assert len(api.list_runs(books.path)) == runs          # no "predict" run recorded
    assert not (books.path / "data" / "interactions.predictions.parquet").exists()


def test_recommend_refuses_a_classifier_and_names_conveyor_predict(new_project):
    shop = new_project("classification")
    shop.run(check=True)
    (shop.path / "users.csv").write_text("user_id\n1\n2\n")
    done = shop.cli("recommend", "--users", "users.csv", "-o", "slates.csv")
    name = api.resolve_model(shop.path).name
    assert_usage_error(done, f"model '{name}' v1 is not a recommender", "conveyor predict")
    assert not (shop.path / "slates.csv").exists()
