"""The second stage in process: feature tables' rules, the ranker's time split (nothing from
after the cutoff reaches its features), users and items without features, and the two-stage
model's .npz (arrays and LightGBM's text model, no pickle)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conveyor import ConfigError
from conveyor_recsys import codecs
from conveyor_recsys.features import feature_table
from conveyor_recsys.models import Recommender
from conveyor_recsys.rank_stages import label_split, train_ranker, training_examples
from conveyor_recsys.ranker import RankedRecommender, build_state
from conveyor_recsys.simulate import RetailWorld, simulate

SETTINGS = {"candidates": 20, "label_fraction": 0.3, "label_days": None,
            "category_column": "category", "n_estimators": 20, "learning_rate": 0.1,
            "num_leaves": 7, "min_child_samples": 5, "validation_fraction": 0.2, "k": 10,
            "exclude_seen": True, "model": "item_item",
            "factors": 8, "iterations": 5, "regularization": 0.1, "alpha": 10.0,
            "neighbours": 30, "seed": 3}


@pytest.fixture(scope="module")
def world():
    """A small simulated shop (not the defaults: seed 5, a price shock from week 4)."""
    sim = simulate(RetailWorld(users=300, items=120, weeks=5, seed=5, change="price_shock",
                               change_week=4, new_users_per_week=5, new_items_per_week=4))
    frame = sim.interactions.rename(columns={"user_id": "user", "item_id": "item"})
    frame["timestamp"] = frame["timestamp"].dt.tz_localize(None)
    return sim, frame[["user", "item", "timestamp", "event", "weight"]]


def _tables(sim, tmp_path, users=None, items=None):
    users = sim.users if users is None else users
    items = sim.items if items is None else items
    users.to_csv(tmp_path / "users.csv", index=False)
    items.to_csv(tmp_path / "items.csv", index=False)
    return (feature_table(tmp_path, "users.csv", "user_id", setting="recsys.user_features",
                          key_setting="recsys.user_column", key="user"),
            feature_table(tmp_path, "items.csv", "item_id", setting="recsys.item_features",
                          key_setting="recsys.item_column", key="item"))


def _candidates(frame):
    return Recommender.fit("item_item", frame["user"].to_numpy(), frame["item"].to_numpy(),
                           frame["weight"].to_numpy(), neighbours=30)


def test_text_columns_are_one_hot_and_numbers_kept(world, tmp_path):
    sim, _ = world
    users, items = _tables(sim, tmp_path)
    assert "segment=bargain" in users.columns and "price_sensitivity" in users.columns
    assert set(items.filter(like="category=").sum(axis=1)) == {1.0}
    assert items["price"].tolist() == sim.items["price"].tolist()
    assert items.columns[0] == "item" and len(items) == len(sim.items)


@pytest.mark.parametrize(("table", "needles"), [
    ("name,price\na,1\n", ("t.csv", "recsys.item_features", "'item_id'", "recsys.item_column")),
    ("item_id,price\n1,1\n1,2\n2,3\n", ("t.csv", "'item_id'", "repeats 1 key", "1")),
    ("item_id,price\n1,1\n,2\n", ("t.csv", "no 'item_id'", "[3]")),
    ("item_id\n1\n2\n", ("t.csv", "no feature column")),
    ("item_id,launched\n1,2024-01-01\n2,2024-02-01\n", ("t.csv", "'launched'", "dates")),
    ("item_id,title\n" + "".join(f"{i},title {i}\n" for i in range(60)),
     ("t.csv", "'title'", "60 distinct")),
])
def test_a_bad_table_is_a_config_error_naming_file_and_column(tmp_path, table, needles):
    (tmp_path / "t.csv").write_text(table)
    with pytest.raises(ConfigError) as caught:
        feature_table(tmp_path, "t.csv", "item_id", setting="recsys.item_features",
                      key_setting="recsys.item_column", key="item")
    for needle in needles:
        assert needle in str(caught.value), (needle, str(caught.value))


def test_a_missing_table_names_the_file_and_the_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.csv \(recsys.user_features\): no such file"):
        feature_table(tmp_path, "nope.csv", "user_id", setting="recsys.user_features",
                      key_setting="recsys.user_column", key="user")


def test_the_ranker_learns_from_the_earlier_part_and_labels_from_the_later(world, tmp_path):
    sim, frame = world
    users, items = _tables(sim, tmp_path)
    early, later, cutoff = label_split(frame, SETTINGS)
    assert early["timestamp"].max() <= cutoff < later["timestamp"].min()
    assert len(early) + len(later) == len(frame)
    model = _candidates(early)
    state = build_state(early, model.user_ids, model.item_ids, users, items, "category")
    examples = training_examples(early, later, model, state, 20, True)
    assert examples["y"].sum() > 0 and len(examples["group"]) == examples["users_kept"]
    # the later part only labels: moving its timestamps and weights changes nothing
    moved = later.assign(timestamp=later["timestamp"] + pd.Timedelta(days=30), weight=99.0)
    again = training_examples(early, moved, model, state, 20, True)
    np.testing.assert_array_equal(examples["X"], again["X"])
    np.testing.assert_array_equal(examples["y"], again["y"])
    # and the state's recency is measured from the cutoff side: no item was seen after it
    days_since_last = state.items[:, state.item_names.index("item_days_since_last")]
    assert np.nanmin(days_since_last) >= 0
    assert state.items.shape[0] == len(model.item_ids)


def test_users_and_items_without_features_are_scored_from_interactions(world, tmp_path):
    sim, frame = world
    half_users = sim.users[sim.users["user_id"] % 2 == 0]
    half_items = sim.items[sim.items["item_id"] % 2 == 0]
    users, items = _tables(sim, tmp_path, half_users, half_items)
    candidates = _candidates(frame)
    model, summary = train_ranker(frame, candidates, users, items, SETTINGS, threads=1,
                                  log=lambda _: None)
    odd_user = next(u for u in candidates.user_ids.tolist() if u % 2)
    slate = model.recommend(odd_user, k=10)
    assert len(slate) == 10 and not slate.fallback
    assert [s for _, s in slate] == sorted((s for _, s in slate), reverse=True)
    assert not set(model.seen(odd_user)) & {item for item, _ in slate}
    lists, fallbacks = model.recommend_many([*candidates.user_ids.tolist()[:50], 10**9], k=10)
    assert fallbacks == 1 and lists[10**9] == [i for i, _ in candidates.recommend(10**9, 10)]
    recommended = {item for items_ in lists.values() for item in items_}
    assert any(item % 2 for item in recommended)        # items missing from the table too
    assert summary["ranker_positives"] > 0
    # a seeded fifth of the users early-stops the boosting; the file keeps the trees used
    assert summary["ranker_validation_users"] >= 20
    assert 1 <= summary["ranker_trees"] <= SETTINGS["n_estimators"]
    assert model.booster.current_iteration() == summary["ranker_trees"]


def test_the_two_stage_model_round_trips_without_pickle(world, tmp_path):
    sim, frame = world
    users, items = _tables(sim, tmp_path)
    candidates = _candidates(frame)
    model, _ = train_ranker(frame, candidates, users, items, SETTINGS, threads=1,
                            log=lambda _: None)
    path = tmp_path / "m.npz"
    codecs.NPZ.dump(model, path)
    with np.load(path, allow_pickle=False) as data:      # arrays only
        assert str(data["__kind__"]) == "ranked"
        assert str(data["ranker_model"]).startswith("tree")
    loaded = codecs.NPZ.load(path)
    assert isinstance(loaded, RankedRecommender) and loaded.candidates.kind == "item_item"
    user = candidates.user_ids.tolist()[3]
    assert loaded.recommend(user, k=10) == model.recommend(user, k=10)
    assert loaded.baseline().recommend(user, k=5) == candidates.baseline().recommend(user, k=5)


def test_a_damaged_lightgbm_model_is_refused_clearly(world, tmp_path):
    sim, frame = world
    users, items = _tables(sim, tmp_path)
    model, _ = train_ranker(frame, _candidates(frame), users, items, SETTINGS, threads=1,
                            log=lambda _: None)
    arrays = {**model.saved_arrays(), "__kind__": np.asarray("ranked"),
              "ranker_model": np.asarray("not a model")}
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(codecs.UnreadableModel, match="two-stage"):
        codecs.NPZ.load(tmp_path / "bad.npz")
