"""The stage types: recsys.load, recsys.split, recsys.train, recsys.evaluate.

Every frame passed between them has the canonical columns `user`, `item`, `timestamp`
(datetime64), `event` (text, or None without an event column) and `weight` (float), whatever
the source file calls them (`recsys.*_column`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import conveyor
from conveyor.tables import read_table

from conveyor_recsys import settings as s
from conveyor_recsys.interactions import COLUMNS
from conveyor_recsys.models import KINDS

# --- load -------------------------------------------------------------------------------------


def _source_files(settings: Mapping[str, Any]) -> Iterable[str]:
    return [settings["source"]] if settings.get("source") else []


def _check_load(settings: Mapping[str, Any], ctx: conveyor.CheckContext) -> None:
    if not settings.get("source"):
        raise conveyor.ConfigError("recsys.source is not set: there are no interactions to load",
                                   hint="set recsys.source=path/to/interactions.csv")
    for key in ("user_column", "item_column", "timestamp_column"):
        if not settings.get(key):
            raise conveyor.ConfigError(f"recsys.{key} is empty: which column holds it?",
                                       hint=f"set recsys.{key}=COLUMN")
    for event, weight in (settings.get("event_weights") or {}).items():
        if weight < 0:
            raise conveyor.ConfigError(f"recsys.event_weights.{event} is {weight}; an event's "
                                       "weight cannot be negative")


def _load(ctx: conveyor.StageContext) -> Mapping[str, Any]:
    """Reads the interactions and normalises them (`conveyor_recsys.interactions.canonical`).

    The documented rules: rows missing a user, an item or a timestamp are dropped; rows that
    repeat another row's user, item, timestamp and event are duplicates, and only the first is
    kept; rows are sorted by timestamp (stable: ties keep the file's order), and the rows that
    came earlier in time than the row before them in the file are counted as out of order. All
    three counts are logged and recorded as metrics."""
    from conveyor_recsys.interactions import canonical

    st = ctx.settings
    source = st["source"]
    path = ctx.project_dir / source
    if not path.is_file():
        raise conveyor.StageFailed(f"{source}: no such file", hint="set recsys.source")
    out, read = canonical(read_table(path), st, where=source, error=conveyor.StageFailed)
    out = out[list(COLUMNS)]
    rows, out_of_order = read["rows"], read["out_of_order"]
    if out.empty:
        raise conveyor.StageFailed(f"{source} has no complete interactions "
                                   f"({rows:,} rows, none with a user, item and timestamp)")
    counts = {"interactions": len(out), "rows_read": rows,
              "duplicates_dropped": read["duplicates"], "incomplete_dropped":
              read["incomplete"], "out_of_order": out_of_order,
              "users": int(out["user"].nunique()), "items": int(out["item"].nunique())}
    ctx.log_metrics(counts)
    ctx.log(f"{len(out):,} interactions of {counts['users']:,} users on {counts['items']:,} "
            f"items from {source}; dropped {counts['duplicates_dropped']:,} duplicate(s) and "
            f"{counts['incomplete_dropped']:,} incomplete row(s); sorted "
            f"{out_of_order:,} out-of-order row(s) by timestamp")
    return {"interactions": out}


# --- split ------------------------------------------------------------------------------------


def check_period(days: float | None, fraction: float, days_key: str, fraction_key: str,
                 what: str) -> None:
    """A trailing period is the last `days` days, or else the last `fraction` of the time
    range (`what` it is for, in the message)."""
    if days is not None and days <= 0:
        raise conveyor.ConfigError(f"{days_key} is {days}; it must be positive",
                                   hint=f"or set {days_key}=null and use {fraction_key}")
    if not 0 < fraction < 1:
        raise conveyor.ConfigError(f"{fraction_key} is {fraction}; the share of the time range "
                                   f"{what} must be between 0 and 1",
                                   hint=f"e.g. {fraction_key}=0.2")


def period_cutoff(timestamps: Any, days: float | None, fraction: float) -> Any:
    """Where a trailing period starts: the last `days` days, or else the last `fraction` of
    the range of `timestamps` (everything after the cutoff is in the period)."""
    import pandas as pd

    start, end = timestamps.min(), timestamps.max()
    if days is not None:
        return end - pd.Timedelta(days=float(days))
    return start + (end - start) * (1 - float(fraction))


def _check_split(settings: Mapping[str, Any], ctx: conveyor.CheckContext) -> None:
    if settings["method"] not in s.METHODS:
        raise conveyor.ConfigError(f"recsys.split.method is '{settings['method']}'; it is one of "
                                   f"{', '.join(s.METHODS)}")
    check_period(settings.get("test_days"), settings.get("test_fraction"),
                 "recsys.split.test_days", "recsys.split.test_fraction", "held out")


def _split(ctx: conveyor.StageContext) -> Mapping[str, Any]:
    """`temporal`: everything before the cutoff trains, everything from it on tests (the last
    `test_days`, or the last `test_fraction` of the time range). `leave_last_out`: each user's
    latest interaction tests (users with a single interaction only train). Users and items of
    the test set that training never saw are counted, not dropped: evaluation scores unseen
    users with the popularity fallback and counts unseen items as relevant but unreachable."""

    frame = ctx.inputs["interactions"]
    st = ctx.settings
    summary: dict[str, Any] = {"method": st["method"]}
    if st["method"] == "temporal":
        cutoff = period_cutoff(frame["timestamp"], st.get("test_days"), st["test_fraction"])
        is_test = frame["timestamp"] > cutoff
        summary["cutoff"] = cutoff.isoformat()
        where = f"cutoff {cutoff.isoformat()}"
    else:
        position = frame.groupby("user", sort=False).cumcount(ascending=False)
        counts = frame.groupby("user", sort=False)["user"].transform("size")
        is_test = (position == 0) & (counts > 1)
        summary["single_interaction_users"] = int((frame.groupby("user").size() == 1).sum())
        where = "each user's latest interaction held out"
    train = frame[~is_test].reset_index(drop=True)
    test = frame[is_test].reset_index(drop=True)
    if train.empty or test.empty:
        side = "training" if train.empty else "test"
        raise conveyor.StageFailed(
            f"the {side} period is empty ({where}; {len(frame):,} interactions from "
            f"{frame['timestamp'].min()} to {frame['timestamp'].max()})",
            hint="change recsys.split.test_days or recsys.split.test_fraction")
    train_users, train_items = set(train["user"]), set(train["item"])
    unseen_users = set(test["user"]) - train_users
    unseen_items = set(test["item"]) - train_items
    summary.update({
        "train_rows": len(train), "test_rows": len(test),
        "test_users": int(test["user"].nunique()), "test_items": int(test["item"].nunique()),
        "test_users_unseen": len(unseen_users), "test_items_unseen": len(unseen_items),
        "test_rows_unseen_user": int(test["user"].isin(unseen_users).sum()),
        "test_rows_unseen_item": int(test["item"].isin(unseen_items).sum())})
    ctx.log_metrics({k: v for k, v in summary.items() if isinstance(v, int)})
    ctx.log(f"{st['method']} split ({where}): {len(train):,} training and {len(test):,} test "
            f"interactions; test has {len(unseen_users):,} user(s) and {len(unseen_items):,} "
            "item(s) unseen in training (kept, counted)")
    return {"train": train, "test": test, "split": summary}


# --- train ------------------------------------------------------------------------------------


def check_train(settings: Mapping[str, Any], ctx: conveyor.CheckContext) -> None:
    if settings["model"] not in KINDS:
        raise conveyor.ConfigError(f"recsys.model is '{settings['model']}'; it is one of "
                                   f"{', '.join(KINDS)}", hint="e.g. recsys.model=als")
    for key, low in (("factors", 1), ("iterations", 1), ("neighbours", 1)):
        if settings[key] < low:
            section = "item_item" if key == "neighbours" else "als"
            raise conveyor.ConfigError(f"recsys.{section}.{key} is {settings[key]}; it must be "
                                       f"at least {low}")
    if settings["regularization"] < 0 or settings["alpha"] <= 0:
        raise conveyor.ConfigError("recsys.als.regularization must be >= 0 and recsys.als.alpha "
                                   "> 0")


def fit_candidates(interactions: Any, st: Mapping[str, Any], threads: int | None) -> Any:
    """recsys.train's model (`st`: its settings) on `interactions` (canonical columns)."""
    from conveyor_recsys.models import Recommender

    return Recommender.fit(
        st["model"], interactions["user"].to_numpy(), interactions["item"].to_numpy(),
        interactions["weight"].to_numpy(), factors=st["factors"], iterations=st["iterations"],
        regularization=st["regularization"], alpha=st["alpha"], neighbours=st["neighbours"],
        seed=st["seed"], threads=threads)


def _train(ctx: conveyor.StageContext) -> Mapping[str, Any]:
    train = ctx.inputs["train"]
    st = ctx.settings
    model = fit_candidates(train, st, ctx.threads)
    ctx.log_metrics({"train_users": len(model.user_ids), "train_items": len(model.item_ids)})
    ctx.log(f"{st['model']} on {len(train):,} interactions: {len(model.user_ids):,} users x "
            f"{len(model.item_ids):,} items")
    return {"model": model}


def _check_refit(settings: Mapping[str, Any], ctx: conveyor.CheckContext) -> None:
    pipeline = settings.get("unsupported_by")
    if settings["enabled"] and pipeline:
        raise conveyor.ConfigError(
            f"recsys.refit is true but the {pipeline} pipeline does not refit: it registers "
            "the ranked model as trained (refitting both stages on the test period is not "
            "done)", hint="set recsys.refit=false (and drop it from retrain.overrides), or use "
                          "pipeline=recommend to refit")
    check_train(settings, ctx)


def _refit(ctx: conveyor.StageContext) -> Mapping[str, Any]:
    """The model to register: recsys.train's, or (`enabled`: recsys.refit) the same model
    trained again on every interaction, the test period included. Evaluation judged the model
    trained before the cutoff, on a period it never saw; the refit one adds what came last,
    which after a change in behaviour is what the served model most needs (a retrain on a
    week of feedback otherwise learns nothing from that week: it is the test period)."""
    st = ctx.settings
    if not st["enabled"]:
        return {"model": ctx.inputs["model"]}  # the model evaluated is the model registered
    everything = ctx.inputs["interactions"]
    model = fit_candidates(everything, st, ctx.threads)
    ctx.log_metrics({"refit_users": len(model.user_ids), "refit_items": len(model.item_ids),
                     "refit_rows": len(everything)})
    ctx.log(f"{st['model']} trained again on all {len(everything):,} interactions, the test "
            f"period included: {len(model.user_ids):,} users x {len(model.item_ids):,} items "
            "(registered; the evaluation is of the model trained before the cutoff)")
    return {"model": model}


# --- evaluate ---------------------------------------------------------------------------------


def _check_evaluate(settings: Mapping[str, Any], ctx: conveyor.CheckContext) -> None:
    from conveyor_recsys import slices

    if settings["k"] < 1:
        raise conveyor.ConfigError(f"recsys.k is {settings['k']}; it must be at least 1")
    slices.check(settings, ctx.project_dir)


def _evaluate_files(settings: Mapping[str, Any]) -> Iterable[str]:
    from conveyor_recsys import slices

    return [settings["user_features"]] if slices.table_needed(settings) else []


def _evaluate(ctx: conveyor.StageContext) -> Mapping[str, Any]:
    """Scores the model and the popularity baseline on the held-out interactions: per test
    user, the top k (leaving out what they saw in training when `exclude_seen`) against the
    items they interacted with in the test period (less those seen in training, which cannot
    be recommended then). Unseen users get the popularity fallback and are counted. With
    `slice_column`, the model's metrics per slice of test users too (conveyor_recsys.slices)."""
    from conveyor_recsys import slices
    from conveyor_recsys.metrics import ranking_metrics

    model = ctx.inputs["model"]
    test = ctx.inputs["test"]
    k, exclude_seen = ctx.settings["k"], ctx.settings["exclude_seen"]
    relevant: dict[Any, set[Any]] = {}
    for user, items in test.groupby("user", sort=True)["item"]:
        wanted = set(items.tolist())
        if exclude_seen:
            wanted -= set(model.seen(user))
        if wanted:
            relevant[user] = wanted
    if not relevant:
        raise conveyor.StageFailed("no test user has an item to find: every test interaction "
                                   "repeats one seen in training",
                                   hint="set recsys.exclude_seen=false, or test on a longer "
                                        "period (recsys.split.test_fraction)")
    popularity = {item: float(count) for item, count in
                  zip(model.item_ids.tolist(), model.popularity.tolist(), strict=True)}
    catalogue = list(popularity)
    scores: dict[str, dict[str, float]] = {}
    fallbacks = 0
    lists: dict[str, Any] = {}
    compared = [("model", model), ("baseline", model.baseline())]
    if getattr(model, "candidates", None) is not None:   # a two-stage model: its first stage too
        compared.append(("candidates", model.candidates))
    for name, candidate in compared:
        recommended, fell_back = candidate.recommend_many(list(relevant), k, exclude_seen)
        fallbacks = fallbacks or fell_back
        lists[name] = recommended
        result = ranking_metrics(recommended, relevant, k=k, item_popularity=popularity,
                                 catalogue=catalogue)
        scores[name] = {metric: float(value) for metric, value in result.items()
                        if metric != "users"}
    names = tuple(scores["model"])
    column = ctx.settings.get("slice_column") or None
    by_slice: dict[str, dict[str, float]] = {}
    if column:
        knows = getattr(model, "candidates", model).knows
        labels = slices.user_slices(list(relevant), ctx.settings, ctx.project_dir, knows)
        by_slice = slices.slice_scores(ctx, lists["model"], relevant, labels, k=k,
                                       popularity=popularity, catalogue=catalogue)
    champion_version, champion_scores, comparison = _champion(
        ctx, relevant, k, exclude_seen, popularity, catalogue, model)
    ctx.log_metrics({**scores["model"],
                     **{f"{name}.{metric}": value for name in scores if name != "model"
                        for metric, value in scores[name].items()},
                     "evaluated_users": len(relevant), "fallback_users": fallbacks,
                     **{f"slice.{column}={value}.{metric}": score
                        for value, part in by_slice.items() for metric, score in part.items()}})
    primary = f"ndcg@{k}" if f"ndcg@{k}" in names else names[0]
    first = (f", {model.candidates.kind} candidates alone {scores['candidates'][primary]:.4f}"
             if "candidates" in scores else "")
    ctx.log(f"{model.kind}: {primary} {scores['model'][primary]:.4f} (popularity baseline "
            f"{scores['baseline'][primary]:.4f}{first}) over {len(relevant):,} test users, "
            f"{fallbacks:,} of them unseen in training (popularity fallback)")
    result = conveyor.EvaluationResult(
        overall=scores["model"], metrics=names, rows=len(relevant),
        directions={metric: "higher" for metric in names}, primary=primary,
        champion=champion_scores, champion_version=champion_version, comparison=comparison,
        slices=by_slice, slice_column=column,
        extra={**{name: scores[name] for name in scores if name != "model"},
               "fallback_users": fallbacks, "k": k,
               "kind": model.kind})
    return {"metrics": result.to_dict()}


def _champion(ctx: conveyor.StageContext, relevant: Mapping[Any, set[Any]], k: int,
              exclude_seen: bool, popularity: Mapping[Any, float], catalogue: list[Any],
              challenger: Any) -> tuple[int | None, dict[str, float] | None, Any]:
    """The current champion scored on the same test users, for relative gate conditions
    (`recall@10: ">= champion - 0.02"`), with the paired bootstrap of the per-user differences
    (challenger - champion, users resampled) when `conveyor_recsys.metrics.per_user` is there.
    A champion that is not a Recommender, or that fails to load, is left unscored: relative
    conditions then fail closed."""
    from conveyor_recsys.metrics import ranking_metrics
    from conveyor_recsys.models import Recommender

    champion = ctx.registry.alias(ctx.settings["model_name"])
    if champion is None:
        return None, None, None
    reason = None
    try:
        model = ctx.load_artifact(champion.artifact)
    except conveyor.ConveyorError as exc:
        reason = f"champion v{champion.version} could not be loaded: {exc}"
    else:
        if not isinstance(model, Recommender):
            reason = f"champion v{champion.version} is not a recommender"
    if reason is not None:
        ctx.log(reason)
        return champion.version, None, conveyor.ChampionComparison(
            champion_version=champion.version, unavailable=reason)
    # Only users none of whose test items the champion trained on (it may have trained on
    # later data than this split's training period): the comparison is on what neither saw.
    fair = {user: items for user, items in relevant.items()
            if not items & set(model.seen(user))}
    excluded = len(relevant) - len(fair)
    if not fair:
        reason = (f"champion v{champion.version} trained on interactions of every test user's "
                  "held-out items")
        ctx.log(reason)
        return champion.version, None, conveyor.ChampionComparison(
            champion_version=champion.version, unavailable=reason, test_rows=len(relevant),
            excluded=excluded)
    users = list(fair)
    # a champion trained on other data may know items this model does not
    known = set(catalogue)
    catalogue = catalogue + [item for item in model.item_ids.tolist() if item not in known]
    lists = {"champion": model.recommend_many(users, k, exclude_seen)[0],
             "challenger": challenger.recommend_many(users, k, exclude_seen)[0]}
    scores = {}
    for name, recommended in lists.items():
        result = ranking_metrics(recommended, fair, k=k, item_popularity=popularity,
                                 catalogue=catalogue)
        scores[name] = {metric: float(v) for metric, v in result.items() if metric != "users"}
    ctx.log(f"champion v{champion.version} ({model.kind}) on the {len(users):,} test users "
            f"it never trained on ({excluded:,} left out): "
            + ", ".join(f"{m}={v:.4g}" for m, v in scores["champion"].items()))
    bootstrap = _paired_bootstrap(lists["champion"], lists["challenger"], fair, k, popularity,
                                  ctx.seed)
    comparison = conveyor.ChampionComparison(
        champion_version=champion.version, champion=scores["champion"],
        challenger=scores["challenger"], rows=len(users), test_rows=len(relevant),
        excluded=excluded, bootstrap=bootstrap,
        note="rows are test users (their recommendation lists), resampled; coverage is "
             "catalogue-level and has no interval")
    return champion.version, scores["champion"], comparison


def _paired_bootstrap(champion: Mapping[Any, list[Any]], challenger: Mapping[Any, list[Any]],
                      relevant: Mapping[Any, set[Any]], k: int,
                      popularity: Mapping[Any, float], seed: int) -> dict[str, list[float]]:
    import numpy as np
    from conveyor.uncertainty import paired_differences

    from conveyor_recsys.metrics import per_user

    before = per_user(champion, relevant, k=k, item_popularity=popularity)
    after = per_user(challenger, relevant, k=k, item_popularity=popularity)
    rows = len(before["user"])
    if not rows or list(before["user"]) != list(after["user"]):
        return {}
    out: dict[str, list[float]] = {}
    for metric in before:
        if metric == "user":
            continue
        diff = np.asarray(after[metric], dtype=float) - np.asarray(before[metric], dtype=float)
        out[metric] = paired_differences(lambda idx, d=diff: d[idx].mean(), rows, seed=seed)
    return out


STAGE_TYPES = [
    conveyor.StageType("recsys.load", _load, "read interactions (user, item, timestamp, "
                       "event, weight): dedupe, sort by time",
                       settings_schema=s.LoadSettings, input_files=_source_files,
                       ephemeral_outputs=frozenset({"interactions"}), check=_check_load,
                       outputs={"interactions": "the interactions, canonical columns, in "
                                                "time order (a DataFrame)"}),
    conveyor.StageType("recsys.split", _split, "temporal or leave-last-out split",
                       settings_schema=s.SplitSettings, check=_check_split,
                       outputs={"train": "the training interactions (a DataFrame)",
                                "test": "the held-out interactions (a DataFrame)",
                                "split": "the cutoff and the counts, unseen users and "
                                         "items included"}),
    conveyor.StageType("recsys.train", _train,
                       "fit a candidate generator: popularity, item_item or als",
                       settings_schema=s.TrainSettings, check=check_train,
                       outputs={"model": "the conveyor_recsys.models.Recommender"}),
    conveyor.StageType("recsys.refit", _refit,
                       "train the evaluated model's kind again on every interaction (test "
                       "period included) for registering; or pass it on unchanged",
                       settings_schema=s.RefitSettings, check=_check_refit,
                       outputs={"model": "the conveyor_recsys.models.Recommender to register"}),
    conveyor.StageType("recsys.evaluate", _evaluate,
                       "ranking metrics of the model and the popularity baseline on the "
                       "held-out period (and per slice of test users)",
                       settings_schema=s.EvaluateSettings, check=_check_evaluate,
                       input_files=_evaluate_files,
                       outputs={"metrics": "the evaluation (conveyor.EvaluationResult, as a "
                                           "mapping); the baseline's scores under 'baseline', the "
                                           "slices' under 'slices'"}),
]
