"""Top-k ranking metrics for recommenders: per user, then averaged over the users evaluated.

`ranking_metrics(recommended, relevant, k=...)` takes each user's ranked recommendations (best first)
and the items that user actually interacted with in the held-out period, and returns::

    {"ndcg@k", "recall@k", "map@k", "mrr", "hit_rate@k", "coverage", "novelty", "users"}

`per_user(...)` returns the same per-user values as arrays aligned on one user list, for a paired
comparison of two models user by user (the paired bootstrap of `conveyor.uncertainty`);
`ranking_directions(k)` says which way each metric is better (all "higher").

Who is evaluated
    Relevance is binary: an item is relevant to a user when it is in ``relevant[user]``. Only users
    with at least one relevant item are evaluated; their number is ``"users"``. Users absent from
    ``relevant`` or with an empty collection are left out of every metric (no ground truth), and so
    are users that appear only in ``recommended``. An evaluated user with no recommendation (absent
    from ``recommended`` or an empty list) scores 0 on every metric, novelty included.
    Each metric is computed per user and the mean taken over the evaluated users (a macro average);
    coverage is the one catalogue-level figure. With no evaluated user every metric is 0.0 and
    ``"users"`` is 0.

Top-k list
    A user's list is read best first. An item repeated in the list counts once, at its first
    position: duplicates are dropped before the list is cut at k, so ``[a, a, b]`` at k=2 is
    ``[a, b]``. A list shorter than k is used as it is (missing positions are misses).

Definitions (``R`` the user's relevant set, ``rel_i`` = 1 when the item at position i is in R)
    ndcg@k      DCG@k / IDCG@k with DCG@k = sum_{i<=k} rel_i / log2(i + 1) (the linear-gain form of
                Järvelin & Kekäläinen, ACM TOIS 20(4), 2002) and the ideal DCG over the first
                min(|R|, k) positions: sum_{i<=min(|R|,k)} 1 / log2(i + 1). Same as ranx's
                ``ndcg@k``.
    recall@k    hits in the top k / |R|. The denominator is |R|, not min(|R|, k), so a user with
                more than k relevant items cannot reach 1 (the convention of ranx's ``recall@k``
                and RecTools' ``Recall``).
    map@k       mean over users of AP@k = (sum over hits at position i <= k of precision@i)
                / min(|R|, k). The min(|R|, k) denominator makes a perfect top-k list score 1 for
                every user (the "truncated" AP of e.g. Kaggle's apk and Microsoft Recommenders'
                map_at_k). ranx's ``map@k`` (and RecTools' ``MAP``) divide by |R| instead; the two
                agree for users with |R| <= k, and per user ours = ranx's * |R| / min(|R|, k).
    mrr         1 / rank of the first relevant item, counting only the top k (0 when no hit in the
                top k): reciprocal rank *cut at k*, ranx's ``mrr@k``, not its uncut ``mrr``. The
                key carries no "@k" (the name the framework's callers use), but it is at k.
    hit_rate@k  share of users with at least one relevant item in the top k (ranx's
                ``hit_rate@k``).
    coverage    catalogue coverage: distinct items in the evaluated users' top-k lists / catalogue
                size. ``catalogue`` defaults to every item named in the inputs (all of every list in
                ``recommended`` and all of ``relevant``); a given catalogue must contain every item
                recommended in a top-k list. Same as RecTools' ``CatalogCoverage(normalize=True)``.
    novelty     per user, the mean over the items of that user's top-k list of the item's
                self-information -log2(share), share = item_popularity[item] / sum(item_popularity);
                then averaged over the evaluated users (a user with an empty list scores 0). An item
                with no popularity (absent, or 0) gets the smallest positive share in the table, so
                it is "as novel as the rarest known item" rather than infinitely novel. Returned only
                when ``item_popularity`` is given (the key is absent otherwise). With popularity =
                number of training users per item and every item known, this is RecTools'
                ``MeanInvUserFreq`` plus the constant log2(sum(popularity) / number of users)
                (Zhou et al., PNAS 107(10), 2010; Vargas & Castells, RecSys 2011).

Errors are `ValueError` (or `TypeError` for a wrong container type) with a message that names the
offending argument and user: k not a positive integer, a list given as a string, a popularity that
is negative or not finite, a popularity table with no positive value, recommended items missing from
a given catalogue.
"""
from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import Any

