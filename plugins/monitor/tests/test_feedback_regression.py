"""`conveyor feedback` for a regressor: prices that arrive after the predictions were served,
joined by the id column and scored on what the server answered (the logged predictions)."""

from __future__ import annotations

import json
import subprocess

import pytest
from conveyor.testing import Project, conveyor_executable


@pytest.fixture(scope="module")
def homes(tmp_path_factory) -> Project:
    root = tmp_path_factory.mktemp("homes")
    subprocess.run([conveyor_executable(), "init", "homes", "--template", "regression"],
                   cwd=root, check=True, capture_output=True, text=True)
    project = Project(root / "homes")
    project.run(check=True)
    return project


def test_delayed_prices_score_the_logged_predictions_per_period(homes):
    import numpy as np
    import pandas as pd
    from conveyor import api
    from conveyor.predictions import PredictionLogWriter
    from sklearn.metrics import mean_absolute_error, r2_score

    loaded = api.load_model(homes.path)
    # houses the model never saw: the template's rows with other ids, larger, a little older
    rng = np.random.default_rng(5)
    houses = pd.read_csv(homes.path / "data" / "houses.csv").sample(240, random_state=5)
    houses = houses.assign(house_id=np.arange(90_000, 90_240),
                           area_m2=houses["area_m2"] * rng.uniform(1.0, 1.3, len(houses)),
                           age_years=houses["age_years"] + 3)
    records = houses.drop(columns=["price"])
    predicted = loaded.model.predict(records[list(loaded.model.feature_names_in_)])
    begin = pd.Timestamp("2026-05-04", tz="UTC").timestamp()  # a Monday
    with PredictionLogWriter(homes.path, loaded.name) as writer:
        for i, record in enumerate(records.to_dict("records")):
            writer.append([record], [float(predicted[i])], model_version=loaded.number,
                          request_id=f"h-{i}", timestamp=begin + 3600 * i)  # ten days
    # the sale prices come weeks later, for all but 10 houses, plus 4 nobody priced
    labels = houses[["house_id", "price"]].iloc[10:]
    extra = pd.DataFrame({"house_id": [1, 2, 3, 4], "price": 100.0})
    pd.concat([labels, extra]).to_csv(homes.path / "prices.csv", index=False)
    result = homes.cli("feedback", "--data", "prices.csv", "--json")
    assert result.returncode in (0, 1), result.stderr
    out = json.loads(result.stdout)
    assert out["kind"] == "predictions" and out["join"] == "id"
    assert out["events"]["matched"] == 230 and out["events"]["unmatched"] == 4
    got = {b["details"]["feedback"]["start"]: b for b in out["batches"]}
    assert list(got) == ["2026-05-04T00:00:00Z", "2026-05-11T00:00:00Z"]  # two weeks served
    served = pd.Series(predicted, index=houses["house_id"].to_numpy())
    stamps = pd.to_datetime(begin + 3600 * np.arange(len(houses)), unit="s")
    week = pd.Series(np.where(stamps < pd.Timestamp("2026-05-11"), "2026-05-04T00:00:00Z",
                              "2026-05-11T00:00:00Z"), index=houses["house_id"].to_numpy())
    for start, batch in got.items():
        mine = labels[labels["house_id"].map(week) == start]
        assert batch["labelled_rows"] == len(mine)
        truth, answered = mine["price"], served[mine["house_id"]].to_numpy()
        assert batch["performance"]["r2"] == pytest.approx(r2_score(truth, answered))
        assert batch["performance"]["neg_mean_absolute_error"] == pytest.approx(
            -mean_absolute_error(truth, answered))
