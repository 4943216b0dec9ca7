"""Helpers of conveyor-monitor's tests: batches drawn from the template's data generator (kept
inside the ranges its schema allows) and edits of a project's monitor section."""

from __future__ import annotations

from typing import Any

import yaml
from conveyor.testing import Project


def customers(rows: int, seed: int) -> Any:
    """Rows from the training data's generator, within the schema's ranges."""
    from conveyor_sklearn.datagen import customers as generate

    frame = generate(rows, seed=seed)
    frame["monthly_charges"] = frame["monthly_charges"].clip(15, 127)
    frame["support_calls"] = frame["support_calls"].clip(0, 7)
    return frame


def shifted(rows: int, seed: int) -> Any:
    """Customers whose behaviour changed: short tenures, month-to-month, higher charges."""
    import numpy as np

    frame = customers(rows, seed)
    rng = np.random.default_rng(seed + 100)
    frame["tenure_months"] = rng.integers(1, 12, rows)
    frame["contract"] = rng.choice(["month-to-month", "one-year", "two-year"], rows,
                                   p=[0.9, 0.05, 0.05])
    frame["monthly_charges"] = (frame["monthly_charges"] * 1.4).clip(15, 127)
    return frame


def configure(project: Project, section: dict[str, Any], **top: Any) -> None:
    """Add a `monitor` section (and other top-level keys) to the project's conveyor.yaml."""
    path = project.path / "conveyor.yaml"
    config = yaml.safe_load(path.read_text())
    config["monitor"] = section
    config.update(top)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