__all__ = ["metric_names", "per_user", "ranking_directions", "ranking_metrics"]

_EXAMPLES = 3  # offending values quoted in an error message


def metric_names(k: int, *, novelty: bool = True) -> list[str]:
    """The keys of `ranking_metrics`'s answer other than "users", in order."""
    _check_k(k)
    names = [f"ndcg@{k}", f"recall@{k}", f"map@{k}", "mrr", f"hit_rate@{k}", "coverage"]
    return [*names, "novelty"] if novelty else names


def ranking_directions(k: int) -> dict[str, str]:
    """Which way each metric of `ranking_metrics(..., k=k)` is better: all "higher".

    "users" (a count, not a score) is not included; "novelty" is, whether or not it is computed.
    """
    return {name: "higher" for name in metric_names(k)}


def ranking_metrics(recommended: Mapping[Hashable, Sequence[Hashable]],
                    relevant: Mapping[Hashable, Collection[Hashable]], *, k: int,
                    item_popularity: Mapping[Hashable, float] | None = None,
                    catalogue: Collection[Hashable] | None = None) -> dict[str, float]:
    """Mean of each ranking metric over the users with at least one relevant item (see the module).

    Returns ``{"ndcg@k", "recall@k", "map@k", "mrr", "hit_rate@k", "coverage", "novelty",
    "users"}``; "novelty" only when `item_popularity` is given; "users" is the number of users
    evaluated (an int). With no evaluated user, every metric is 0.0 and "users" is 0.
    """
    table = _compute(recommended, relevant, k=k, item_popularity=item_popularity)
    n = len(table.pop("user"))
    shown = table.pop("_shown")
    out: dict[str, Any] = {name: (float(values.mean()) if n else 0.0) for name, values in table.items()}
    out["coverage"] = _coverage(recommended, relevant, shown, catalogue)
    ordered = {name: out[name] for name in metric_names(k, novelty=item_popularity is not None)}
    ordered["users"] = n
    return ordered


def per_user(recommended: Mapping[Hashable, Sequence[Hashable]],
             relevant: Mapping[Hashable, Collection[Hashable]], *, k: int,
             item_popularity: Mapping[Hashable, float] | None = None) -> dict[str, Any]:
    """Each evaluated user's value of every per-user metric, aligned on one list of users.

    Returns ``{"user": [user ids], "ndcg@k": array, "recall@k": array, "map@k": array,
    "mrr": array, "hit_rate@k": array (0.0 or 1.0), "novelty": array (with item_popularity)}``:
    numpy float arrays of one value per user, in the order users appear in `relevant` (users with
    no relevant item left out). Two models scored against the same `relevant` mapping therefore give
    arrays aligned user by user; the mean of each array is `ranking_metrics`'s figure. Coverage is a
    catalogue-level figure and has no per-user value.
    """
    table = _compute(recommended, relevant, k=k, item_popularity=item_popularity)
    del table["_shown"]
    return table


# --- internals ---------------------------------------------------------------------------------------

def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return k


def _check_mapping(value: object, name: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of user to items, got {type(value).__name__}")
    return value


def _items(value: object, name: str, user: Hashable) -> Iterable[Hashable]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name}[{user!r}] must be a collection of items, got {type(value).__name__} "
                        f"{value!r:.60}")
    return value


def _top_k(items: Iterable[Hashable], k: int) -> list[Hashable]:
    """The first k distinct items, in order (a repeated item keeps its first position)."""
    if isinstance(items, Sequence) or hasattr(items, "__getitem__"):
        try:
            head = list(items[:k])  # type: ignore[index]
        except TypeError:
            head = None
        if head is not None and len(set(head)) == len(head):
            return head  # no repeat in the first k: they are the top k (or the whole, shorter, list)
    seen: set[Hashable] = set()
    top: list[Hashable] = []
    for item in items:
        if item not in seen:
            seen.add(item)
            top.append(item)
            if len(top) == k:
                break
    return top


