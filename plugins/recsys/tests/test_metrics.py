"""conveyor_recsys.metrics: hand-computed cases for every metric, edge cases, and the figures
cross-checked against independent implementations (ranx for the accuracy metrics, RecTools for
coverage and novelty) and against a literal re-implementation written here."""
import math
import random
import time
from importlib.metadata import version

import pytest
from conveyor_recsys.metrics import metric_names, per_user, ranking_directions, ranking_metrics

L2 = math.log2


def _approx(value):
    return pytest.approx(value, rel=0, abs=1e-12)


# --- hand-computed cases --------------------------------------------------------------------------

# user 1: list a b c d, relevant {b, d, z}: hits at 2 and 4
# user 2: list x y, relevant {x}: hit at 1
# user 3: list p q r, relevant {s}: no hit
# user 4: relevant {a} but no recommendation: scores 0
# user 5: no relevant item: not evaluated; user 6 only recommended: not evaluated
RECOMMENDED = {1: ["a", "b", "c", "d"], 2: ["x", "y"], 3: ["p", "q", "r"], 5: ["a"], 6: ["e", "f"]}
RELEVANT = {1: {"b", "d", "z"}, 2: {"x"}, 3: {"s"}, 4: {"a"}, 5: set()}


def test_hand_computed_at_3():
    got = ranking_metrics(RECOMMENDED, RELEVANT, k=3)
    # user 1 at k=3: top a b c, one hit (b at 2); |R| = 3
    ndcg1 = (1 / L2(3)) / (1 + 1 / L2(3) + 1 / L2(4))
    recall1, ap1, rr1 = 1 / 3, (1 / 2) / 3, 1 / 2
    # user 2: hit at 1 of 1 relevant: everything 1
    assert got["ndcg@3"] == _approx((ndcg1 + 1 + 0 + 0) / 4)
    assert got["recall@3"] == _approx((recall1 + 1) / 4)
    assert got["map@3"] == _approx((ap1 + 1) / 4)
    assert got["mrr"] == _approx((rr1 + 1) / 4)
    assert got["hit_rate@3"] == _approx(2 / 4)
    # shown in the evaluated users' top 3: a b c x y p q r = 8; catalogue = every item named:
    # a b c d x y p q r e f z s = 13
    assert got["coverage"] == _approx(8 / 13)
    assert got["users"] == 4
    assert "novelty" not in got
    assert list(got) == ["ndcg@3", "recall@3", "map@3", "mrr", "hit_rate@3", "coverage", "users"]


def test_hand_computed_at_4_and_1():
    got = ranking_metrics(RECOMMENDED, RELEVANT, k=4)
    # user 1 at k=4: hits at 2 and 4, |R| = 3, ideal over min(3, 4) = 3 positions
    ndcg1 = (1 / L2(3) + 1 / L2(5)) / (1 + 1 / L2(3) + 1 / L2(4))
    ap1 = (1 / 2 + 2 / 4) / 3
    assert got["ndcg@4"] == _approx((ndcg1 + 1) / 4)
    assert got["recall@4"] == _approx((2 / 3 + 1) / 4)
    assert got["map@4"] == _approx((ap1 + 1) / 4)
    assert got["mrr"] == _approx((1 / 2 + 1) / 4)
    got = ranking_metrics(RECOMMENDED, RELEVANT, k=1)
    # only user 2 hits at k=1; user 1's ideal DCG is over min(3, 1) = 1 position
    assert got == {"ndcg@1": 0.25, "recall@1": 0.25, "map@1": 0.25, "mrr": 0.25, "hit_rate@1": 0.25,
                   "coverage": _approx(3 / 13), "users": 4}  # a x p of 13


