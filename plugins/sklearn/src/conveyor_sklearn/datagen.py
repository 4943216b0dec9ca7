"""Synthetic tabular data for templates, examples and benchmarks: numbers, text categories,
missing values, and a target with real signal in it."""

from __future__ import annotations

from typing import Any


def customers(rows: int = 3000, seed: int = 0) -> Any:
    """Telecom-style churn: does the customer leave (churned = 1)?"""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows)
    contract = rng.choice(["month-to-month", "one-year", "two-year"], rows, p=[0.55, 0.25, 0.2])
    region = rng.choice(["north", "south", "east", "west"], rows)
    monthly = np.round(rng.normal(65, 20, rows).clip(15, 140), 2)
    calls = rng.poisson(1.5, rows)
    partner = rng.choice(["yes", "no"], rows)
    logit = (-1.0 - 0.04 * tenure + 0.02 * (monthly - 65) + 0.45 * calls
             + np.where(contract == "month-to-month", 1.3, np.where(contract == "one-year", 0, -1.2))
             + np.where(partner == "yes", -0.4, 0.0))
    churned = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({
        "customer_id": [f"C{i:06d}" for i in range(rows)], "tenure_months": tenure,
        "contract": contract, "region": region, "monthly_charges": monthly,
        "support_calls": calls, "has_partner": partner, "churned": churned})
    frame.loc[rng.random(rows) < 0.03, "monthly_charges"] = np.nan
    frame.loc[rng.random(rows) < 0.02, "contract"] = None
    return frame


def houses(rows: int = 3000, seed: int = 0) -> Any:
    """House prices: what does it sell for (price, in thousands)?"""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    area = rng.normal(120, 40, rows).clip(30, 400).round()
    rooms = (area / 30 + rng.normal(0, 1, rows)).clip(1, 10).round().astype(int)
    age = rng.integers(0, 100, rows)
    district = rng.choice(["centre", "riverside", "suburb", "industrial"], rows)
    bonus = pd.Series(district).map({"centre": 120, "riverside": 80, "suburb": 20,
                                     "industrial": -30}).to_numpy()
    price = (2.1 * area + 15 * rooms - 0.8 * age + bonus + rng.normal(0, 25, rows)).round(1)
    frame = pd.DataFrame({"house_id": np.arange(rows), "area_m2": area, "rooms": rooms,
                          "age_years": age, "district": district, "price": price})
    frame.loc[rng.random(rows) < 0.03, "age_years"] = np.nan
    return frame


def wide_classification(rows: int, columns: int = 20, seed: int = 0) -> Any:
    """A large numeric classification table (benchmarks): `columns` features plus `target`."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, columns)).astype("float64")
    weights = rng.normal(size=columns)
    y = ((x @ weights + rng.normal(scale=2.0, size=rows)) > 0).astype(int)
    frame = pd.DataFrame(x, columns=[f"f{i:02d}" for i in range(columns)])
    frame["target"] = y
    return frame