def _self_information(item_popularity: Mapping[Hashable, float]) -> tuple[dict[Hashable, float], float]:
    """-log2(share) per item with a positive popularity, and the value for any other item."""
    if not isinstance(item_popularity, Mapping):
        raise TypeError(f"item_popularity must be a mapping of item to a number, "
                        f"got {type(item_popularity).__name__}")
    bad = []
    positive: dict[Hashable, float] = {}
    for item, value in item_popularity.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number < 0:
            bad.append(f"{item!r}: {value!r}")
        elif number > 0:
            positive[item] = number
    if bad:
        raise ValueError(f"item_popularity must be finite and non-negative: {len(bad)} item(s) are not, "
                         f"e.g. {', '.join(bad[:_EXAMPLES])}")
    if not positive:
        raise ValueError("item_popularity has no item with a positive popularity: novelty is undefined")
    total = math.fsum(positive.values())
    info = {item: -math.log2(value / total) for item, value in positive.items()}
    return info, max(info.values())  # the smallest positive share has the largest self-information


def _compute(recommended: Mapping[Hashable, Sequence[Hashable]],
             relevant: Mapping[Hashable, Collection[Hashable]], *, k: int,
             item_popularity: Mapping[Hashable, float] | None) -> dict[str, Any]:
    import numpy as np

    _check_k(k)
    _check_mapping(recommended, "recommended")
    _check_mapping(relevant, "relevant")
    info = unknown_info = None
    if item_popularity is not None:
        info, unknown_info = _self_information(item_popularity)

    users: list[Hashable] = []
    n_relevant: list[int] = []
    hit_flags: list[bool] = []  # k per user, row-major
    lengths: list[int] = []
    novelty: list[float] = []
    shown: set[Hashable] = set()
    pad = [False] * k
    for user, truth in relevant.items():
        truth_set = set(_items(truth, "relevant", user))
        if not truth_set:
            continue
        top = _top_k(_items(recommended.get(user), "recommended", user), k)
        users.append(user)
        n_relevant.append(len(truth_set))
        lengths.append(len(top))
        flags = [item in truth_set for item in top]
        hit_flags.extend(flags)
        hit_flags.extend(pad[:k - len(flags)])
        shown.update(top)
        if info is not None:
            novelty.append(math.fsum(info.get(item, unknown_info) for item in top) / len(top) if top else 0.0)

    n = len(users)
    hits = np.asarray(hit_flags, dtype=bool).reshape(n, k).astype(np.float64)
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    ideal = np.cumsum(discount)  # ideal[m - 1]: IDCG with m relevant items in the top k
    achievable = np.minimum(np.asarray(n_relevant, dtype=np.int64), k)

    n_hits = hits.sum(axis=1)
    dcg = hits @ discount
    ndcg = dcg / ideal[achievable - 1] if n else np.zeros(0)
    precision_at = np.cumsum(hits, axis=1) / ranks
    average_precision = (precision_at * hits).sum(axis=1) / achievable if n else np.zeros(0)
    any_hit = n_hits > 0
    first = hits.argmax(axis=1) if n else np.zeros(0, dtype=np.int64)
    reciprocal_rank = np.where(any_hit, 1.0 / (first + 1.0), 0.0)

    table: dict[str, Any] = {
        "user": users,
        f"ndcg@{k}": ndcg,
        f"recall@{k}": n_hits / n_rel if n else np.zeros(0),
        f"map@{k}": average_precision,
        "mrr": reciprocal_rank,
        f"hit_rate@{k}": any_hit.astype(np.float64),
    }
    if info is not None:
        table["novelty"] = np.asarray(novelty, dtype=np.float64)
    table["_shown"] = shown
    return table


def _coverage(recommended: Mapping[Hashable, Sequence[Hashable]],
              relevant: Mapping[Hashable, Collection[Hashable]], shown: set[Hashable],
              catalogue: Collection[Hashable] | None) -> float:
    if catalogue is None:
        items: set[Hashable] = set()
        for user, listed in recommended.items():
            items.update(_items(listed, "recommended", user))
        for user, truth in relevant.items():
            items.update(_items(truth, "relevant", user))
    else:
        if isinstance(catalogue, (str, bytes)) or not isinstance(catalogue, Iterable):
            raise TypeError(f"catalogue must be a collection of items, got {type(catalogue).__name__}")
        items = set(catalogue)
        outside = [item for item in shown if item not in items]
        if outside:
            raise ValueError(f"catalogue does not contain {len(outside)} recommended item(s), e.g. "
                             f"{', '.join(repr(item) for item in outside[:_EXAMPLES])}")
    if not items:
        return 0.0
    return len(shown) / len(items)
