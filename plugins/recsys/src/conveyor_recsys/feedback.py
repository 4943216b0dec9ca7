"""Delayed feedback for recommenders: purchases and clicks joined to the slates served.

`join_feedback` answers the `conveyor_join_feedback` hook for a project whose champion is a
`Recommender`. The rules (documented in conveyor-monitor's README, "Feedback that arrives
later"):

Events
    The file has the interactions' columns (`recsys.user_column`, `item_column`,
    `timestamp_column`, `event_column`) and optionally `feedback.request_id_column`. Rows
    missing a user, item or time are dropped and counted; exact repeats are dropped and
    counted; rows earlier than the row before them are counted and sorted. Only the events
    named by `feedback.events` are feedback (the rest are counted as irrelevant; naming events
    for a file without event values is a UsageError); every event's item and user count for
    drift. Read by `conveyor_recsys.interactions.canonical`, as training reads its file.
Join
    By request id when the file carries one (`feedback.join: auto` or `request_id`; rows of
    such a file without one join by user and time), else by user and time (`user_window`):
    an event counts for the user's latest slate served at or before it, at most
    `feedback.window` earlier. Events that find no slate are unmatched: counted and reported,
    never dropped silently.
Scores
    The slates served in the periods (`feedback.period`) that the file's events cover are
    scored (joined by request id: the periods its matched slates were served in, whatever
    the events' own times, each event counted in its slate's period), per period of their
    serving time: a slate's relevant items are the items of its matched
    events (less the items the user had in training when the slate excluded them, as the
    offline evaluation does); slates with a relevant item are evaluated with
    `conveyor_recsys.metrics.ranking_metrics` at the slates' k, so `hit_rate@10` online and
    offline mean the same. Slates without feedback are counted.
Drift
    Per period, the events of that period against the training interactions of the version
    that served it: `popularity` (Jensen-Shannon distance, base 2, of the item shares),
    `new_items` and `new_users` (share of events on items, or by users, the model never saw),
    and with `recsys.user_features` / `recsys.item_features` each feature's distribution over
    the interactions, tested with the monitor's detectors (`monitor.drift`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import conveyor
from conveyor import api
from conveyor.feedback import FeedbackPeriod, FeedbackResult, FeedbackSettings, period_range, period_starts
from conveyor.predictions import read_prediction_log
from conveyor.tables import read_table

SLATE_COLUMNS = ("request_id", "timestamp", "model_version", "user_id", "k", "exclude_seen",
                 "prediction")
if TYPE_CHECKING:
    import pandas as pd

ONLINE_METRICS = ("ndcg@{k}", "recall@{k}", "map@{k}", "mrr", "hit_rate@{k}")


def join_feedback(session: Any, model_name: str | None, events: Path, source: str,
                  settings: FeedbackSettings) -> FeedbackResult | None:
    from conveyor_recsys.models import Recommender

    champion = api.load_model(session, model_name)
    if not isinstance(champion.model, Recommender):
        return None  # not a recommender project: the monitor's own join answers
    config = api.load_config(session).data
    section = config.get("recsys") or {}
    window = settings.window_seconds()
    frame, counts = read_events(events, source, section, settings)
    slates = read_slates(session.project_dir, champion.name)
    models = _Models(session, champion)
    is_feedback = feedback_events(frame, source, section, settings)
    counts["irrelevant"] = int((~is_feedback).sum())
    feedback = frame[is_feedback].reset_index(drop=True)
    join = choose_join(settings, feedback)
    # every event matched once: the feedback's slates score, every event's slate gives its
    # period (joined by request id)
    own = match(frame, slates, join, window)
    matched_slate = own[is_feedback].reset_index(drop=True)
    counts["matched"] = int(matched_slate.notna().sum())
    counts["unmatched"] = len(feedback) - counts["matched"]
    k = int(slates["k"].mode().iloc[0])
    slate_period = period_starts(slates["timestamp"], settings.period)
    if join == "request_id" and counts["matched"]:
        # The events name their slates: score the periods those were served in, whenever
        # that was (the events' own times say when customers acted, on a clock that need not
        # be the server's, e.g. a replay), and take each event's period from its slate.
        served_in = slate_period[matched_slate.dropna().astype(int)]
        spans = [period_range(start, start, settings.period)[0]
                 for start in sorted(set(served_in))]
        in_span = slate_period.isin([start for start, _ in spans])
        outside = 0
        event_period = slate_period.reindex(own.to_numpy()).to_numpy()
    else:
        first, last = frame["timestamp"].min(), frame["timestamp"].max()
        spans = period_range(first, last, settings.period)
        in_span = (slates["timestamp"] >= spans[0][0]) & (slates["timestamp"] < spans[-1][1])
        outside = int((~in_span[matched_slate.dropna().astype(int)]).sum()) \
            if counts["matched"] else 0
        event_period = period_starts(frame["timestamp"], settings.period).to_numpy()
    periods = []
    for start, end in spans:
        chosen = slates.index[in_span & (slate_period == start)]
        periods.append(_score_period(
            start, end, slates.loc[chosen], feedback, matched_slate,
            frame[event_period == start], k, models, settings, section, session))
    notes = [f"{counts['unmatched']:,} of {len(feedback):,} feedback event(s) matched no slate"
             + (f" (no slate of that user within feedback.window={settings.window})"
                if join == "user_window" else " (unknown request id)")] \
        if counts["unmatched"] else []
    if outside:
        notes.append(f"{outside:,} matched event(s) belong to slates served before this "
                     "file's first period: not scored here (a file scores the slates served "
                     "in the periods its events cover)")
    for name, what in (("duplicates", "duplicate row(s) dropped"),
                       ("out_of_order", "row(s) out of time order (sorted)"),
                       ("incomplete", "row(s) missing a user, item or time dropped")):
        if counts[name]:
            notes.append(f"{counts[name]:,} {what}")
    return FeedbackResult(
        model_name=champion.name, kind="recommender", join=join, periods=tuple(periods), k=k,
        notes=tuple(notes), metric_names=tuple(m.format(k=k) for m in ONLINE_METRICS), **counts)


# --- reading ----------------------------------------------------------------------------------


def read_events(path: Path, source: str, section: Mapping[str, Any],
                settings: FeedbackSettings) -> tuple[Any, dict[str, int]]:
    """The events as `user`, `item`, `timestamp` (naive UTC), `event`, `request_id` (text or
    None), cleaned and sorted, with the counts of what cleaning did."""
    from conveyor_recsys.interactions import canonical

    try:
        raw = read_table(path)
    except Exception as exc:  # a file that is not a table: say which and why
        raise conveyor.UsageError(f"--data {source}: not a readable table ({exc})") from exc
    out, read = canonical(raw, section, where=f"--data {source}", error=conveyor.UsageError,
                          optional=("event", "weight"),
                          request_id_column=settings.request_id_column)
    if out.empty:
        raise conveyor.UsageError(f"--data {source} has no complete event ({read['rows']:,} "
                                  "rows, none with a user, an item and a readable time)")
    out["timestamp"] = out["timestamp"].astype("datetime64[us]")  # the slate log's precision
    out["user_key"] = out["user"].astype(str)
    out["item_key"] = out["item"].astype(str)
    return out, {"events": read["rows"], "incomplete": read["incomplete"],
                 "duplicates": read["duplicates"], "out_of_order": read["out_of_order"]}


def feedback_events(frame: Any, source: str, section: Mapping[str, Any],
                    settings: FeedbackSettings) -> Any:
    """Which rows of `frame` (from `read_events`) are feedback, as a boolean array: the
    events `feedback.events` names, or every event when it names none. Naming events for a
    file without event values is a UsageError (every event would count silently)."""
    import numpy as np

    kinds = set(settings.events or ())
    if not kinds:
        return np.ones(len(frame), dtype=bool)
    if not frame["event"].notna().any():
        column = section.get("event_column")
        where = (f"no event column '{column}' (recsys.event_column)" if column
                 else "no event column (recsys.event_column is null)")
        raise conveyor.UsageError(
            f"feedback.events is {sorted(kinds)} but --data {source} has {where}: its events "
            "cannot be told apart",
            hint="name the file's event column with recsys.event_column=COLUMN, or set "
                 "feedback.events=[] to count every event as feedback")
    return frame["event"].astype(str).isin(kinds).to_numpy()


def read_slates(project_dir: Path, model_name: str) -> Any:
    """The slate log (the prediction log's recommender rows) as one frame, oldest first."""
    import pandas as pd

    parts = list(read_prediction_log(project_dir, model_name, columns=SLATE_COLUMNS))
    if not parts:
        raise conveyor.UsageError(
            f"no slate was logged for model '{model_name}' (.conveyor/predictions/{model_name}/)",
            hint="serve it (`conveyor serve`) and ask POST /recommend first: feedback is "
                 "joined to the slates served")
    slates = pd.concat(parts, ignore_index=True)
    slates = slates[slates["prediction"].notna() & slates["user_id"].notna()]
    if slates.empty:
        raise conveyor.UsageError(f"the prediction log of '{model_name}' holds no slate "
                                  "(rows with user_id and a list of items)")
    slates["timestamp"] = pd.to_datetime(slates["timestamp"], utc=True).dt.tz_localize(
        None).astype("datetime64[us]")
    slates["k"] = pd.to_numeric(slates["k"], errors="coerce").fillna(
        slates["prediction"].map(len)).astype(int)
    slates["exclude_seen"] = slates["exclude_seen"].fillna(False).astype(bool)
    slates["user_key"] = slates["user_id"].astype(str)
    slates["items"] = slates["prediction"].map(lambda items: [str(i) for i in items])
    slates = slates.sort_values("timestamp", kind="stable").reset_index(drop=True)
    return slates


# --- joining ----------------------------------------------------------------------------------


def choose_join(settings: FeedbackSettings, feedback: Any) -> str:
    """The join for these feedback events: "request_id" or "user_window" (`feedback.join`,
    "auto" choosing request ids when the events carry any)."""
    has_ids = bool(feedback["request_id"].notna().any()) if len(feedback) else False
    join = settings.join
    if join == "auto":
        return "request_id" if has_ids else "user_window"
    if join == "request_id" and not has_ids:
        raise conveyor.UsageError(
            f"feedback.join is request_id but the file has no '{settings.request_id_column}' "
            "values (feedback.request_id_column)",
            hint="set feedback.join=user_window (or auto) to join by user and time")
    if join not in ("request_id", "user_window"):
        raise conveyor.ConfigError(f"feedback.join is '{join}'; for a recommender it is one of "
                                   "auto, request_id, user_window")
    return join


def match(feedback: Any, slates: Any, join: str, window: float) -> pd.Series:
    """For each feedback event (in order, a fresh 0..n-1 index), the index (in `slates`) of
    its slate as a float, or NaN when it has none."""
    import pandas as pd

    if not len(feedback):
        return pd.Series([], dtype="float64")
    if join == "request_id":
        index = pd.Series(slates.index, index=slates["request_id"].astype(str))
        index = index[~index.index.duplicated(keep="last")]
        found = feedback["request_id"].astype(str).map(index).astype("float64")
        # rows without a request id (a feed mixing sources) join by user and time
        bare = feedback["request_id"].isna().to_numpy()
        if bare.any():
            found[bare] = match(feedback[bare].reset_index(drop=True), slates, "user_window",
                                window).to_numpy()
        return found
    left = feedback[["timestamp", "user_key"]].assign(order=range(len(feedback)))
    right = slates[["timestamp", "user_key"]].assign(slate=slates.index.astype("float64"))
    joined = pd.merge_asof(left.sort_values("timestamp"), right.sort_values("timestamp"),
                           on="timestamp", by="user_key", direction="backward",
                           tolerance=pd.Timedelta(seconds=window))
    return joined.sort_values("order")["slate"].reset_index(drop=True)


# --- scoring ----------------------------------------------------------------------------------


class _Models:
    """Registered versions loaded once each (the champion already is)."""

    def __init__(self, session: Any, champion: Any) -> None:
        self.session = session
        self.name = champion.name
        self.champion: int = champion.number
        self.loaded = {champion.number: champion}
        self.trained: dict[str, Any] = {}

    def get(self, version: int) -> Any:
        if version not in self.loaded:
            try:
                self.loaded[version] = api.load_model(self.session, self.name, version=version)
            except conveyor.ConveyorError:
                self.loaded[version] = None  # gone from the registry: no seen items, no drift
        return self.loaded[version]

    def training_interactions(self, loaded: Any) -> Any:
        """The training interactions of a loaded version (None when its run stored none)."""
        from conveyor_recsys.drift import training_interactions

        if loaded.run_id not in self.trained:
            self.trained[loaded.run_id] = training_interactions(self.session, loaded)
        return self.trained[loaded.run_id]


def _score_period(start: Any, end: Any, slates: Any, feedback: Any, matched_slate: Any,
                  events: Any, k: int, models: _Models, settings: FeedbackSettings,
                  section: Mapping[str, Any], session: Any) -> FeedbackPeriod:
    from conveyor_recsys.metrics import ranking_metrics

    versions = slates["model_version"].dropna()
    # an empty period is the champion's (its drift figures are still worth having)
    version = int(versions.mode().iloc[0]) if len(versions) else models.champion
    loaded = models.get(version)
    model = loaded.model if loaded is not None else None
    mine = matched_slate.isin(slates.index)
    joined = feedback[mine.to_numpy()].assign(slate=matched_slate[mine].astype(int).to_numpy())
    relevant: dict[int, set[str]] = {}
    for slate, items in joined.groupby("slate")["item_key"]:
        wanted = set(items)
        row = slates.loc[slate]
        if row["exclude_seen"] and model is not None:
            wanted -= {str(i) for i in model.seen(row["user_id"])}
        if wanted:
            relevant[int(slate)] = wanted
    recommended = {int(i): items for i, items in slates["items"].items()}
    performance: dict[str, float] = {}
    if relevant:
        scores = ranking_metrics(recommended, relevant, k=k)
        performance = {name.format(k=k): float(scores[name.format(k=k)])
                       for name in ONLINE_METRICS}
    drift = period_drift(events, loaded, models, session, section, settings)
    notes = []
    if not len(slates):
        status = "insufficient"
        notes.append("no slate was served in this period")
    elif len(relevant) < settings.min_rows:
        status = "insufficient"
        notes.append(f"{len(relevant):,} slate(s) with feedback, fewer than "
                     f"feedback.min_rows={settings.min_rows}")
    else:
        status = "drift" if drift.get("drifted") else "ok"
    without = len(slates) - len(relevant)
    if without:
        notes.append(f"{without:,} of {len(slates):,} slate(s) got no relevant feedback")
    return FeedbackPeriod(
        start=start.isoformat() + "Z", end=end.isoformat() + "Z", served=len(slates),
        matched=len(relevant), status=status, model_version=version, performance=performance,
        events_matched=len(joined), drift=drift, notes=tuple(notes))


def period_drift(events: Any, loaded: Any, models: _Models, session: Any,
                 section: Mapping[str, Any], settings: FeedbackSettings) -> dict[str, Any]:
    """Popularity shift, new items and users, feature drift: the period's events against the
    training interactions of the version that served it."""
    if loaded is None or not len(events):
        return {}
    from conveyor_recsys import drift

    return drift.measure(events, loaded, models.training_interactions(loaded), session, section, settings)
