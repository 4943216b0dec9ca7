"""The `recsys` config section (`conveyor.ConfigSchema`) and the stage settings."""

from __future__ import annotations

from dataclasses import dataclass, field

import conveyor

METHODS = ("temporal", "leave_last_out")


@dataclass
class SplitConfig:
    method: str = "temporal"          # temporal | leave_last_out
    test_days: float | None = None    # temporal: the last N days are the test period ...
    test_fraction: float = 0.2        # ... or else this share of the time range


@dataclass
class AlsConfig:
    factors: int = 16
    iterations: int = 15
    regularization: float = 0.1
    alpha: float = 10.0               # confidence = 1 + alpha * weight


@dataclass
class ItemItemConfig:
    neighbours: int = 50              # similar items kept per item


@dataclass
class RankerConfig:
    candidates: int = 50              # items the candidate model proposes per user, re-ranked
    label_fraction: float = 0.3       # the last share of the training period labels the ranker
    label_days: float | None = None   # ... or its last N days
    category_column: str | None = "category"  # item table column for user-category affinity
    n_estimators: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 20
    validation_fraction: float = 0.2  # users held out to early-stop the boosting


@dataclass
class RecsysConfig:
    source: str = "data/interactions.csv"
    user_column: str = "user_id"
    item_column: str = "item_id"
    timestamp_column: str = "timestamp"
    event_column: str | None = "event"       # None: no event column
    weight_column: str | None = "weight"     # None: every interaction weighs 1
    event_weights: dict[str, float] = field(default_factory=dict)  # e.g. {view: 1, purchase: 5}
    k: int = 10
    exclude_seen: bool = True
    model: str = "item_item"                 # popularity | item_item | als
    # true: after evaluation, train the model registered again on every interaction, the test
    # period included (same settings): the evaluation judged the model trained before the
    # cutoff, the one served has also learned from the newest interactions (after a change in
    # behaviour, the ones that matter). Meant for retraining (retrain.overrides:
    # [recsys.refit=true]): a refit champion cannot be compared with a challenger tested on
    # the same data (it trained on that test period), so relative gates fail closed there.
    refit: bool = False
    # the second stage of `pipeline: recommend_ranked` (LightGBM lambdarank; feature tables below)
    ranker: RankerConfig = field(default_factory=RankerConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    als: AlsConfig = field(default_factory=AlsConfig)
    item_item: ItemItemConfig = field(default_factory=ItemItemConfig)
    # Optional feature tables (CSV or Parquet) keyed by user_column / item_column: their
    # features' drift over the interactions is in `conveyor feedback`'s monitoring results.
    user_features: str | None = None
    item_features: str | None = None


SCHEMA = conveyor.ConfigSchema(
    "recsys", RecsysConfig,
    "recommendation: interaction columns, split, candidate model, k")


@dataclass
class LoadSettings:
    source: str = ""
    user_column: str = "user_id"
    item_column: str = "item_id"
    timestamp_column: str = "timestamp"
    event_column: str | None = "event"
    weight_column: str | None = "weight"
    event_weights: dict[str, float] = field(default_factory=dict)


@dataclass
class SplitSettings:
    method: str = "temporal"
    test_days: float | None = None
    test_fraction: float = 0.2


@dataclass
class TrainSettings:
    model: str = "item_item"
    factors: int = 16
    iterations: int = 15
    regularization: float = 0.1
    alpha: float = 10.0
    neighbours: int = 50
    seed: int = 0


@dataclass
class RefitSettings(TrainSettings):
    enabled: bool = False
    # A pipeline that cannot refit names itself here: `enabled` (recsys.refit=true) is then a
    # ConfigError naming it, rather than a setting silently ignored.
    unsupported_by: str | None = None


@dataclass
class EvaluateSettings:
    k: int = 10
    exclude_seen: bool = True
    model_name: str = "model"      # registry.model_name: whose champion is scored beside
    slice_column: str | None = None   # evaluate.slices.column: a user table column, or
    slice_min_rows: int = 30          # user_history (built in); slices of fewer users skipped
    user_features: str | None = None  # recsys.user_features: the table slice_column is in
    user_column: str = "user_id"


@dataclass
class FeaturesSettings:
    user_features: str | None = None
    item_features: str | None = None
    user_column: str = "user_id"
    item_column: str = "item_id"


@dataclass
class RankSettings(TrainSettings):
    """recsys.rank's settings: the ranker's, after the candidate model's (recsys.train's), which
    it refits on the earlier part of the training period."""

    candidates: int = 50
    label_fraction: float = 0.3
    label_days: float | None = None
    category_column: str | None = "category"
    n_estimators: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 20
    validation_fraction: float = 0.2
    exclude_seen: bool = True
    k: int = 10
