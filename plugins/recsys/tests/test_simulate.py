"""The retail simulator: seeded, well-formed frames, and a change that really moves what customers buy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conveyor_recsys.simulate import (
    PURCHASE_WEIGHT,
    VIEW_WEIGHT,
    RetailWorld,
    Simulation,
    main,
    simulate,
)

SMALL = {"users": 300, "items": 120, "weeks": 6, "change_week": 4, "new_items_per_week": 5,
         "new_users_per_week": 5}
SIMULATED_IN: dict[str, float] = {}


@pytest.fixture(scope="module")
def season() -> Simulation:
    started = time.perf_counter()
    sim = simulate(RetailWorld())  # the defaults: 2,000 customers, 500 items, 12 weeks, season at week 6
    SIMULATED_IN["default"] = time.perf_counter() - started
    return sim


@pytest.fixture(scope="module")
def price_shock() -> Simulation:
    return simulate(RetailWorld(change="price_shock"))


@pytest.fixture(scope="module")
def steady() -> Simulation:
    return simulate(RetailWorld(change_week=None))


def popular(sim: Simulation, first: int, last: int, k: int = 10) -> set[int]:
    """The k items bought most in weeks first..last: the "most popular" recommender."""
    rows = sim.weeks(first, last)
    return set(rows[rows["event"] == "purchase"]["item_id"].value_counts().index[:k])


def hit_rate(sim: Simulation, slate: set[int], first: int, last: int) -> float:
    """Per week, the share of buyers who bought an item of `slate`; averaged over the weeks."""
    rates = []
    for week in range(first, last + 1):
        bought = sim.relevant(week)
        rates.append(sum(bool(items & slate) for items in bought.values()) / len(bought))
    return sum(rates) / len(rates)


# Determinism and schema.

def test_same_seed_same_frames_and_another_seed_other_frames():
    first, again, other = (simulate(RetailWorld(**SMALL, seed=s)) for s in (3, 3, 4))
    for name in ("interactions", "items", "users"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(again, name))
    assert not first.interactions.equals(other.interactions)
    assert not first.items.equals(other.items)


def test_another_stream_keeps_the_customers_and_catalogue_and_draws_other_sessions():
    first, parallel = (simulate(RetailWorld(**SMALL, seed=3, stream=s)) for s in (0, 1))
    for name in ("items", "users"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(parallel, name))
    assert not first.week(2).reset_index(drop=True).equals(parallel.week(2).reset_index(drop=True))
    # the same behaviour, other sessions: the categories bought stay close
    assert (first.category_shares(1, 4) - parallel.category_shares(1, 4)).abs().max() < 0.05


def test_every_change_shares_the_population_and_the_weeks_before_it():
    worlds = [RetailWorld(**SMALL, change="season"), RetailWorld(**SMALL, change="price_shock"),
              RetailWorld(**{**SMALL, "change_week": None})]
    sims = [simulate(w) for w in worlds]
    for sim in sims[1:]:
        pd.testing.assert_frame_equal(sims[0].weeks(1, 3), sim.weeks(1, 3))
        pd.testing.assert_frame_equal(sims[0].items[["item_id", "category", "price"]],
                                      sim.items[["item_id", "category", "price"]])
        assert not sims[0].week(4).equals(sim.week(4))
    assert sims[2].changed_categories == ()


def test_frames_have_the_documented_columns_and_dtypes(season):
    df = season.interactions
    assert list(df.columns) == ["user_id", "item_id", "timestamp", "event", "weight", "week"]
    assert df["user_id"].dtype == "int64" and df["item_id"].dtype == "int64" and df["week"].dtype == "int64"
    assert isinstance(df["timestamp"].dtype, pd.DatetimeTZDtype) and str(df["timestamp"].dt.tz) == "UTC"
    assert pd.api.types.is_string_dtype(df["event"]) and set(df["event"]) == {"view", "purchase"}
    assert df["weight"].dtype == "float64"
    assert set(df.loc[df["event"] == "view", "weight"]) == {VIEW_WEIGHT} == {1.0}
    assert set(df.loc[df["event"] == "purchase", "weight"]) == {PURCHASE_WEIGHT} == {5.0}
    assert set(df["week"]) == set(range(1, 13))
    assert df.index.equals(pd.RangeIndex(len(df)))

    items, users = season.items, season.users
    assert list(items.columns) == ["item_id", "category", "price", "price_after", "introduced_week"]
    assert list(users.columns) == ["user_id", "segment", "price_sensitivity", "taste", "taste_after",
                                   "joined_week"]
    assert items["item_id"].tolist() == list(range(1, 500 + 12 * 10 + 1))
    assert users["user_id"].tolist() == list(range(1, 2000 + 12 * 20 + 1))
    assert set(items["category"]) == set(season.categories) and len(season.categories) == 8
    assert (items["price"] > 0).all() and items["price"].dtype == "float64"
    assert (items["price_after"] == items["price"]).all()  # a season leaves prices alone
    assert set(users["segment"]) == {"bargain", "mainstream", "premium"}
    assert set(users["taste"]) <= set(season.categories) and (users["price_sensitivity"] > 0).all()
    assert df["user_id"].isin(users["user_id"]).all() and df["item_id"].isin(items["item_id"]).all()


def test_events_are_clean_ordered_and_inside_their_week(season):
    df = season.interactions
    assert df["timestamp"].is_monotonic_increasing
    assert not df.duplicated().any()
    assert not df.duplicated(["user_id", "item_id", "timestamp", "event"]).any()
    start = pd.Timestamp("2026-01-05", tz="UTC")
    week_of = (df["timestamp"] - start) // pd.Timedelta(days=7) + 1
    assert (week_of == df["week"]).all()
    # Every purchase follows a view of the same item by the same customer in the same week.
    views = df[df["event"] == "view"].groupby(["user_id", "item_id", "week"])["timestamp"].min()
    buys = df[df["event"] == "purchase"].set_index(["user_id", "item_id", "week"])["timestamp"]
    assert (views.reindex(buys.index) < buys).all()
    # Customers act from the week they join, items sell from the week they arrive.
    joined = df["user_id"].map(season.users.set_index("user_id")["joined_week"])
    introduced = df["item_id"].map(season.items.set_index("item_id")["introduced_week"])
    assert (df["week"] >= joined).all() and (df["week"] >= introduced).all()


def test_helpers_slice_weeks_and_give_the_purchases_per_user(season):
    assert set(season.week(3)["week"]) == {3}
    assert set(season.weeks(2, 4)["week"]) == {2, 3, 4}
    assert len(season.weeks(1, 12)) == len(season.interactions)
    relevant = season.relevant(8)
    buys = season.week(8)[season.week(8)["event"] == "purchase"]
    assert set(relevant) == set(buys["user_id"])
    assert sum(len(items) for items in relevant.values()) == len(buys.drop_duplicates(["user_id", "item_id"]))
    user = next(iter(relevant))
    assert relevant[user] == set(buys.loc[buys["user_id"] == user, "item_id"])
    assert set(season.relevant(7, 8)) >= set(relevant)
    shares = season.category_shares(1, 5)
    assert list(shares.index) == list(season.categories) and shares.sum() == pytest.approx(1.0)


# The change is real.

def test_a_season_moves_purchases_to_two_minor_categories(season, steady):
    assert season.changed_categories == ("sports", "garden")
    before = season.category_shares(1, 5)[list(season.changed_categories)].sum()
    after = season.category_shares(6, 12)[list(season.changed_categories)].sum()
    print(f"season: sports+garden share of purchases {before:.3f} -> {after:.3f}")  # seed 0: 0.068 -> 0.663
    assert before < 0.15 and after > 0.45 and after - before > 0.3
    assert (season.users["taste_after"] != season.users["taste"]).mean() > 0.5


def test_a_price_shock_moves_purchases_away_from_the_dearer_categories_price_sensitive_customers_most(
        price_shock):
    sim = price_shock
    hit = list(sim.changed_categories)
    assert hit == ["grocery", "fashion"]
    items = sim.items
    dearer = items["category"].isin(hit)
    assert (items.loc[dearer, "price_after"] > 2.4 * items.loc[dearer, "price"]).all()
    assert (items.loc[~dearer, "price_after"] == items.loc[~dearer, "price"]).all()
    before, after = sim.category_shares(1, 5)[hit].sum(), sim.category_shares(6, 12)[hit].sum()
    print(f"price shock: grocery+fashion share of purchases {before:.3f} -> {after:.3f}")  # 0.534 -> 0.170
    assert before - after > 0.2

    rows = sim.interactions[sim.interactions["event"] == "purchase"]
    rows = rows.assign(segment=rows["user_id"].map(sim.users.set_index("user_id")["segment"]),
                       hit=rows["item_id"].map(items.set_index("item_id")["category"]).isin(hit))
    drop = {segment: round(float(group.loc[group["week"] < 6, "hit"].mean()
                             - group.loc[group["week"] >= 6, "hit"].mean()), 3)
            for segment, group in rows.groupby("segment")}
    print("price shock: drop in the share of dearer categories by segment", drop)
    assert drop["bargain"] > drop["premium"] + 0.1


@pytest.mark.parametrize("fixture, margin", [("season", 0.05), ("price_shock", 0.04)])
def test_popularity_from_before_the_change_misses_more_after_it(fixture, margin, request, steady):
    sim = request.getfixturevalue(fixture)
    # Top-10 most bought items in weeks 1-5 (before the change) or 6-8 (after it), scored on 9-12.
    old, new = hit_rate(sim, popular(sim, 1, 5), 9, 12), hit_rate(sim, popular(sim, 6, 8), 9, 12)
    steady_old = hit_rate(steady, popular(steady, 1, 5), 9, 12)
    steady_new = hit_rate(steady, popular(steady, 6, 8), 9, 12)
    print(f"{fixture}: hit rate@10 on weeks 9-12, popularity of weeks 1-5 {old:.3f}, of weeks 6-8 {new:.3f};"
          f" no change: {steady_old:.3f}, {steady_new:.3f}")
    # seed 0: season .264 -> .395, price shock .148 -> .240, no change .258 -> .267
    assert new - old > margin
    assert abs(steady_new - steady_old) < 0.04
    assert new - old > abs(steady_new - steady_old) + 0.03


def test_without_a_change_purchase_shares_stay_put(steady):
    before, after = steady.category_shares(1, 5), steady.category_shares(6, 12)
    print("no change: largest category share move", round((after - before).abs().max(), 3))  # 0.038
    assert (after - before).abs().max() < 0.07
    assert (steady.items["price_after"] == steady.items["price"]).all()
    assert (steady.users["taste_after"] == steady.users["taste"]).all()


# The catalogue and the customers grow.

def test_new_items_arrive_every_week_and_get_bought(season):
    items = season.items
    assert (items["introduced_week"] == 0).sum() == 500
    assert items.loc[items["introduced_week"] > 0, "introduced_week"].value_counts().to_dict() == {
        w: 10 for w in range(1, 13)}
    df = season.interactions
    introduced = df["item_id"].map(items.set_index("item_id")["introduced_week"])
    for week in range(1, 13):
        fresh = df[(introduced == week) & (df["week"] == week)]
        assert fresh["item_id"].nunique() >= 8, week  # most of the week's 10 new items are seen at once
    bought = df[(df["event"] == "purchase") & (introduced > 0)]
    assert bought["item_id"].nunique() > 80
    # The recency boost: in its first week a new item is viewed more than an old item on average.
    week = df[(df["week"] == 6) & (df["event"] == "view")]
    new = (introduced.loc[week.index] == 6).sum() / 10
    old = (introduced.loc[week.index] == 0).sum() / 500
    assert new > 1.5 * old
    assert (season.users["joined_week"] > 0).sum() == 240
    assert df.loc[df["user_id"] > 2000, "user_id"].nunique() > 150


# Messy feeds.

def test_messy_duplicates_and_late_rows_in_the_stated_shares():
    world = RetailWorld(**SMALL, seed=1)
    clean, messy = simulate(world), simulate(RetailWorld(**SMALL, seed=1, messy=True))
    n = len(clean.interactions)
    df = messy.interactions
    duplicated = df.duplicated().mean()
    out_of_order = (df["timestamp"].diff() < pd.Timedelta(0)).mean()
    print(f"messy: {duplicated:.4f} duplicated rows, {out_of_order:.4f} out of order")
    assert len(df) == n + round(0.02 * n)
    assert df.duplicated().sum() == round(0.02 * n)
    assert 0.01 < out_of_order < 0.025
    assert clean.interactions["timestamp"].is_monotonic_increasing
    # The spoiling only duplicates and reorders: the clean events are all there, unchanged.
    repaired = (df.drop_duplicates().sort_values(["timestamp", "user_id", "event", "item_id"], kind="stable")
                .reset_index(drop=True))
    expected = clean.interactions.sort_values(["timestamp", "user_id", "event", "item_id"], kind="stable")
    pd.testing.assert_frame_equal(repaired, expected.reset_index(drop=True))
    # Every row stays in its own week's file.
    start = pd.Timestamp(world.start, tz="UTC")
    assert ((df["timestamp"] - start) // pd.Timedelta(days=7) + 1 == df["week"]).all()
    assert df["week"].is_monotonic_increasing


# Files and the entry point.

def test_write_weeks_round_trips_through_csv(tmp_path):
    sim = simulate(RetailWorld(**SMALL))
    paths = sim.write_weeks(tmp_path / "weeks")
    assert [p.name for p in paths] == [f"week-{n:02d}.csv" for n in range(1, 7)]
    back = pd.read_csv(paths[2])
    assert back["timestamp"].iloc[0].endswith("Z")
    back["timestamp"] = pd.to_datetime(back["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    pd.testing.assert_frame_equal(back, sim.week(3).reset_index(drop=True), check_dtype=False)
    assert back["event"].isin(["view", "purchase"]).all()


def test_the_entry_point_writes_history_and_the_weeks_to_replay(tmp_path):
    out = tmp_path / "world"
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "conveyor_recsys.simulate", "--out", str(out),
                           "--weeks", "8", "--seed", "0", "--users", "200", "--items", "80", "--cutoff", "4"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "history.csv: weeks 1-3" in done.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == ["history.csv", "items.csv", "users.csv", *[f"week-{n:02d}.csv" for n in range(4, 9)],
                     "world.json"]
    history = pd.read_csv(out / "history.csv")
    assert set(history["week"]) == {1, 2, 3}
    assert set(pd.read_csv(out / "week-06.csv")["week"]) == {6}
    described = json.loads((out / "world.json").read_text())
    assert described["world"]["seed"] == 0 and described["changed_categories"] == ["sports", "garden"]
    sim = simulate(RetailWorld(users=200, items=80, weeks=8, seed=0))
    assert len(history) == len(sim.weeks(1, 3))


def test_bad_settings_are_refused_with_the_reasons(tmp_path, capsys):
    with pytest.raises(ValueError, match="change must be one of season, price_shock") as caught:
        RetailWorld(change="winter", change_week=13)
    assert "change_week must be None or a week from 2 to weeks (12)" in str(caught.value)
    with pytest.raises(ValueError, match="categories must be a whole number >= 3"):
        RetailWorld(categories=2)
    with pytest.raises(ValueError, match="cutoff must be a week from 2 to 6"):
        simulate(RetailWorld(**SMALL)).write(tmp_path, 9)
    with pytest.raises(SystemExit) as stopped:
        main(["--out", str(tmp_path), "--weeks", "0"])
    assert stopped.value.code == 2 and "weeks must be a whole number >= 1" in capsys.readouterr().err


def test_the_default_world_simulates_in_a_few_seconds(season):
    # Timed by the fixture (no assertion on the time: machines differ); reported for the record.
    seconds = SIMULATED_IN.get("default", float("nan"))
    print(f"default world: {len(season.interactions)} events in {seconds:.2f} s")
    assert len(season.interactions) > 100_000