def test_map_denominator_is_min_of_relevant_and_k():
    # 5 relevant, k = 2, both top items relevant: AP@2 = (1 + 1) / min(5, 2) = 1 (ranx's would be 2/5)
    got = ranking_metrics({"u": ["a", "b", "c"]}, {"u": {"a", "b", "c", "d", "e"}}, k=2)
    assert got["map@2"] == 1.0
    assert got["ndcg@2"] == _approx(1.0)
    assert got["recall@2"] == _approx(2 / 5)
    # a miss first: AP@3 = (1/2 + 2/3) / min(2, 3)
    got = ranking_metrics({"u": ["z", "a", "b"]}, {"u": {"a", "b"}}, k=3)
    assert got["map@3"] == _approx((1 / 2 + 2 / 3) / 2)
    assert got["mrr"] == _approx(1 / 2)


def test_mrr_is_cut_at_k():
    # first relevant item at rank 3: 1/3 at k=3, 0 at k=2
    assert ranking_metrics({"u": ["a", "b", "c"]}, {"u": {"c"}}, k=3)["mrr"] == _approx(1 / 3)
    assert ranking_metrics({"u": ["a", "b", "c"]}, {"u": {"c"}}, k=2)["mrr"] == 0.0


def test_novelty_hand_computed():
    popularity = {"a": 6, "b": 1, "c": 1, "d": 0}  # total 8; d has no positive popularity
    recommended = {1: ["a", "b"], 2: ["c", "d", "e"], 3: []}
    relevant = {1: {"a"}, 2: {"c"}, 3: {"a"}}
    got = ranking_metrics(recommended, relevant, k=3, item_popularity=popularity)
    info_a, info_b = -L2(6 / 8), -L2(1 / 8)
    rarest = info_b  # d (zero) and e (absent) get the smallest positive share, 1/8
    user1 = (info_a + info_b) / 2
    user2 = (info_b + rarest + rarest) / 3
    assert got["novelty"] == _approx((user1 + user2 + 0.0) / 3)  # user 3: empty list, 0
    rows = per_user(recommended, relevant, k=3, item_popularity=popularity)
    assert rows["novelty"].tolist() == [_approx(user1), _approx(user2), 0.0]


def test_coverage_with_catalogue():
    recommended = {1: ["a", "b", "c"], 2: ["a", "d"]}
    relevant = {1: {"a"}, 2: {"x"}}
    assert ranking_metrics(recommended, relevant, k=2, catalogue=list("abcdefghij"))["coverage"] == 0.3
    # default catalogue: a b c d x
    assert ranking_metrics(recommended, relevant, k=2)["coverage"] == _approx(3 / 5)
    with pytest.raises(ValueError, match=r"catalogue does not contain 1 recommended item\(s\), e.g. 'd'"):
        ranking_metrics(recommended, relevant, k=2, catalogue=["a", "b", "c"])


def test_duplicates_count_once_at_first_position():
    # [a, a, b] is read as [a, b]: at k=2 b is at position 2
    dup = ranking_metrics({"u": ["a", "a", "b"]}, {"u": {"b"}}, k=2)
    clean = ranking_metrics({"u": ["a", "b"]}, {"u": {"b"}}, k=2)
    assert dup == clean
    assert dup["mrr"] == 0.5
    # a repeated relevant item is one hit, not two
    got = ranking_metrics({"u": ["b", "b", "b"]}, {"u": {"b", "c"}}, k=3)
    assert got["recall@3"] == 0.5
    assert got["map@3"] == 0.5


def test_lists_shorter_than_k_and_other_containers():
    import numpy as np

    got = ranking_metrics({"u": ("a",), "v": np.array([3, 1, 2])}, {"u": ["a"], "v": frozenset({2})}, k=10)
    assert got["hit_rate@10"] == 1.0
    assert got["mrr"] == _approx((1 + 1 / 3) / 2)
    assert got["users"] == 2


def test_empty_inputs_return_zeros():
    assert ranking_metrics({}, {}, k=5) == {"ndcg@5": 0.0, "recall@5": 0.0, "map@5": 0.0, "mrr": 0.0,
                                            "hit_rate@5": 0.0, "coverage": 0.0, "users": 0}
    # recommendations but no user with a relevant item: nobody evaluated
    got = ranking_metrics({"u": ["a"]}, {"u": set()}, k=5, item_popularity={"a": 1})
    assert got["users"] == 0 and got["novelty"] == 0.0 and got["coverage"] == 0.0
    rows = per_user({}, {}, k=5)
    assert rows["user"] == [] and rows["ndcg@5"].shape == (0,)


