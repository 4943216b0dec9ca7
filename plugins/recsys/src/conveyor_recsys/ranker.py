"""The second stage: a LightGBM lambdarank ranker over the candidate generator's top items.

Training (`train_ranker`, run by the `recsys.rank` stage) splits the training period in time:
a candidate model of the same kind is refitted on the earlier part, proposes its top
`candidates` items to each user of the later part, and the later part's interactions label
them (1: the user interacted with the item then, 0: not). Features come from the earlier part
only, so nothing the ranker learns from was in the future of what it scores. The served model
(`RankedRecommender`) uses the candidate model trained on the whole training period and
features computed from all of it, by the same code (`FeatureState`, `pair_features`).

Features per (user, candidate item):

* the candidate's score, its rank, and its score over the best candidate's (scores of
  item_item grow with the user's history; the share does not);
* the user's activity: interactions, summed weight, distinct items, days since the last one;
* the item's popularity: summed weight, distinct users, weight in the last 7 days, days since
  its first and its last interaction;
* the user and item feature tables' columns (`conveyor_recsys.features`), missing when absent;
* with an item table whose `recsys.ranker.category_column` is one-hot encoded: the user's share
  of interaction weight on the item's category (affinity);
* for every numeric item column (price, say): the item's value less the user's weighted mean
  over their history (a user who buys cheap items meets an expensive one).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from conveyor_recsys.features import ONE_HOT, aligned
from conveyor_recsys.models import Recommender, Slate, plain_id

KIND = "ranked"
RECENT_DAYS = 7.0
BATCH = 2000          # users scored per LightGBM call by recommend_batch
CANDIDATE_PREFIX = "candidates__"
PAIR_NAMES = ("candidate_score", "candidate_rank", "candidate_score_share")
USER_ACTIVITY = ("user_interactions", "user_weight", "user_items", "user_days_since_last")
ITEM_ACTIVITY = ("item_weight", "item_users", "item_recent_weight", "item_days_since_first",
                 "item_days_since_last")


@dataclass
class FeatureState:
    """What the features of a (user, item) pair are computed from, aligned with a candidate
    model's `user_ids` (rows of `users`, `shares`, `means`) and `item_ids` (rows of `items`,
    `groups`, `numeric`)."""

    users: Any                # (users, user features): activity, then the user table
    user_names: list[str]
    items: Any                # (items, item features): popularity, then the item table
    item_names: list[str]
    shares: Any               # (users, categories): share of weight per category
    groups: Any               # (items,): the item's category, -1 when unknown
    means: Any                # (users, numeric item columns): weighted mean over history
    numeric: Any              # (items, numeric item columns)
    numeric_names: list[str]

    @property
    def names(self) -> list[str]:
        return [*PAIR_NAMES, *self.user_names, *self.item_names,
                *(["category_affinity"] if self.shares.shape[1] else []),
                *(f"{name}_vs_user_mean" for name in self.numeric_names)]

    def to_arrays(self) -> dict[str, Any]:
        import numpy as np

        return {"state_users": self.users, "state_items": self.items,
                "state_shares": self.shares, "state_groups": self.groups,
                "state_means": self.means, "state_numeric": self.numeric,
                "state_user_names": np.asarray(self.user_names, dtype=str),
                "state_item_names": np.asarray(self.item_names, dtype=str),
                "state_numeric_names": np.asarray(self.numeric_names, dtype=str)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> FeatureState:
        return cls(users=arrays["state_users"], items=arrays["state_items"],
                   shares=arrays["state_shares"], groups=arrays["state_groups"],
                   means=arrays["state_means"], numeric=arrays["state_numeric"],
                   user_names=arrays["state_user_names"].tolist(),
                   item_names=arrays["state_item_names"].tolist(),
                   numeric_names=arrays["state_numeric_names"].tolist())


def build_state(interactions: Any, user_ids: Any, item_ids: Any, user_table: Any,
                item_table: Any, category_column: str | None) -> FeatureState:
    """The feature state of `interactions` (canonical columns), as of their last timestamp."""
    import numpy as np
    import pandas as pd

    end = interactions["timestamp"].max()
    day = pd.Timedelta(days=1)
    users_key = np.asarray(user_ids).astype(str)
    items_key = np.asarray(item_ids).astype(str)
    frame = interactions.assign(user=interactions["user"].astype(str),
                                item=interactions["item"].astype(str))
    by_user = frame.groupby("user")
    activity = pd.DataFrame({
        "user_interactions": by_user.size(), "user_weight": by_user["weight"].sum(),
        "user_items": by_user["item"].nunique(),
        "user_days_since_last": (end - by_user["timestamp"].max()) / day}).reindex(users_key)
    by_item = frame.groupby("item")
    recent = frame[frame["timestamp"] > end - pd.Timedelta(days=RECENT_DAYS)]
    popularity = pd.DataFrame({
        "item_weight": by_item["weight"].sum(), "item_users": by_item["user"].nunique(),
        "item_recent_weight": recent.groupby("item")["weight"].sum(),
        "item_days_since_first": (end - by_item["timestamp"].min()) / day,
        "item_days_since_last": (end - by_item["timestamp"].max()) / day}).reindex(items_key)
    popularity["item_recent_weight"] = popularity["item_recent_weight"].fillna(0.0)
    user_matrix, user_names = aligned(user_table, "user", user_ids)
    item_matrix, item_names = aligned(item_table, "item", item_ids)
    users = np.hstack([activity.to_numpy(dtype="float64"), user_matrix])
    items = np.hstack([popularity.to_numpy(dtype="float64"), item_matrix])

    user_row = pd.Series(np.arange(len(users_key)), index=users_key)
    item_col = pd.Series(np.arange(len(items_key)), index=items_key)
    rows = user_row.reindex(frame["user"]).to_numpy()
    cols = item_col.reindex(frame["item"]).to_numpy()
    known = ~(np.isnan(rows.astype("float64")) | np.isnan(cols.astype("float64")))
    rows, cols = rows[known].astype("int64"), cols[known].astype("int64")
    weight = frame["weight"].to_numpy(dtype="float64")[known]
    total = np.bincount(rows, weight, minlength=len(users_key))
    total[total == 0] = 1.0

    prefix = f"{category_column}{ONE_HOT}" if category_column else None
    one_hot = [j for j, name in enumerate(item_names) if prefix and name.startswith(prefix)]
    groups = np.full(len(items_key), -1, dtype="int64")
    shares = np.zeros((len(users_key), len(one_hot)))
    if one_hot:
        block = np.nan_to_num(item_matrix[:, one_hot])
        has = block.sum(axis=1) > 0
        groups[has] = block[has].argmax(axis=1)
        ok = groups[cols] >= 0
        np.add.at(shares, (rows[ok], groups[cols][ok]), weight[ok])
        shares /= total[:, None]
    numeric_idx = [j for j, name in enumerate(item_names) if ONE_HOT not in name]
    numeric = item_matrix[:, numeric_idx]
    means = np.full((len(users_key), len(numeric_idx)), np.nan)
    for n in range(len(numeric_idx)):
        values = numeric[cols, n]
        ok = ~np.isnan(values)
        weights = np.bincount(rows[ok], weight[ok], minlength=len(users_key))
        sums = np.bincount(rows[ok], weight[ok] * values[ok], minlength=len(users_key))
        with np.errstate(invalid="ignore", divide="ignore"):
            means[:, n] = np.where(weights > 0, sums / np.where(weights > 0, weights, 1), np.nan)
    return FeatureState(users=users, user_names=[*USER_ACTIVITY, *user_names], items=items,
                        item_names=[*ITEM_ACTIVITY, *item_names], shares=shares, groups=groups,
                        means=means, numeric=numeric,
                        numeric_names=[item_names[j] for j in numeric_idx])


def pair_features(state: FeatureState, rows: Any, cols: Any, scores: Any, ranks: Any,
                  shares_of_best: Any) -> Any:
    """The feature matrix of (user row, item column) pairs, columns as `state.names`."""
    import numpy as np

    parts = [np.column_stack([scores, ranks, shares_of_best]).astype("float64"),
             state.users[rows], state.items[cols]]
    if state.shares.shape[1]:
        group = state.groups[cols]
        affinity = np.where(group >= 0, state.shares[rows, np.maximum(group, 0)], np.nan)
        parts.append(affinity[:, None])
    if state.numeric.shape[1]:
        parts.append(state.numeric[cols] - state.means[rows])
    return np.hstack(parts).astype("float32")    # half the memory; LightGBM bins anyway


def candidate_pools(model: Recommender, users: Iterable[Hashable], size: int,
                    exclude_seen: bool, seen: Mapping[Hashable, Iterable[Hashable]] | None = None
                    ) -> tuple[list[Hashable], Any, Any, Any, Any, Any]:
    """The candidate model's top `size` items of every known user, flattened: the users, and
    per pair the user's row, the item's column, its score, rank and score over the best's."""
    import numpy as np

    out_users, rows, cols, scores, ranks, share = [], [], [], [], [], []
    for user in users:
        row = model._user_index.get(plain_id(user))
        if row is None:
            continue
        slate = model.recommend(user, size, exclude_seen=exclude_seen,
                                seen=(seen or {}).get(user))
        if not slate:
            continue
        values = np.asarray([score for _, score in slate], dtype="float64")
        best = values[0] if values[0] > 0 else 1.0
        out_users.append(user)
        rows.append(np.full(len(slate), row))
        cols.append(np.asarray([model._item_index[item] for item, _ in slate]))
        scores.append(values)
        ranks.append(np.arange(1, len(slate) + 1))
        share.append(values / best)
    if not out_users:
        empty = np.zeros(0)
        return [], empty.astype("int64"), empty.astype("int64"), empty, empty, empty
    return (out_users, np.concatenate(rows), np.concatenate(cols), np.concatenate(scores),
            np.concatenate(ranks), np.concatenate(share))


