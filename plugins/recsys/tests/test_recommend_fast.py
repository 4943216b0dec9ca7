"""The vectorised scoring path of `Recommender.recommend`: the same slates as scoring one item
at a time (the implementation it replaced, kept here as the reference), on simulated data the
defaults were not tuned on; the serving protocol; and its cost per call."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conveyor.serving import RecommendingModel, is_recommender
from conveyor_recsys.models import Recommender, Slate, plain_id


def reference_recommend(model: Recommender, user_id, k: int, exclude_seen: bool = True,
                        seen=None) -> Slate:
    """The original per-item implementation (np.add.at over each history item's row)."""
    row = model._user_index.get(plain_id(user_id))
    if row is None or model.kind == "popularity":
        scores, fallback = model.popularity, row is None
    elif model.kind == "als":
        scores, fallback = model.arrays["item_factors"] @ model.arrays["user_factors"][row], False
    else:
        indptr, indices = model.arrays["history_indptr"], model.arrays["history_indices"]
        sim_ptr, sim_idx = model.arrays["similarity_indptr"], model.arrays["similarity_indices"]
        sim_val = model.arrays["similarity_data"]
        scores = np.zeros(len(model.item_ids))
        for j in indices[indptr[row]:indptr[row + 1]]:
            np.add.at(scores, sim_idx[sim_ptr[j]:sim_ptr[j + 1]], sim_val[sim_ptr[j]:sim_ptr[j + 1]])
        scores += model.popularity / (model.popularity.max() or 1.0) * 1e-6
        fallback = False
    scores = np.array(scores, dtype="float64")
    excluded: set[int] = set()
    if exclude_seen and row is not None:
        indptr = model.arrays["history_indptr"]
        excluded.update(model.arrays["history_indices"][indptr[row]:indptr[row + 1]].tolist())
    for item in seen or ():
        j = model._item_index.get(plain_id(item))
        if j is not None:
            excluded.add(j)
    if excluded:
        scores[list(excluded)] = -np.inf
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    top = top[np.lexsort((top, -scores[top]))]
    slate = Slate((plain_id(model.item_ids[j]), float(scores[j])) for j in top
                  if np.isfinite(scores[j]))
    slate.fallback = fallback
    return slate


@pytest.fixture(scope="module")
def interactions():
    from conveyor_recsys.simulate import RetailWorld, simulate

    frame = simulate(RetailWorld(users=300, items=120, weeks=3, change_week=2,
                                 change="price_shock", seed=23)).interactions
    return frame["user_id"].to_numpy(), frame["item_id"].to_numpy(), frame["weight"].to_numpy()


@pytest.mark.parametrize("kind", ["popularity", "item_item", "als"])
def test_vectorised_slates_equal_the_per_item_reference(interactions, kind):
    users, items, weights = interactions
    model = Recommender.fit(kind, users, items, weights, factors=8, iterations=3, seed=3,
                            threads=1, neighbours=20)
    asked = [*np.unique(users)[:150].tolist(), -1, 10**9]  # two unknown users
    for user in asked:
        for k, exclude_seen in ((10, True), (10, False), (1, True), (500, True)):
            fast = model.recommend(user, k, exclude_seen=exclude_seen)
            slow = reference_recommend(model, user, k, exclude_seen=exclude_seen)
            assert fast == slow and fast.fallback == slow.fallback, (user, k, exclude_seen)
    seen = items[:3].tolist()
    assert model.recommend(-1, 5, seen=seen) == reference_recommend(model, -1, 5, seen=seen)
    assert model.recommend(users[0], 5, seen=seen) == reference_recommend(model, users[0], 5,
                                                                          seen=seen)


def test_a_recommender_is_what_a_server_recognises():
    model = Recommender.fit("popularity", ["a", "b"], [1, 2], [1.0, 1.0])
    assert isinstance(model, RecommendingModel) and is_recommender(model)
    assert (model.item_count, model.user_count, model.user_id_type) == (2, 2, str)
    assert Recommender.fit("popularity", [7], [1], [1.0]).user_id_type is int
    assert not is_recommender(object())


def test_the_fallback_slate_is_kept_but_never_shared():
    model = Recommender.fit("popularity", ["a", "b", "b"], [1, 2, 2], [1.0, 1.0, 1.0])
    first = model.recommend("nobody", 2)
    first.append(("tampered", 0.0))
    again = model.recommend("someone else", 2)
    assert again == [(2, 2.0), (1, 1.0)] and again.fallback


def test_one_als_slate_over_10000_items_costs_well_under_a_millisecond():
    rng = np.random.default_rng(11)
    users, items = 2000, 10_000
    arrays = {"user_ids": np.arange(users), "item_ids": np.arange(items),
              "popularity": rng.random(items),
              "history_indptr": np.arange(0, users * 20 + 1, 20),
              "history_indices": rng.integers(0, items, users * 20),
              "user_factors": rng.random((users, 32), dtype=np.float32),
              "item_factors": rng.random((items, 32), dtype=np.float32)}
    model = Recommender("als", arrays)
    asked = rng.integers(0, users + 200, 2000).tolist()
    times = []
    for user in asked:
        start = time.perf_counter()
        model.recommend(user, 10)
        times.append(time.perf_counter() - start)
    assert np.median(times) < 0.5e-3, f"median {np.median(times) * 1e6:.0f} us"
