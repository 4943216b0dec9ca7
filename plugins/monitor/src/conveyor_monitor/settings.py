"""The `monitor` config section (typed: unknown keys and wrong types stop a command early)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import conveyor
from conveyor.feedback import FeedbackSettings


@dataclass
class DriftMethods:
    # Which drift detector tests each kind of feature: a detector's name (built in: psi, ks,
    # chi2, js; plugins add more through conveyor_drift_detectors).
    numeric: str = "psi"
    categorical: str = "chi2"


@dataclass
class WebhookConfig:
    # POST each alert as JSON to this URL (null: no webhook).
    url: str | None = None
    timeout: float = 5.0  # seconds; a slow or failing receiver is reported, never fatal
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class AlertsConfig:
    log: bool = True  # one line per alert on stderr (and the `conveyor.alerts` logger)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)


@dataclass
class MonitorConfig:
    drift: DriftMethods = field(default_factory=DriftMethods)
    # Per detector: a distance at or above it (psi, js) or a p-value below it (ks, chi2) means
    # the feature drifted. Detectors not listed use their own default.
    thresholds: dict[str, float] = field(default_factory=lambda: {
        "psi": 0.2, "ks": 0.05, "chi2": 0.05, "js": 0.1})
    # The batch drifted when at least this share of the features (with a verdict) drifted.
    drift_share: float = 0.3
    # Fewer rows in a batch, or fewer non-missing values in a feature, than this: "insufficient
    # data", no verdict and no alarm.
    min_rows: int = 200
    # Reference quantile bins per numeric feature (PSI, JS, chi2 and the report's histograms).
    bins: int = 10
    # Reference quantiles kept per numeric feature for KS: its statistic on this grid is within
    # 1/grid of the exact one (the profile records the actual bound per feature).
    grid: int = 10000
    # Categories kept per categorical feature; rarer ones are counted together as "(other)".
    max_categories: int = 100
    # Rows that break the schema's hard checks (or hold text where a number belongs) are set
    # aside and counted; the batch is invalid only when more than this share of its rows do.
    # Values outside the schema's expectations are only counted (report: quality).
    max_invalid_share: float = 0.5
    # Rows read per chunk: memory is bounded by one chunk, whatever the batch's size.
    chunk_rows: int = 100000
    # Test the model's predictions (class, or value for regression) for drift as well.
    prediction_drift: bool = True
    # Conditions on evaluate.metrics when labels are given, as in evaluate.gate:
    # {accuracy: ">= 0.8", f1_macro: ">= champion - 0.05"} (champion: its recorded test value).
    performance: dict[str, str] = field(default_factory=dict)
    # Where reports go when --report is not given (relative to the project).
    reports: str = ".conveyor/monitor/reports"
    alerts: AlertsConfig = field(default_factory=AlertsConfig)


SCHEMA = conveyor.ConfigSchema("monitor", MonitorConfig,
                               "drift methods and thresholds, batch size limits, alerts")


def settings_from(config: Mapping[str, Any] | None) -> MonitorConfig:
    """The section from a resolved config mapping, defaults where absent, typed as the schema."""
    settings = SCHEMA.read(config)
    if not 0 <= settings.max_invalid_share <= 1:
        raise conveyor.ConfigError(
            f"monitor.max_invalid_share={settings.max_invalid_share:g}: the share of a batch's "
            "rows that may break the schema must be between 0 and 1")
    return settings


def as_dict(settings: MonitorConfig) -> dict[str, Any]:
    return {f.name: _plain(getattr(settings, f.name)) for f in fields(settings)}


def _plain(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


FEEDBACK_SCHEMA = conveyor.ConfigSchema(
    "feedback", FeedbackSettings,
    "delayed feedback (`conveyor feedback`): period, join window, relevant events, join kind")


def feedback_settings_from(config: Mapping[str, Any] | None) -> FeedbackSettings:
    """The `feedback` section, checked: a bad period, window or join stops early (exit 2)."""
    from conveyor.feedback import JOINS, period_starts

    settings = FEEDBACK_SCHEMA.read(config)
    settings.window_seconds()
    if settings.join not in JOINS:
        raise conveyor.ConfigError(f"feedback.join is '{settings.join}'; it is one of "
                                   + ", ".join(JOINS))
    if settings.min_rows < 1:
        raise conveyor.ConfigError(f"feedback.min_rows is {settings.min_rows}; it must be at "
                                   "least 1")
    import pandas as pd

    period_starts(pd.Series(pd.to_datetime(["2024-01-01"])), settings.period)
    return settings