@pytest.mark.parametrize("k, message", [(0, "k must be at least 1, got 0"), (-3, "at least 1"),
                                        (2.0, "positive integer, got 2.0"), (True, "positive integer"),
                                        (None, "positive integer")])
def test_bad_k(k, message):
    with pytest.raises(ValueError, match=message):
        ranking_metrics({"u": ["a"]}, {"u": {"a"}}, k=k)
    with pytest.raises(ValueError, match=message):
        per_user({"u": ["a"]}, {"u": {"a"}}, k=k)


def test_bad_containers():
    with pytest.raises(TypeError, match=r"recommended\['u'\] must be a collection of items, got str"):
        ranking_metrics({"u": "abc"}, {"u": {"a"}}, k=2)
    with pytest.raises(TypeError, match=r"relevant\['u'\] must be a collection of items, got str"):
        ranking_metrics({"u": ["a"]}, {"u": "a"}, k=2)
    with pytest.raises(TypeError, match="recommended must be a mapping of user to items, got list"):
        ranking_metrics([["a"]], {"u": {"a"}}, k=2)
    with pytest.raises(TypeError, match="catalogue must be a collection of items"):
        ranking_metrics({"u": ["a"]}, {"u": {"a"}}, k=2, catalogue="abc")


@pytest.mark.parametrize("popularity, message", [
    ({"a": -1, "b": 2}, r"finite and non-negative: 1 item\(s\) are not, e.g. 'a': -1"),
    ({"a": float("nan")}, "finite and non-negative"), ({"a": "many"}, "finite and non-negative"),
    ({"a": 0}, "no item with a positive popularity"), ({}, "no item with a positive popularity")])
def test_bad_popularity(popularity, message):
    with pytest.raises(ValueError, match=message):
        ranking_metrics({"u": ["a"]}, {"u": {"a"}}, k=2, item_popularity=popularity)


def test_per_user_aligns_with_the_means_and_directions():
    rows = per_user(RECOMMENDED, RELEVANT, k=3, item_popularity={"a": 2, "x": 1})
    assert rows["user"] == [1, 2, 3, 4]  # the order of `relevant`, users with no relevant item left out
    assert rows["hit_rate@3"].tolist() == [1.0, 1.0, 0.0, 0.0]
    means = ranking_metrics(RECOMMENDED, RELEVANT, k=3, item_popularity={"a": 2, "x": 1})
    for name in ("ndcg@3", "recall@3", "map@3", "mrr", "hit_rate@3", "novelty"):
        assert rows[name].mean() == _approx(means[name])
    assert "coverage" not in rows
    assert ranking_directions(3) == {name: "higher" for name in metric_names(3)}
    assert set(ranking_directions(3)) == set(means) - {"users"}


# --- cross-checks ---------------------------------------------------------------------------------

def _random_data(seed, n_users=500, n_items=200, list_length=12):
    rng = random.Random(seed)
    items = [f"i{j}" for j in range(n_items)]
    weights = [1 / (j + 1) for j in range(n_items)]  # a popularity skew, so hits are not too rare
    recommended, relevant = {}, {}
    for u in range(n_users):
        user = f"u{u}"
        recommended[user] = rng.sample(items[:20 + u % 100], list_length)  # some items never shown
        size = rng.choice([0, 1, 1, 2, 3, 5, 8, 15])  # some users with no relevant item; some > k
        relevant[user] = set(rng.choices(items, weights=weights, k=size))
    popularity = {item: rng.randint(1, 50) for item in items}
    return recommended, relevant, popularity


