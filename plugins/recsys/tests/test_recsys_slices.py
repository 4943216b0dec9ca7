"""Ranking metrics per slice of test users (`evaluate.slices.*`) and sweeps over recommenders,
through the real CLI on simulator data (a seed, size and change the defaults do not use)."""

from __future__ import annotations

import json
import math

import pytest
from conveyor.testing import Project, assert_usage_error, conveyor_executable

SEGMENTS = {"bargain", "mainstream", "premium", "nan"}   # nan: users without a row


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Project:
    """The recommender template on a simulated shop whose user table lacks every 8th user,
    with segment slices gated at ndcg@10 >= 0.02; run once."""
    import subprocess

    import yaml
    from conveyor_recsys.simulate import TIMESTAMP_FORMAT, RetailWorld, simulate

    root = tmp_path_factory.mktemp("slices")
    subprocess.run([conveyor_executable(), "init", "shop", "--template", "recommender"],
                   cwd=root, check=True, capture_output=True, text=True)
    project = Project(root / "shop")
    sim = simulate(RetailWorld(seed=23, users=500, items=150, weeks=5, change_week=3,
                               change="price_shock", new_users_per_week=15))
    sim.interactions.drop(columns=["week"]).to_csv(project.path / "data" / "sim.csv",
                                                   index=False, date_format=TIMESTAMP_FORMAT)
    users = sim.users[sim.users["user_id"] % 8 != 0]
    users.to_csv(project.path / "data" / "users.csv", index=False)
    config = yaml.safe_load((project.path / "conveyor.yaml").read_text())
    config["recsys"].update(source="data/sim.csv", user_features="data/users.csv")
    config["evaluate"]["slices"] = {"column": "segment", "gate": {"ndcg@10": ">= 0.02"},
                                    "min_rows": 20}
    (project.path / "conveyor.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    project.run(check=True)
    return project


def _slices(metrics: dict[str, float], column: str) -> dict[str, dict[str, float]]:
    """The run metrics `slice.COLUMN=VALUE.METRIC`, as {value: {metric: score}}."""
    out: dict[str, dict[str, float]] = {}
    prefix = f"slice.{column}="
    for name, score in metrics.items():
        if name.startswith(prefix):
            value, metric = name[len(prefix):].split(".", 1)
            out.setdefault(value, {})[metric] = score
    return out


def test_every_segment_is_scored_and_the_slices_add_up_to_the_whole(shop):
    run = shop.last_run()
    slices = _slices(run.metrics, "segment")
    assert set(slices) == SEGMENTS, slices
    assert sum(part["users"] for part in slices.values()) == run.metrics["evaluated_users"]
    # per-user metrics averaged within a slice: weighted by users they give the overall mean
    for metric in ("ndcg@10", "recall@10", "mrr", "hit_rate@10", "novelty"):
        pooled = sum(part[metric] * part["users"] for part in slices.values())
        assert math.isclose(pooled / run.metrics["evaluated_users"], run.metrics[metric],
                            rel_tol=1e-9), metric
    shown = shop.cli("runs", "show", run.id, check=True).stdout
    assert "slice.segment=premium.ndcg@10=" in shown and "slice.segment=nan.users=" in shown
    models = json.loads(shop.cli("models", "list", "--json", check=True).stdout)
    assert models[0]["decision"] == "passed", models


def test_a_slice_below_its_floor_keeps_the_model_from_promotion(shop):
    result = shop.run('evaluate.slices.gate={ndcg@10: ">= 0.5"}', "registry.model_name=strict")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "not promoted" in result.stdout and "slice segment=bargain: ndcg@10" in result.stdout
    listed = shop.cli("models", "list", check=True).stdout
    assert "slice segment=" in listed, listed
    models = json.loads(shop.cli("models", "list", "--json", check=True).stdout)
    strict = [m for m in models if m["name"] == "strict"]
    assert strict[0]["decision"] == "rejected" and not strict[0]["aliases"]
    assert any(r.startswith("slice segment=") for r in strict[0]["reasons"]), strict


def test_small_slices_are_left_out_and_logged(shop):
    missing = _slices(shop.last_run().metrics, "segment")["nan"]["users"]
    result = shop.run(f"evaluate.slices.min_rows={int(missing) + 1}",
                      "registry.model_name=small", check=True)
    assert (f"slice segment=nan: {int(missing)} test user(s), fewer than "
            "evaluate.slices.min_rows") in result.stdout, result.stdout
    assert set(_slices(shop.last_run().metrics, "segment")) == SEGMENTS - {"nan"}


def test_user_history_splits_new_from_returning_users_without_a_table(shop):
    run = shop.run_recorded("evaluate.slices.column=user_history", "evaluate.slices.min_rows=1",
                            "recsys.user_features=null", "registry.model_name=history")
    slices = _slices(run.metrics, "user_history")
    assert set(slices) == {"new", "returning"}, slices
    assert slices["new"]["users"] == run.metrics["fallback_users"] > 0
    assert slices["new"]["users"] + slices["returning"]["users"] == run.metrics["evaluated_users"]


def test_the_ranked_pipeline_is_sliced_too(shop):
    run = shop.run_recorded("pipeline=recommend_ranked", "registry.model_name=ranked",
                            check=False)
    assert run is not None and run.status == "completed"
    assert set(_slices(run.metrics, "segment")) == SEGMENTS


@pytest.mark.parametrize(("overrides", "needles"), [
    (["recsys.user_features=null"], ["evaluate.slices.column", "recsys.user_features"]),
    (["evaluate.slices.column=segmnt"],
     ["evaluate.slices.column 'segmnt'", "data/users.csv", "segment"]),
    (["recsys.user_features=data/nowhere.csv"],
     ["evaluate.slices.column 'segment'", "data/nowhere.csv", "no such file"]),
    (["evaluate.slices.min_rows=0"], ["evaluate.slices.min_rows"]),
], ids=["no-table", "no-column", "no-file", "min-rows"])
def test_slices_that_cannot_be_computed_stop_the_run_before_it_starts(shop, overrides, needles):
    before = shop.last_run().id
    assert_usage_error(shop.run(*overrides), *needles)
    assert shop.last_run().id == before


def test_a_sweep_over_recommenders_promotes_the_best_by_the_primary_metric(shop):
    result = shop.cli("run", "--multirun", "recsys.model=item_item,popularity",
                      "evaluate.primary=recall@10", "registry.model_name=sweep", check=True)
    assert "best run:" in result.stdout and "with recall@10=" in result.stdout, result.stdout
    models = [m for m in json.loads(shop.cli("models", "list", "--json", check=True).stdout)
              if m["name"] == "sweep"]
    assert len(models) == 2, models
    best = max(models, key=lambda m: m["metrics"]["recall@10"])
    assert best["aliases"] == ["champion"], models
