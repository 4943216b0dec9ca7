"""Feedback that arrives later: the public types of the `conveyor_join_feedback` hook.

Purchases, clicks or ground-truth labels arrive hours or days after a model answered. A plugin
that knows what a model served joins such a file to the prediction log
(`conveyor.predictions`) and answers with a `FeedbackResult`: one `FeedbackPeriod` per period
of the serving time (`feedback.period`), each with the online metrics, keyed by the same names
as the offline evaluation's (`hit_rate@10`, `accuracy`, ...), the counts of what matched and
what did not, and drift figures. conveyor-monitor's `conveyor feedback` records each period as
a monitored batch (`conveyor_monitor.records`), so the retraining policy reads it like any
other batch.

The settings come from the `feedback` config section (`FeedbackSettings`, registered by
conveyor-monitor); the hook receives them typed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["JOINS", "PERIOD_STATUSES", "FeedbackPeriod", "FeedbackResult", "FeedbackSettings",
           "parse_window", "period_range", "period_starts"]

JOINS = ("auto", "request_id", "user_window", "id")
PERIOD_STATUSES = ("ok", "drift", "insufficient")


@dataclass
class FeedbackSettings:
    """The `feedback` config section: how a feedback file is joined and cut into periods."""

    # Periods of the serving time, one monitored batch each: a pandas period alias
    # ("W" = Monday-to-Sunday weeks, "D" days, "M" months).
    period: str = "W"
    # An event counts for a slate served at most this long before it (user-window join):
    # a number and a unit, s m h d w ("7d", "36h").
    window: str = "7d"
    # Which events are feedback (the others are counted and left out); empty: all events, as
    # the offline evaluation counts every held-out interaction as relevant, so that online
    # and offline `hit_rate@10` compare (`metrics.hit_rate@10: "< champion - 0.05"`). With
    # [purchase], purchases only: lower figures, to compare with absolute thresholds.
    events: list[str] = field(default_factory=list)
    # auto: by request id when the file carries one, else by user and time window (recommenders)
    # or by data.id_column (classification/regression). Or one of request_id, user_window, id.
    join: str = "auto"
    # The column of the request id in feedback files.
    request_id_column: str = "request_id"
    # A period with fewer matched slates (or labelled predictions) than this: "insufficient".
    min_rows: int = 20
    # Recommenders: the period drifted when the popularity shift (Jensen-Shannon distance of
    # the item shares, training vs the period's events, over the items the model knows)
    # reaches this. Sampling alone gives a floor that falls as a period's events grow (about
    # 0.2 for 2,000 events over 150 items): tune it to your traffic.
    popularity_threshold: float = 0.35
    # Recommenders: ... or when the share of events on items (or of users) the model never
    # saw reaches this.
    new_items_threshold: float = 0.3
    new_users_threshold: float = 0.3

    def window_seconds(self) -> float:
        """`window` in seconds; ConfigError naming `feedback.window` when it is not a positive
        duration with a unit."""
        return parse_window(self.window, "feedback.window")

    def as_dict(self) -> dict[str, Any]:
        """Every setting by name, as plain values (JSON-ready): what a monitored batch's
        `details["feedback"]["settings"]` records."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def parse_window(text: str, where: str) -> float:
    """A duration such as "7d", "36h", "90m" in seconds (`conveyor.durations.parse_duration`,
    a unit required); ConfigError naming the setting `where` if not."""
    from conveyor.durations import parse_duration
    from conveyor.errors import ConfigError

    seconds = parse_duration(text)
    if seconds is None:
        raise ConfigError(f"{where} is '{text}': it is a positive duration with a unit",
                          hint="e.g. 7d, 36h, 90m (units s m h d w)")
    return seconds


@dataclass(frozen=True)
class FeedbackPeriod:
    """One period of serving time with the feedback joined to what was served in it.

    `start`/`end` are ISO 8601 UTC times (end exclusive). `served` counts the slates (or
    predictions) served in the period, `matched` those with feedback (the rows the metrics are
    computed on; `labelled_rows` of the monitored batch). `performance` holds the online
    metrics (empty without matched rows); `status` is "ok", "drift" (a drift figure past its
    threshold) or "insufficient" (fewer than `feedback.min_rows` matched, an empty period).
    `model_version` is the version that served most of the period. `drift` holds drift
    figures (for recommenders: `popularity`, `new_items`, `new_users`, per-feature results);
    `events_matched` counts feedback events joined to this period's rows. `backfill` names a
    monitored batch that already covers these rows (the prediction log checked by
    `conveyor monitor --from-log`): its performance is updated instead of recording a new one.
    """

    start: str
    end: str
    served: int
    matched: int
    status: str
    model_version: int | None = None
    performance: dict[str, float] = field(default_factory=dict)
    events_matched: int = 0
    drift: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    backfill: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["notes"] = list(self.notes)
        return out


@dataclass(frozen=True)
class FeedbackResult:
    """A feedback file joined to what a model served.

    `kind` says what was served ("recommender" slates, or "predictions"), `join` how events
    were matched ("request_id", "user_window" or "id"), `k` the slates' length for ranking
    metrics (None for predictions). Event counts: `events` rows read, `incomplete` rows
    missing a key or time (dropped), `duplicates` exact repeats (dropped), `out_of_order` rows
    earlier than the row before them (sorted, kept), `irrelevant` events of other kinds than
    `feedback.events` (left out), `matched` joined to a served row, `unmatched` joined to none
    (no slate of that user within `feedback.window`, an unknown request id or id): counted and
    reported, never silently dropped. `periods` are oldest first; `notes` are lines for the
    user.
    """

    model_name: str
    kind: str
    join: str
    periods: tuple[FeedbackPeriod, ...]
    events: int = 0
    incomplete: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    irrelevant: int = 0
    matched: int = 0
    unmatched: int = 0
    k: int | None = None
    notes: tuple[str, ...] = ()
    metric_names: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """The event counts by name (events, incomplete, duplicates, out_of_order, irrelevant,
        matched, unmatched): `details["feedback"]["events"]` of each batch recorded."""
        return {name: getattr(self, name) for name in (
            "events", "incomplete", "duplicates", "out_of_order", "irrelevant", "matched",
            "unmatched")}

    def as_dict(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "kind": self.kind, "join": self.join,
                "k": self.k, "events": self.counts(), "notes": list(self.notes),
                "metric_names": list(self.metric_names),
                "periods": [p.as_dict() for p in self.periods]}


def period_starts(timestamps: Any, period: str) -> Any:
    """The start of each timestamp's period (tz-naive UTC `datetime64` Series in, same out):
    pandas period aliases ("W" Monday-to-Sunday weeks, "D", "M", "7D"). ConfigError names
    `feedback.period` for an alias pandas does not know."""
    from conveyor.errors import ConfigError

    try:
        return timestamps.dt.to_period(period).dt.start_time
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"feedback.period is '{period}': not a period pandas knows ({exc})",
                          hint="e.g. W (weeks from Monday), D (days), M (months)") from exc


def period_range(first: Any, last: Any, period: str) -> list[tuple[Any, Any]]:
    """Every period from the one holding `first` to the one holding `last` (timestamps), as
    (start, end) pairs, end exclusive: the empty periods between them included."""
    import pandas as pd

    periods = pd.period_range(pd.Timestamp(first).to_period(period),
                              pd.Timestamp(last).to_period(period), freq=period)
    return [(p.start_time, (p + 1).start_time) for p in periods]
