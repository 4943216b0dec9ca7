"""A small seeded interactions table for the `recommender` template.

Customers prefer one or two of a few item categories and pick items inside a category by
popularity, so a model that learns tastes (item_item, als) beats "most popular". This is not
the retail simulator of the flagship demo (conveyor_recsys.simulate), only starter data.
"""

from __future__ import annotations

from typing import Any


def interactions(users: int = 400, items: int = 150, rows: int = 6000, days: int = 60,
                 categories: int = 6, seed: int = 0) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    item_category = np.arange(items) % categories
    appeal = rng.zipf(1.6, items).clip(max=50).astype(float)
    taste = rng.dirichlet(np.full(categories, 0.3), size=users)
    activity = rng.gamma(1.5, 1.0, users)
    user = rng.choice(users, size=rows, p=activity / activity.sum())
    category = np.array([rng.choice(categories, p=taste[u]) for u in user])
    item = np.empty(rows, dtype=int)
    for c in range(categories):
        members = np.flatnonzero(item_category == c)
        chosen = category == c
        weights = appeal[members] / appeal[members].sum()
        item[chosen] = rng.choice(members, size=int(chosen.sum()), p=weights)
    start = pd.Timestamp("2024-03-01")
    seconds = np.sort(rng.uniform(0, days * 86400, rows)).astype(int)
    event = np.where(rng.random(rows) < 0.2, "purchase", "view")
    return pd.DataFrame({
        "user_id": [f"u{u:04d}" for u in user], "item_id": [f"i{j:04d}" for j in item],
        "timestamp": (start + pd.to_timedelta(seconds, unit="s")).strftime("%Y-%m-%dT%H:%M:%S"),
        "event": event, "weight": 1.0})