def _literal(recommended, relevant, k):
    """The definitions of the module docstring, written out one user at a time."""
    sums = {"ndcg": 0.0, "recall": 0.0, "map": 0.0, "mrr": 0.0, "hit": 0.0}
    users = 0
    for user, truth in relevant.items():
        truth = set(truth)
        if not truth:
            continue
        users += 1
        top = []
        for item in recommended.get(user, []):
            if item not in top:
                top.append(item)
        top = top[:k]
        dcg = sum(1 / math.log2(i + 2) for i, item in enumerate(top) if item in truth)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(len(truth), k)))
        hits = [i for i, item in enumerate(top) if item in truth]
        sums["ndcg"] += dcg / idcg
        sums["recall"] += len(hits) / len(truth)
        sums["map"] += sum((n + 1) / (i + 1) for n, i in enumerate(hits)) / min(len(truth), k)
        sums["mrr"] += 1 / (hits[0] + 1) if hits else 0.0
        sums["hit"] += 1.0 if hits else 0.0
    return {name: value / users for name, value in sums.items()}, users


@pytest.mark.parametrize("k", [1, 5, 10])
def test_against_a_literal_implementation(k):
    recommended, relevant, _ = _random_data(seed=k)
    recommended["u0"] = recommended["u0"][:3] + recommended["u0"][:3]  # duplicates
    del recommended["u1"]  # a user with no recommendation
    relevant["u1"] = {"i0"}
    want, users = _literal(recommended, relevant, k)
    got = ranking_metrics(recommended, relevant, k=k)
    assert got["users"] == users
    for ours, theirs in [(f"ndcg@{k}", "ndcg"), (f"recall@{k}", "recall"), (f"map@{k}", "map"),
                         ("mrr", "mrr"), (f"hit_rate@{k}", "hit")]:
        assert got[ours] == pytest.approx(want[theirs], rel=0, abs=1e-12), ours


def _ranx_run(ranx, recommended, users):
    """Scores falling with the position; reversed, so a repeated item keeps its first (higher) score."""
    return ranx.Run({user: {item: float(len(recommended[user]) - i)
                            for i, item in reversed(list(enumerate(recommended[user])))}
                     for user in users if user in recommended})


