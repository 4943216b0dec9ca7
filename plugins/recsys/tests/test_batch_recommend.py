"""`conveyor recommend --users FILE` through the real CLI, and `recommend_batch` in-process."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
from conveyor import api
from conveyor.testing import Project, assert_usage_error, conveyor_executable
from conveyor_recsys.models import Recommender
from conveyor_recsys.simulate import RetailWorld, simulate


def _project(root, name: str, *overrides: str, numbered: bool = False) -> Project:
    subprocess.run([conveyor_executable(), "init", name, "--template", "recommender"],
                   cwd=root, check=True, capture_output=True, text=True)
    project = Project(root / name)
    if numbered:   # ids as numbers (u0020 -> 20): a model whose user_id_type is int
        path = project.path / "data" / "interactions.csv"
        frame = pd.read_csv(path)
        frame["user_id"] = frame["user_id"].str.lstrip("u").astype(int)
        frame.to_csv(path, index=False)
    project.run(*overrides, check=True)
    return project


@pytest.fixture(scope="module")
def books(tmp_path_factory) -> Project:
    """`conveyor init books --template recommender`, trained with ALS (text user ids)."""
    return _project(tmp_path_factory.mktemp("batchrec"), "books", "recsys.model=als")


@pytest.fixture(scope="module")
def model(books):
    return api.load_model(books.path).model


def _users(books: Project, name: str, ids: list, column: str = "user_id") -> str:
    pd.DataFrame({column: ids}).to_csv(books.path / name, index=False)
    return name


def test_every_user_gets_the_models_slate_once_and_the_unknown_the_fallback(books, model):
    known = model.user_ids.tolist()[:40]
    ids = [*known, known[0], known[1], "nobody", "u999999"]
    name = _users(books, "users.csv", ids)
    done = books.cli("recommend", "--users", name, "-o", "slates.csv", "--k", "5", "--json",
                     check=True)
    summary = json.loads(done.stdout)
    assert {key: summary[key] for key in ("rows_read", "users", "duplicates", "fallback",
                                          "unknown", "wrong_type", "k", "model",
                                          "model_version", "column")} == {
        "rows_read": 44, "users": 42, "duplicates": 2, "fallback": 2, "unknown": 2,
        "wrong_type": 0, "k": 5, "model": "books", "model_version": 1, "column": "user_id"}
    out = pd.read_csv(books.path / "slates.csv")
    assert list(out.columns) == ["user", "position", "item", "score", "fallback",
                                 "model_version"]
    assert summary["rows_written"] == len(out) == 42 * 5
    assert out["user"].drop_duplicates().tolist() == [*known, "nobody", "u999999"]
    for user in (known[0], known[17], "nobody"):
        rows = out[out["user"] == user]
        expected = model.recommend(user, 5)
        assert rows["position"].tolist() == [1, 2, 3, 4, 5]
        assert rows["item"].tolist() == [item for item, _ in expected]
        assert np.allclose(rows["score"], [score for _, score in expected])
        assert rows["fallback"].tolist() == [expected.fallback] * 5
    assert set(out.loc[out["fallback"], "user"]) == {"nobody", "u999999"}
    assert (out["model_version"] == 1).all()


def test_the_only_column_parquet_out_and_include_seen(books, model):
    user = model.user_ids.tolist()[3]
    seen = set(model.seen(user))
    _users(books, "one.csv", [user], column="customer")
    done = books.cli("recommend", "--users", "one.csv", "-o", "one.parquet", "--include-seen",
                     "--k", "30", check=True)
    assert "1 users x k=30" in done.stdout and "one.parquet" in done.stdout
    out = pd.read_parquet(books.path / "one.parquet")
    expected = model.recommend(user, 30, exclude_seen=False)
    assert out["item"].tolist() == [item for item, _ in expected]
    assert seen & set(out["item"])              # seen items may come back
    default = books.cli("recommend", "--users", "one.csv", check=True)
    written = pd.read_parquet(books.path / "one.recommendations.parquet")
    assert "one.recommendations.parquet" in default.stdout and len(written) == 10
    assert not seen & set(written["item"])      # left out by default (recsys.exclude_seen)


def test_ids_of_the_wrong_type_get_the_fallback_flagged_and_counted(tmp_path):
    nums = _project(tmp_path, "nums", "recsys.model=popularity", numbered=True)
    (nums.path / "ids.csv").write_text("user_id\n20\n162\nabc\n\n20\n")
    done = nums.cli("recommend", "--users", "ids.csv", "-o", "out.csv", "--k", "3", check=True)
    assert "2 not int ids (e.g. 'abc')" not in done.stdout   # one wrong id, one blank row
    assert "1 not int ids (e.g. 'abc')" in done.stdout, done.stdout
    summary = json.loads(nums.cli("recommend", "--users", "ids.csv", "-o", "out.csv", "--k",
                                  "3", "--json", check=True).stdout)
    assert (summary["users"], summary["wrong_type"], summary["unknown"], summary["fallback"],
            summary["duplicates"]) == (3, 1, 0, 1, 1)
    out = pd.read_csv(nums.path / "out.csv", dtype={"user": str})
    assert out.groupby("user")["fallback"].first().to_dict() == {
        "20": False, "162": False, "abc": True}


@pytest.mark.parametrize("name, content, needles", [
    ("empty.csv", "user_id\n", ["empty.csv", "no rows", "user_id"]),
    ("empty.csv", "", ["empty.csv", "is empty", "user_id"]),
    ("empty.csv", "name,age\nann,3\n",
     ["empty.csv", "no column 'user_id'", "recsys.user_column", "name, age"]),
    ("bad.parquet", "not parquet", ["bad.parquet", "cannot be read", "user_id"]),
])
def test_an_empty_file_or_a_missing_column_is_a_usage_error_and_writes_nothing(
        books, name, content, needles):
    (books.path / name).write_text(content)
    assert_usage_error(books.cli("recommend", "--users", name, "-o", "never.csv"), *needles)
    assert not (books.path / "never.csv").exists()


@pytest.mark.parametrize("args, needles", [
    (["--users", "missing.csv"], ["--users missing.csv", "no such file"]),
    (["--users", "users.csv", "-o", "out.json"], ["-o out.json", ".parquet or .csv"]),
    (["--users", "users.csv", "--model", "books:7"], ["books", "7"]),
    (["--users", "users.csv", "--k", "0"], ["--k 0"]),
])
def test_bad_arguments_are_usage_errors(books, args, needles):
    _users(books, "users.csv", ["u0001"])
    assert_usage_error(books.cli("recommend", *args), *needles)


def test_help_teaches():
    done = subprocess.run([conveyor_executable(), "recommend", "--help"], capture_output=True,
                          text=True, check=True)
    for needle in ("--users", "--include-seen", "fallback", "recsys.user_column", "--json"):
        assert needle in done.stdout


# --- recommend_batch in-process: the same slates as recommend, one by one ----------------


@pytest.fixture(scope="module")
def interactions():
    sim = simulate(RetailWorld(users=150, items=60, weeks=3, seed=11, change_week=2))
    frame = sim.interactions
    return frame["user_id"].to_numpy(), frame["item_id"].to_numpy(), frame["weight"].to_numpy()


@pytest.mark.parametrize("kind", ["als", "popularity", "item_item"])
@pytest.mark.parametrize("exclude_seen", [True, False])
def test_recommend_batch_matches_recommend(interactions, kind, exclude_seen):
    model = Recommender.fit(kind, *interactions, factors=8, iterations=3, threads=1)
    users = [*model.user_ids.tolist()[:70], "stranger", 12345]
    batch = model.recommend_batch(users, 7, exclude_seen=exclude_seen)
    for user, slate in zip(users, batch, strict=True):
        one = model.recommend(user, 7, exclude_seen=exclude_seen)
        assert np.allclose([s for _, s in slate], [s for _, s in one]), user
        # equal scores at the cut: recommend takes any of them, recommend_batch the first items
        # (als: float32 products, equal to about 1e-6 one way or the other)
        cut = one[-1][1] + 1e-5 * max(1.0, abs(one[-1][1]))
        assert [i for i, s in slate if s > cut] == [i for i, s in one if s > cut], user
        assert slate.fallback == one.fallback


def test_batch_slates_beyond_one_group_of_items_leave_out_what_was_seen():
    rng = np.random.default_rng(4)
    items = np.arange(200)
    users = np.concatenate([np.zeros(195, dtype=int), rng.integers(1, 40, 600)])
    picks = np.concatenate([items[:195], rng.integers(0, 200, 600)])
    model = Recommender.fit("popularity", users, picks, rng.random(len(users)) + 0.5)
    slates = model.recommend_batch(list(range(40)), 12)
    assert [item for item, _ in slates[0]] == [195, 196, 197, 198, 199] or \
        sorted(item for item, _ in slates[0]) == [195, 196, 197, 198, 199]
    for user, slate in enumerate(slates):
        assert [i for i, _ in slate] == [i for i, _ in model.recommend(user, 12)], user
        assert not set(model.seen(user)) & {i for i, _ in slate}


def test_a_user_who_saw_almost_everything_gets_a_short_slate():
    users = np.array([1] * 5 + [2])
    items = np.array([10, 11, 12, 13, 14, 10])
    model = Recommender.fit("popularity", users, items, np.ones(6))
    assert model.recommend_batch([1, 2], 10) == [[], model.recommend(2, 10)]
    assert [len(s) for s in model.recommend_batch([2], 10)] == [4]


def test_recommend_batch_of_the_two_stage_model_matches_recommend(tmp_path):
    from conveyor_recsys.features import feature_table
    from conveyor_recsys.rank_stages import train_ranker

    sim = simulate(RetailWorld(users=200, items=80, weeks=4, seed=23, change="price_shock",
                               change_week=3))
    frame = sim.interactions.rename(columns={"user_id": "user", "item_id": "item"})
    frame["timestamp"] = frame["timestamp"].dt.tz_localize(None)
    frame = frame[["user", "item", "timestamp", "event", "weight"]]
    sim.users.to_csv(tmp_path / "users.csv", index=False)
    sim.items.to_csv(tmp_path / "items.csv", index=False)
    users = feature_table(tmp_path, "users.csv", "user_id", setting="recsys.user_features",
                          key_setting="recsys.user_column", key="user")
    items = feature_table(tmp_path, "items.csv", "item_id", setting="recsys.item_features",
                          key_setting="recsys.item_column", key="item")
    candidates = Recommender.fit("item_item", frame["user"].to_numpy(), frame["item"].to_numpy(),
                                 frame["weight"].to_numpy(), neighbours=30)
    settings = {"candidates": 20, "label_fraction": 0.3, "label_days": None,
                "category_column": "category", "n_estimators": 20, "learning_rate": 0.1,
                "num_leaves": 7, "min_child_samples": 5, "validation_fraction": 0.2, "k": 10,
                "exclude_seen": True, "model": "item_item", "factors": 8, "iterations": 5,
                "regularization": 0.1, "alpha": 10.0, "neighbours": 30, "seed": 3}
    model, _ = train_ranker(frame, candidates, users, items, settings, threads=1,
                            log=lambda _: None)
    wanted = [*candidates.user_ids.tolist()[:30], "stranger"]
    for user, slate in zip(wanted, model.recommend_batch(wanted, 5), strict=True):
        one = model.recommend(user, 5)
        assert [item for item, _ in slate] == [item for item, _ in one], user
        assert slate.fallback == one.fallback == (user == "stranger")
