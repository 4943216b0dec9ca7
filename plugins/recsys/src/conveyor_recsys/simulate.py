"""A seeded retail simulator: customers, a growing catalogue, and a change partway that moves what
customers buy. It feeds the recommender story (train, serve, replay weeks, join the purchases that
follow, retrain) with data whose behaviour really shifts.

    from conveyor_recsys.simulate import RetailWorld, simulate
    sim = simulate(RetailWorld(seed=0))              # 2,000 customers, 500 items, 12 weeks
    sim.interactions                                 # user_id, item_id, timestamp, event, weight, week
    sim.weeks(1, 5), sim.week(8), sim.relevant(8)    # slices and {user: purchased items}

    python -m conveyor_recsys.simulate --out DIR --weeks 12 --seed 0
        # DIR/history.csv (weeks before --cutoff, default 4), DIR/week-NN.csv (the weeks to replay),
        # DIR/items.csv, DIR/users.csv, DIR/world.json

The model (all of it drawn from `seed`; numpy's generator, so the same seed gives the same frames):
- Customers belong to a segment (bargain 35%, mainstream 45%, premium 20%) that sets their price
  sensitivity (about 1.8, 1.0, 0.3, times a small personal factor). Their taste is a Dirichlet
  draw over categories around a global profile in which category k weighs 0.7^k, so the first
  categories are major and the last ones minor. `new_users_per_week` customers join every week.
- Items have a category (uniform), a price (a per-category level times a personal factor) and a
  latent quality (log-normal, never in the frames: `Simulation.quality`). The catalogue starts
  with `items` items (introduced_week 0); `new_items_per_week` arrive at the start of every week.
- Every week each active customer has Poisson(`sessions_per_user_week`) sessions, at a uniform
  time in the week; a session views 1 + Poisson(`views_per_session` - 1) items (an item at most
  once per session), each drawn with probability proportional to
      taste[category] x quality x (price / median price) ^ -sensitivity x recency,
  where recency is 1 + 3 x 0.5^(weeks since arrival) for items that arrived during the timeline.
  Views are 45 s apart (plus jitter). Each viewed item is bought with probability
      sigmoid(-2 + 0.5 log(categories x taste[category]) + 0.5 log quality - sensitivity log(price /
      median price)),
  a few seconds after the view (a separate `purchase` row; the view stays).
- From `change_week` on (weeks are numbered from 1; None: no change), the change holds:
  "season" moves a share `change_strength` (default 0.5) of every customer's taste to the two
  minor categories (the last two, "sports" and "garden" with 8 categories), split per customer;
  "price_shock" multiplies the prices of the two major categories (the first two) by
  1 + 3 x `change_strength` (2.5x by default), so customers move to other categories, the
  price-sensitive ones most. The customers, the
  catalogue and every week before `change_week` are the same for every `change`: only the weeks
  from `change_week` on differ.

Frames: `interactions` has one row per event, sorted by timestamp (UTC, whole seconds, within the
week `week`, weeks 7 days long from `start`), `event` 'view' (weight 1.0) or 'purchase' (weight
5.0); no duplicate rows. `items`: item_id, category, price (the list price before the change),
price_after (from change_week on), introduced_week. `users`: user_id, segment, price_sensitivity,
taste (top category before the change), taste_after (from change_week on), joined_week. Ids are
integers from 1, in order of arrival.

`messy=True` spoils the event log the way real feeds are spoiled, for bad-input tests, using its
own random stream (the clean events are the same): `duplicate_share` (2%) of the rows are
delivered twice (an exact copy right after the original) and `late_share` (2%) arrive 1 to 24
hours late (the row keeps its true timestamp but is placed among the rows logged at its arrival,
within its week), so about that share of rows have a timestamp earlier than the row before them.

numpy and pandas are imported inside functions.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

CHANGES = ("season", "price_shock")
CATEGORY_NAMES = ("grocery", "fashion", "electronics", "home", "beauty", "toys", "sports", "garden",
                  "books", "music", "pets", "auto")
SEGMENTS = ("bargain", "mainstream", "premium")
SEGMENT_SHARES = (0.35, 0.45, 0.20)
SEGMENT_SENSITIVITY = (1.8, 1.0, 0.3)
VIEW_WEIGHT = 1.0
PURCHASE_WEIGHT = 5.0
COLUMNS = ("user_id", "item_id", "timestamp", "event", "weight", "week")
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

_WEEK = 7 * 24 * 3600
_VIEW_GAP = 45  # seconds between two views of a session (plus a jitter below it)
_RECENCY_BOOST = 3.0  # a new item's draw is multiplied by 1 + this x 0.5^(weeks since arrival)
_PURCHASE_BIAS = -2.5


@dataclass(frozen=True)
class RetailWorld:
    """The settings of a simulated retail world; see the module's documentation for the model."""

    users: int = 2000  # customers at the start
    items: int = 500  # items in the catalogue at the start
    categories: int = 8
    weeks: int = 12
    change_week: int | None = 6  # first week of the new regime (weeks count from 1); None: no change
    change: str = "season"  # "season" | "price_shock"
    change_strength: float = 0.5  # season: share of taste moved; price shock: prices x (1 + 3 x this)
    new_items_per_week: int = 10
    new_users_per_week: int = 20
    sessions_per_user_week: float = 1.5  # Poisson mean
    views_per_session: float = 4.0  # mean; at least one view
    seed: int = 0
    # The weekly sessions' random stream: another stream gives the same customers, catalogue
    # and change with other sessions (a parallel week, e.g. to train a reference model on a
    # week's behaviour without its own events).
    stream: int = 0
    start: str = "2026-01-05"  # a Monday; week 1 starts at its midnight UTC
    messy: bool = False
    duplicate_share: float = 0.02  # with messy: rows delivered twice
    late_share: float = 0.02  # with messy: rows delivered 1 to 24 hours late (out of order)

    def __post_init__(self) -> None:
        problems = []
        for name in ("users", "items", "weeks"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                problems.append(f"{name} must be a whole number >= 1, got {getattr(self, name)!r}")
        for name in ("new_items_per_week", "new_users_per_week", "seed", "stream"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                problems.append(f"{name} must be a whole number >= 0, got {getattr(self, name)!r}")
        if not isinstance(self.categories, int) or self.categories < 3:
            problems.append(f"categories must be a whole number >= 3, got {self.categories!r}")
        if self.change not in CHANGES:
            problems.append(f"change must be one of {', '.join(CHANGES)}, got {self.change!r}")
        if self.change_week is not None and (not isinstance(self.change_week, int)
                                             or not 2 <= self.change_week <= max(self.weeks, 2)):
            problems.append(f"change_week must be None or a week from 2 to weeks ({self.weeks}), "
                            f"got {self.change_week!r}")
        if not 0.0 <= self.change_strength <= 1.0:
            problems.append(f"change_strength must be within [0, 1], got {self.change_strength!r}")
        if not self.sessions_per_user_week > 0:
            problems.append(f"sessions_per_user_week must be > 0, got {self.sessions_per_user_week!r}")
        if not self.views_per_session >= 1:
            problems.append(f"views_per_session must be >= 1, got {self.views_per_session!r}")
        for name in ("duplicate_share", "late_share"):
            if not 0.0 <= getattr(self, name) <= 0.5:
                problems.append(f"{name} must be within [0, 0.5], got {getattr(self, name)!r}")
        if problems:
            raise ValueError("RetailWorld: " + "; ".join(problems))


def category_names(count: int) -> tuple[str, ...]:
    """The category names of a world with `count` categories, major ones first."""
    return tuple(CATEGORY_NAMES[k] if k < len(CATEGORY_NAMES) else f"category-{k + 1:02d}"
                 for k in range(count))


@dataclass
class Simulation:
    """The result of `simulate`: the frames (see the module's documentation) and helpers."""

    world: RetailWorld
    interactions: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    categories: tuple[str, ...]
    changed_categories: tuple[str, ...]  # the categories the change favours (season) or hits (price)
    quality: np.ndarray = field(repr=False)  # latent item quality, by item_id - 1

    def week(self, n: int) -> pd.DataFrame:
        """The interactions of week `n` (weeks count from 1)."""
        return self.weeks(n, n)

    def weeks(self, first: int, last: int) -> pd.DataFrame:
        """The interactions of weeks `first` to `last`, both included."""
        week = self.interactions["week"]
        return self.interactions[(week >= first) & (week <= last)]

    def relevant(self, first: int, last: int | None = None) -> dict[int, set[int]]:
        """{user_id: the set of items the user bought} in week `first` (to `last`, included)."""
        rows = self.weeks(first, first if last is None else last)
        rows = rows[rows["event"] == "purchase"]
        return {int(user): {int(i) for i in items} for user, items in
                rows.groupby("user_id", sort=True)["item_id"]}

    def category_shares(self, first: int, last: int, event: str = "purchase") -> pd.Series:
        """The share of each category among the `event` rows of weeks `first` to `last` (sums to 1)."""
        rows = self.weeks(first, last)
        rows = rows[rows["event"] == event]
        category = rows["item_id"].map(self.items.set_index("item_id")["category"])
        counts = category.value_counts().reindex(list(self.categories), fill_value=0)
        return counts / max(int(counts.sum()), 1)

    def write_weeks(self, folder: str | Path, weeks: range | list[int] | None = None) -> list[Path]:
        """Write week-01.csv, week-02.csv, ... (all weeks, or `weeks`) into `folder`, for replaying
        traffic; returns the paths. Timestamps are ISO 8601 in UTC ("2026-01-05T08:15:00Z")."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for n in (range(1, self.world.weeks + 1) if weeks is None else weeks):
            path = folder / f"week-{n:02d}.csv"
            _write_csv(self.week(n), path)
            paths.append(path)
        return paths

    def write(self, folder: str | Path, cutoff: int) -> dict[str, Any]:
        """Write what the demo replays: history.csv (weeks before `cutoff`), week-NN.csv for the weeks
        from `cutoff` on, items.csv, users.csv and world.json (settings and changed categories)."""
        if not 2 <= cutoff <= self.world.weeks:
            raise ValueError(f"cutoff must be a week from 2 to {self.world.weeks}, got {cutoff!r}")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        history = folder / "history.csv"
        _write_csv(self.weeks(1, cutoff - 1), history)
        weeks = self.write_weeks(folder, range(cutoff, self.world.weeks + 1))
        self.items.to_csv(folder / "items.csv", index=False)
        self.users.to_csv(folder / "users.csv", index=False)
        description = {"world": asdict(self.world), "cutoff": cutoff, "categories": list(self.categories),
                       "changed_categories": list(self.changed_categories),
                       "weights": {"view": VIEW_WEIGHT, "purchase": PURCHASE_WEIGHT}}
        (folder / "world.json").write_text(json.dumps(description, indent=2) + "\n")
        return {"history": history, "weeks": weeks, "items": folder / "items.csv",
                "users": folder / "users.csv", "world": folder / "world.json"}


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, date_format=TIMESTAMP_FORMAT)


def simulate(world: RetailWorld | None = None) -> Simulation:
    """Simulate `world` (the defaults if None): the same settings give the same frames."""
    import numpy as np
    import pandas as pd

    world = world or RetailWorld()
    names = category_names(world.categories)
    C = world.categories
    rng = np.random.default_rng([world.seed, 0])  # the population: the same for every change

    # Customers.
    n_users = world.users + world.new_users_per_week * world.weeks
    joined = np.concatenate([np.zeros(world.users, dtype=np.int64),
                             np.repeat(np.arange(1, world.weeks + 1), world.new_users_per_week)])
    segment = rng.choice(len(SEGMENTS), size=n_users, p=SEGMENT_SHARES)
    sensitivity = np.asarray(SEGMENT_SENSITIVITY)[segment] * rng.lognormal(0.0, 0.2, n_users)
    profile = 0.7 ** np.arange(C)
    profile /= profile.sum()
    taste = rng.dirichlet(C * profile, size=n_users)
    season_split = rng.dirichlet([2.0, 2.0], size=n_users)

    # Items.
    n_items = world.items + world.new_items_per_week * world.weeks
    introduced = np.concatenate([np.zeros(world.items, dtype=np.int64),
                                 np.repeat(np.arange(1, world.weeks + 1), world.new_items_per_week)])
    category = rng.integers(0, C, size=n_items)
    level = rng.lognormal(math.log(30.0), 0.15, size=C)
    price = np.maximum(np.round(level[category] * rng.lognormal(0.0, 0.35, n_items), 2), 0.5)
    quality = rng.lognormal(0.0, 0.5, n_items)
    reference = float(np.median(price[:world.items]))

    # The change.
    taste_after = taste.copy()
    multiplier = np.ones(C)
    if world.change_week is None:
        changed: tuple[int, ...] = ()
    elif world.change == "season":
        changed = (C - 2, C - 1)
        taste_after = (1.0 - world.change_strength) * taste
        taste_after[:, list(changed)] += world.change_strength * season_split
    else:
        changed = (0, 1)
        multiplier[list(changed)] = 1.0 + 3.0 * world.change_strength
    price_after = np.round(price * multiplier[category], 2)

    start = int(pd.Timestamp(world.start, tz="UTC").timestamp())
    frames = [_simulate_week(world, w, start, joined, sensitivity,
                             taste_after if _changed(world, w) else taste, introduced, category,
                             price_after if _changed(world, w) else price, quality, reference)
              for w in range(1, world.weeks + 1)]
    events = {key: np.concatenate([f[key] for f in frames]) for key in frames[0]}
    order = np.lexsort((events["item_id"], events["purchase"], events["user_id"], events["timestamp"]))
    events = {key: value[order] for key, value in events.items()}
    if world.messy:
        events = _spoil(world, events, start)

    interactions = pd.DataFrame({
        "user_id": events["user_id"].astype(np.int64) + 1,
        "item_id": events["item_id"].astype(np.int64) + 1,
        "timestamp": pd.to_datetime(events["timestamp"], unit="s", utc=True).astype("datetime64[ns, UTC]"),
        "event": pd.Series(np.where(events["purchase"], "purchase", "view"), dtype="str"),
        "weight": np.where(events["purchase"], PURCHASE_WEIGHT, VIEW_WEIGHT),
        "week": events["week"].astype(np.int64),
    })
    items = pd.DataFrame({
        "item_id": np.arange(1, n_items + 1, dtype=np.int64),
        "category": pd.Series(np.asarray(names)[category], dtype="str"),
        "price": price, "price_after": price_after,
        "introduced_week": introduced,
    })
    users = pd.DataFrame({
        "user_id": np.arange(1, n_users + 1, dtype=np.int64),
        "segment": pd.Series(np.asarray(SEGMENTS)[segment], dtype="str"),
        "price_sensitivity": np.round(sensitivity, 4),
        "taste": pd.Series(np.asarray(names)[taste.argmax(axis=1)], dtype="str"),
        "taste_after": pd.Series(np.asarray(names)[taste_after.argmax(axis=1)], dtype="str"),
        "joined_week": joined,
    })
    return Simulation(world, interactions, items, users, names, tuple(names[k] for k in changed), quality)


def _changed(world: RetailWorld, week: int) -> bool:
    return world.change_week is not None and week >= world.change_week


def _simulate_week(world: RetailWorld, w: int, start: int, joined: np.ndarray, sensitivity: np.ndarray,
                   taste: np.ndarray, introduced: np.ndarray, category: np.ndarray, price: np.ndarray,
                   quality: np.ndarray, reference: float) -> dict[str, np.ndarray]:
    """The events of week `w` (0-based ids, timestamps in epoch seconds), from its own random stream."""
    import numpy as np

    rng = np.random.default_rng([world.seed, 1, w] + ([world.stream] if world.stream else []))
    users = np.flatnonzero(joined <= w)
    items = np.flatnonzero(introduced <= w)
    age = w - introduced[items]
    recency = np.where(introduced[items] >= 1, 1.0 + _RECENCY_BOOST * 0.5 ** age, 1.0)
    log_price = np.log(price[items] / reference)
    log_taste = np.log(np.maximum(taste[users][:, category[items]], 1e-12))
    score = (log_taste + np.log(quality[items] * recency)[None, :]
             - sensitivity[users][:, None] * log_price[None, :])
    weights = np.exp(score - score.max(axis=1, keepdims=True))
    cdf = np.cumsum(weights, axis=1)
    cdf /= cdf[:, -1:]

    sessions = rng.poisson(world.sessions_per_user_week, size=len(users))
    session_user = np.repeat(np.arange(len(users)), sessions)  # row of `users`
    n_sessions = len(session_user)
    views = np.minimum(1 + rng.poisson(world.views_per_session - 1.0, size=n_sessions), 40)
    session_start = start + (w - 1) * _WEEK + rng.integers(0, _WEEK - 3600, size=n_sessions)
    view_session = np.repeat(np.arange(n_sessions), views)
    row = session_user[view_session]
    # One draw per view from its customer's distribution: searchsorted on the rows' CDFs laid end
    # to end (row r's CDF shifted by r keeps the whole sequence sorted).
    n_items = len(items)
    flat = (cdf + np.arange(len(users))[:, None]).ravel()
    pick = np.searchsorted(flat, row + rng.random(len(row)), side="right") - row * n_items
    pick = np.clip(pick, 0, n_items - 1)
    jitter = rng.integers(0, _VIEW_GAP - 5, size=len(row))
    buy_draw = rng.random(len(row))
    buy_delay = rng.integers(1, 5, size=len(row))

    # An item at most once per session (the first view of it kept).
    _, first = np.unique(view_session * n_items + pick, return_index=True)
    first.sort()
    view_session, row, pick = view_session[first], row[first], pick[first]
    jitter, buy_draw, buy_delay = jitter[first], buy_draw[first], buy_delay[first]
    session_first = np.searchsorted(view_session, view_session, side="left")
    position = np.arange(len(view_session)) - session_first
    timestamp = session_start[view_session] + position * _VIEW_GAP + jitter

    user = users[row]
    item = items[pick]
    logit = (_PURCHASE_BIAS + 0.5 * np.log(np.maximum(world.categories * taste[user, category[item]], 1e-12))
             + 0.5 * np.log(quality[item]) - sensitivity[user] * np.log(price[item] / reference))
    bought = buy_draw < 1.0 / (1.0 + np.exp(-logit))

    n_views, n_buys = len(user), int(bought.sum())
    return {
        "user_id": np.concatenate([user, user[bought]]),
        "item_id": np.concatenate([item, item[bought]]),
        "timestamp": np.concatenate([timestamp, timestamp[bought] + buy_delay[bought]]),
        "purchase": np.concatenate([np.zeros(n_views, bool), np.ones(n_buys, bool)]),
        "week": np.full(n_views + n_buys, w, dtype=np.int64),
    }


def _spoil(world: RetailWorld, events: dict[str, np.ndarray], start: int) -> dict[str, np.ndarray]:
    """Duplicate `duplicate_share` of the rows and deliver `late_share` 1-24 hours late (see the
    module's documentation); its own random stream, so the clean events are unchanged."""
    import numpy as np

    rng = np.random.default_rng([world.seed, 2])
    n = len(events["timestamp"])
    arrival = events["timestamp"].astype(np.float64)
    late = rng.choice(n, size=round(world.late_share * n), replace=False)
    week_end = start + events["week"][late] * _WEEK - 1
    arrival[late] = np.maximum(np.minimum(arrival[late] + rng.uniform(3600, 24 * 3600, len(late)), week_end),
                               arrival[late])
    copies = np.sort(rng.choice(n, size=round(world.duplicate_share * n), replace=False))
    index = np.concatenate([np.arange(n), copies])
    arrival = np.concatenate([arrival, arrival[copies]])
    copy_rank = np.concatenate([np.zeros(n), np.ones(len(copies))])
    original = np.concatenate([np.arange(n), copies])
    order = np.lexsort((copy_rank, original, arrival, events["week"][index]))
    return {key: value[index[order]] for key, value in events.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conveyor_recsys.simulate",
        description="Write a simulated retail world: history.csv (weeks before --cutoff), week-NN.csv "
                    "for the weeks from --cutoff on, items.csv, users.csv, world.json.")
    parser.add_argument("--out", required=True, help="folder to write into (created if missing)")
    parser.add_argument("--weeks", type=int, default=RetailWorld.weeks)
    parser.add_argument("--seed", type=int, default=RetailWorld.seed)
    parser.add_argument("--cutoff", type=int, default=None,
                        help="first week replayed; history.csv holds the weeks before it (default 4, or "
                             "the last week if there are fewer)")
    parser.add_argument("--users", type=int, default=RetailWorld.users)
    parser.add_argument("--items", type=int, default=RetailWorld.items)
    parser.add_argument("--change", choices=[*CHANGES, "none"], default=RetailWorld.change)
    parser.add_argument("--change-week", type=int, default=None,
                        help="first week of the change (default 6, or the last week if there are fewer)")
    parser.add_argument("--messy", action="store_true", help="inject duplicate and late (out-of-order) rows")
    args = parser.parse_args(argv)
    if args.cutoff is None:
        args.cutoff = min(4, args.weeks)
    if args.change_week is None:
        args.change_week = min(RetailWorld.change_week or 6, args.weeks)
    try:
        world = RetailWorld(users=args.users, items=args.items, weeks=args.weeks, seed=args.seed,
                            change="season" if args.change == "none" else args.change,
                            change_week=None if args.change == "none" else args.change_week,
                            messy=args.messy)
        sim = simulate(world)
        written = sim.write(args.out, args.cutoff)
    except ValueError as error:
        parser.error(str(error))
    purchases = int((sim.interactions["event"] == "purchase").sum())
    print(f"{len(sim.interactions)} events ({purchases} purchases) from {len(sim.users)} customers over "
          f"{world.weeks} weeks; history.csv: weeks 1-{args.cutoff - 1}, {len(written['weeks'])} weekly "
          f"files; change: {'none' if world.change_week is None else world.change} "
          f"from week {world.change_week} ({', '.join(sim.changed_categories)}) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