@pytest.mark.filterwarnings("ignore")  # numba's type-safety warnings from ranx's kernels
@pytest.mark.parametrize("k", [5, 10])
def test_against_ranx(k):
    ranx = pytest.importorskip("ranx")
    import numpy as np

    recommended, relevant, _ = _random_data(seed=100 + k)
    recommended["u3"] = recommended["u3"][:4] + recommended["u3"][:4]  # duplicates: ranx keeps one of each
    relevant["u5"] = {"i0", "i1"}
    del recommended["u5"]  # an evaluated user with no recommendation: ranx's make_comparable scores it 0
    qrels = ranx.Qrels({user: {item: 1 for item in truth} for user, truth in relevant.items() if truth})
    run = _ranx_run(ranx, recommended, recommended)
    names = {f"ndcg@{k}": f"ndcg@{k}", f"recall@{k}": f"recall@{k}", "mrr": f"mrr@{k}",
             f"hit_rate@{k}": f"hit_rate@{k}", f"map@{k}": f"map@{k}"}
    ranx.evaluate(qrels, run, list(names.values()), make_comparable=True)  # per-user scores into run.scores
    ours = per_user(recommended, relevant, k=k)
    theirs = {name: np.array([run.scores[name][user] for user in ours["user"]]) for name in names.values()}
    sizes = np.array([len(relevant[user]) for user in ours["user"]], dtype=float)
    means = ranking_metrics(recommended, relevant, k=k)
    print(f"\nranx {version('ranx')} cross-check at k={k}, "
          f"{means['users']} users:")
    for name, ranx_name in names.items():
        mine = ours[name]
        if name.startswith("map@"):
            # ranx divides AP by |R|; ours by min(|R|, k): rescale to ranx's denominator
            mine = mine * np.minimum(sizes, k) / sizes
        np.testing.assert_allclose(mine, theirs[ranx_name], rtol=0, atol=1e-9, err_msg=name)
        assert mine.mean() == pytest.approx(theirs[ranx_name].mean(), rel=0, abs=1e-9)
        note = f"  (ranx divides by |R|; ours rescaled {mine.mean():.12f})" if name.startswith("map@") else ""
        print(f"  {name:12} ours {means[name]:.12f}  ranx {ranx_name:12} "
              f"{theirs[ranx_name].mean():.12f}{note}")
    # where every user has |R| <= k, the two MAP conventions are the same figure
    small = {user: truth for user, truth in relevant.items() if 0 < len(truth) <= k}
    small_qrels = ranx.Qrels({user: {item: 1 for item in truth} for user, truth in small.items()})
    small_run = _ranx_run(ranx, recommended, small)
    assert ranking_metrics(recommended, small, k=k)[f"map@{k}"] == pytest.approx(
        ranx.evaluate(small_qrels, small_run, f"map@{k}", make_comparable=True), rel=0, abs=1e-9)


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("k", [5, 10])
def test_coverage_and_novelty_against_rectools(k):
    pytest.importorskip("rectools")
    import numpy as np
    import pandas as pd
    from rectools import Columns
    from rectools.metrics import CatalogCoverage, MeanInvUserFreq

    recommended, relevant, _ = _random_data(seed=200 + k)
    relevant = {user: truth or {"i0"} for user, truth in relevant.items()}  # every user evaluated
    rng = random.Random(k)
    # training interactions; every recommended item has at least one user (RecTools treats an unseen
    # item as consumed by one user, we give it the smallest share: the same only when it is 1)
    train = [(f"t{rng.randrange(300)}", f"i{j}") for j in range(200) for _ in range(rng.randint(1, 30))]
    train = pd.DataFrame(train, columns=[Columns.User, Columns.Item]).drop_duplicates()
    users_per_item = train.groupby(Columns.Item)[Columns.User].nunique()
    n_users = train[Columns.User].nunique()
    reco = pd.DataFrame([(user, item, rank + 1) for user, items in recommended.items()
                         for rank, item in enumerate(items)],
                        columns=[Columns.User, Columns.Item, Columns.Rank])
    catalogue = [f"i{j}" for j in range(200)]

    ours = ranking_metrics(recommended, relevant, k=k, item_popularity=users_per_item.to_dict(),
                           catalogue=catalogue)
    coverage = CatalogCoverage(k=k, normalize=True).calc(reco, catalogue)
    miuf = MeanInvUserFreq(k=k).calc(reco, train)
    shift = math.log2(users_per_item.sum() / n_users)  # -log2(p / sum p) = -log2(p / n_users) + shift
    print(f"\nRecTools {version('rectools')} cross-check at k={k}: coverage ours {ours['coverage']:.12f} "
          f"RecTools {coverage:.12f}; novelty ours {ours['novelty']:.12f} = "
          f"RecTools MIUF {miuf:.12f} + {shift:.12f}")
    assert ours["coverage"] == pytest.approx(coverage, rel=0, abs=1e-12)
    assert ours["novelty"] == pytest.approx(miuf + shift, rel=0, abs=1e-9)
    per = MeanInvUserFreq(k=k).calc_per_user(reco, train)
    mine = per_user(recommended, relevant, k=k, item_popularity=users_per_item.to_dict())
    np.testing.assert_allclose(mine["novelty"], per.loc[mine["user"]].to_numpy() + shift, rtol=0, atol=1e-9)


def test_time_for_100k_users():
    rng = random.Random(0)
    n_users, k = 100_000, 10
    recommended = {u: rng.sample(range(10_000), 20) for u in range(n_users)}
    relevant = {u: set(rng.sample(range(10_000), rng.randint(1, 5))) for u in range(n_users)}
    popularity = {i: rng.randint(1, 1000) for i in range(10_000)}
    start = time.perf_counter()
    got = ranking_metrics(recommended, relevant, k=k, item_popularity=popularity)
    elapsed = time.perf_counter() - start
    print(f"\nranking_metrics: {n_users} users, k={k}, lists of 20, 10,000 items: {elapsed:.2f} s")
    assert got["users"] == n_users