class RankedRecommender(Recommender):
    """A candidate generator (`candidates`, a `Recommender`) whose top `pool` items per user
    are re-ordered by a LightGBM ranker; the same interface as `Recommender`. A user the
    candidate model does not know gets its popularity fallback, flagged `slate.fallback`."""

    # A LightGBM predict per slate (milliseconds): a server calls `recommend` in a worker
    # thread (`conveyor.serving.RecommendingModel`).
    slow_recommend: ClassVar[bool] = True

    def __init__(self, candidates: Recommender, booster_text: str, state: FeatureState,
                 pool: int) -> None:
        import lightgbm

        super().__init__(candidates.kind, candidates.arrays)
        self.kind = KIND
        self.candidates = candidates
        self.booster_text = booster_text
        self.booster = lightgbm.Booster(model_str=booster_text)
        self.state = state
        self.pool = pool
        self.feature_names = state.names

    def saved_arrays(self) -> dict[str, Any]:
        """Everything the model is, as arrays `numpy.load(allow_pickle=False)` reads back."""
        import numpy as np

        arrays = {f"{CANDIDATE_PREFIX}{name}": value
                  for name, value in self.candidates.arrays.items()}
        arrays[f"{CANDIDATE_PREFIX}kind"] = np.asarray(self.candidates.kind)
        arrays.update(self.state.to_arrays())
        arrays["ranker_model"] = np.asarray(self.booster_text)
        arrays["ranker_pool"] = np.asarray(self.pool, dtype="int64")
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, Any]) -> RankedRecommender:
        candidate = {name[len(CANDIDATE_PREFIX):]: value for name, value in arrays.items()
                     if name.startswith(CANDIDATE_PREFIX)}
        kind = str(candidate.pop("kind"))
        return cls(Recommender(kind, candidate), str(arrays["ranker_model"]),
                   FeatureState.from_arrays(arrays), int(arrays["ranker_pool"]))

    def baseline(self) -> Recommender:
        return self.candidates.baseline()

    def _ranked(self, users: Collection[Hashable], k: int, exclude_seen: bool,
                seen: Mapping[Hashable, Iterable[Hashable]] | None = None
                ) -> dict[Hashable, Slate]:
        import numpy as np

        size = max(self.pool, k)
        known, rows, cols, scores, ranks, share = candidate_pools(
            self.candidates, users, size, exclude_seen, seen)
        out: dict[Hashable, Slate] = {}
        if known:
            predicted = self.booster.predict(pair_features(self.state, rows, cols, scores, ranks,
                                                           share), num_threads=1)
            # every pool starts at rank 1 (a user may be asked for twice)
            starts = np.concatenate([[0], np.flatnonzero(ranks[1:] == 1) + 1, [len(rows)]])
            for user, start, end in zip(known, starts[:-1], starts[1:], strict=True):
                part = predicted[start:end]
                order = np.lexsort((cols[start:end], -part))[:k]
                out[user] = Slate((plain_id(self.item_ids[cols[start + j]]), float(part[j]))
                                  for j in order)
        for user in users:
            if user not in out:   # unknown to the candidate model, or nothing left to propose
                out[user] = self.candidates.recommend(user, k, exclude_seen=exclude_seen,
                                                      seen=(seen or {}).get(user))
        return out

    def scores(self, user_id: Hashable) -> tuple[Any, bool]:
        """The ranker's score of every candidate in the user's pool (aligned with `item_ids`;
        -inf outside the pool), or the popularity fallback for an unknown user."""
        import numpy as np

        if not self.knows(user_id):
            return self.popularity, True
        full = np.full(len(self.item_ids), -np.inf)
        for item, score in self._ranked([user_id], self.pool, False)[user_id]:
            full[self._item_index[plain_id(item)]] = score
        return full, False

    def recommend(self, user_id: Hashable, k: int = 10, exclude_seen: bool = True,
                  seen: Iterable[Hashable] | None = None) -> Slate:
        """The top `k` of the user's re-ranked candidate pool as (item, score), best first;
        see `Recommender.recommend`."""
        if k < 1:
            raise ValueError(f"k is {k}; it must be at least 1")
        return self._ranked([user_id], k, exclude_seen,
                            {user_id: list(seen)} if seen is not None else None)[user_id]

    def recommend_many(self, users: Collection[Hashable], k: int, exclude_seen: bool = True
                       ) -> tuple[dict[Hashable, list[Hashable]], int]:
        """Top-k item lists for many users (`recommend_batch`'s slates), and how many of
        them got the fallback."""
        users = list(users)
        slates = dict(zip(users, self.recommend_batch(users, k, exclude_seen), strict=True))
        fallbacks = sum(slate.fallback for slate in slates.values())
        return {user: [item for item, _ in slate] for user, slate in slates.items()}, fallbacks

    def recommend_batch(self, users: Sequence[Hashable], k: int, exclude_seen: bool = True
                        ) -> list[Slate]:
        """The slate of each of `users`, in their order (one LightGBM call per `BATCH` users);
        see `Recommender.recommend_batch`."""
        if k < 1:
            raise ValueError(f"k is {k}; it must be at least 1")
        slates: dict[Hashable, Slate] = {}
        for start in range(0, len(users), BATCH):
            slates.update(self._ranked(users[start:start + BATCH], k, exclude_seen))
        return [slates[user] for user in users]

    def __repr__(self) -> str:
        return (f"RankedRecommender(lightgbm over {self.candidates.kind}, pool={self.pool}, "
                f"users={len(self.user_ids)}, items={len(self.item_ids)})")
