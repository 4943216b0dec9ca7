"""Synthetic retail purchase data whose customers change their behaviour over simulated weeks.

Each row is one recommendation shown to a customer: who the customer is, which product was
recommended, in what context, and whether the customer bought it (`purchased`, the target).

    python retail_data.py history --weeks 4 -o data/purchases.csv     # training history
    python retail_data.py week 7 -o incoming/week-07.csv              # one week's batch

The world is stable up to week `SHIFT_START` (5 by default). Over the next `SHIFT_WEEKS` weeks it
moves to a new regime and stays there:
- prices rise and customers become far more price-sensitive, and discounts matter more;
- shopping moves to the app, younger customers arrive, and their taste moves to electronics and
  beauty while grocery recommendations lose their appeal;
- an e-mail promotion, once a strong nudge, stops working (customers tune it out).
So both the inputs (covariate drift: a monitor sees it) and the relation between inputs and the
target (concept drift: a model trained on the old weeks loses accuracy) change, and a model
retrained on recent weeks recovers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

SHIFT_START = 5
SHIFT_WEEKS = 2
ROWS_PER_WEEK = 4000
SEED = 20261124

CATEGORIES = ["grocery", "electronics", "fashion", "home", "toys", "beauty"]
CHANNELS = ["store", "web", "app"]
TIERS = ["bronze", "silver", "gold"]
REGIONS = ["north", "south", "east", "west"]
BASE_PRICE = {"grocery": 8.0, "electronics": 220.0, "fashion": 45.0, "home": 60.0, "toys": 25.0,
              "beauty": 20.0}


def shift_level(week: int, start: int = SHIFT_START, weeks: int = SHIFT_WEEKS) -> float:
    """0 before the shift, 1 once the new regime is complete, linear in between."""
    return float(np.clip((week - start + 1) / weeks, 0.0, 1.0))


def generate_week(week: int, rows: int = ROWS_PER_WEEK, *, seed: int = SEED,
                  shift_start: int = SHIFT_START) -> pd.DataFrame:
    """One week of recommendations and their outcomes; the same (week, seed) gives the same rows."""
    rng = np.random.default_rng([seed, week])
    s = shift_level(week, shift_start)

    age = np.clip(rng.normal(46 - 12 * s, 13, rows), 18, 90).round()
    income = np.round(np.exp(rng.normal(10.6, 0.45, rows)), -2)
    tier = rng.choice(TIERS, rows, p=[0.55, 0.30, 0.15])
    region = rng.choice(REGIONS, rows, p=[0.3, 0.25, 0.25, 0.2])
    channel = rng.choice(CHANNELS, rows, p=_mix([0.45, 0.35, 0.20], [0.15, 0.30, 0.55], s))
    visits = rng.poisson(4 + 3 * (channel == "app"), rows)
    days_since = np.minimum(rng.exponential(20, rows).round(), 365)
    category_weights = _mix([0.30, 0.12, 0.18, 0.15, 0.12, 0.13],
                            [0.18, 0.24, 0.16, 0.12, 0.10, 0.20], s)
    category = rng.choice(CATEGORIES, rows, p=category_weights)
    inflation = 1.0 + 0.35 * s
    price = np.array([BASE_PRICE[c] for c in category]) * inflation * rng.lognormal(0, 0.35, rows)
    discount = rng.choice([0, 5, 10, 20, 30], rows, p=[0.4, 0.2, 0.2, 0.12, 0.08]).astype(float)
    promo_email = rng.random(rows) < 0.3
    hour = rng.integers(7, 23, rows)

    relative_price = np.log(price / np.array([BASE_PRICE[c] for c in category]))
    young = (age < 35).astype(float)
    taste = np.select(
        [category == "electronics", category == "beauty", category == "grocery"],
        [0.3 + 2.2 * s * young - 0.8 * s, 0.2 + 1.8 * s * young - 0.6 * s, 1.2 - 2.6 * s], 0.0)
    logit = (
        -1.3
        + 0.8 * (tier == "gold") + 0.35 * (tier == "silver")
        + 0.15 * np.minimum(visits, 15) - 0.03 * days_since
        + taste
        - (1.5 + 3.0 * s) * relative_price
        + (0.03 + 0.07 * s) * discount
        + (2.0 - 2.3 * s) * promo_email
        + 0.6 * (channel == "app") * s
        + 0.9 * np.log(income / 40_000) * (1 - s)
    )
    purchased = rng.random(rows) < 1 / (1 + np.exp(-logit))

    frame = pd.DataFrame({
        "event_id": [f"w{week:02d}-{i:06d}" for i in range(rows)],
        "age": age.astype(int),
        "income": income,
        "loyalty_tier": tier,
        "region": region,
        "channel": channel,
        "visits_30d": visits,
        "days_since_last_purchase": days_since.astype(int),
        "category": category,
        "price": price.round(2),
        "discount_pct": discount,
        "promo_email": promo_email.astype(int),
        "hour": hour,
        "purchased": purchased.astype(int),
    })
    # Real exports have gaps: an income the customer never gave, an unknown region.
    frame.loc[rng.random(rows) < 0.03, "income"] = np.nan
    frame.loc[rng.random(rows) < 0.01, "region"] = None
    return frame


def generate_weeks(weeks: range, rows: int = ROWS_PER_WEEK, *, seed: int = SEED,
                   shift_start: int = SHIFT_START) -> pd.DataFrame:
    return pd.concat([generate_week(w, rows, seed=seed, shift_start=shift_start) for w in weeks],
                     ignore_index=True)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Written whole or not at all: a watcher polling the inbox never sees half a batch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_csv(tmp, index=False)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the file from others
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _mix(before: list[float], after: list[float], s: float) -> np.ndarray:
    weights = (1 - s) * np.asarray(before) + s * np.asarray(after)
    return weights / weights.sum()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    history = sub.add_parser("history", help="weeks 0..N-1 as one training file")
    history.add_argument("--weeks", type=int, default=4)
    week = sub.add_parser("week", help="one week's batch")
    week.add_argument("number", type=int)
    for command in (history, week):
        command.add_argument("-o", "--output", type=Path, required=True)
        command.add_argument("--rows", type=int, default=ROWS_PER_WEEK, help="rows per week")
        command.add_argument("--seed", type=int, default=SEED)
        command.add_argument("--shift-start", type=int, default=SHIFT_START,
                             help="first week of the behaviour change")
    args = parser.parse_args(argv)
    weeks = range(args.weeks) if args.what == "history" else range(args.number, args.number + 1)
    frame = generate_weeks(weeks, args.rows, seed=args.seed, shift_start=args.shift_start)
    write_csv(frame, args.output)
    print(f"wrote {len(frame):,} rows ({frame['purchased'].mean():.1%} purchased) to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
