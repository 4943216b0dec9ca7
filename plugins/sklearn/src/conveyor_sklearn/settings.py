"""Typed settings of the plugin's config section and stage types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    # import path of a scikit-learn compatible estimator; required by sklearn.train only, so
    # projects that do not train with this plugin need no model section
    _target_: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    task: str | None = None  # classification | regression; inferred from the estimator


@dataclass
class LoadSettings:
    source: str | None = None  # path to .csv / .parquet, or sklearn:load_<dataset>


@dataclass
class SplitSettings:
    target: str | None = None
    test_size: float = 0.2
    stratify: bool = True
    seed: int = 0


@dataclass
class TrainSettings:
    target: str | None = None
    id_column: str | None = None
    model: dict[str, Any] | None = None
    seed: int = 0


@dataclass
class EvaluateSettings:
    target: str | None = None
    id_column: str | None = None
    metrics: list[str] = field(default_factory=list)
    slice_column: str | None = None
    slice_min_rows: int = 30
    model_name: str = "model"
    # fewer test rows that the champion never trained on than this: relative conditions fail
    champion_min_rows: int = 100
    bootstrap: int = 1000  # paired bootstrap resamples for the difference's interval (0: none)
