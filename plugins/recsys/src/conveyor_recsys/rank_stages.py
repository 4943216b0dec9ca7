"""The stage types of the second stage: recsys.features (the optional user and item tables)
and recsys.rank (a LightGBM lambdarank ranker over the candidate model; see ranker.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import conveyor

from conveyor_recsys import settings as s
from conveyor_recsys.stages import check_period, check_train, period_cutoff

TABLES = (("user_features", "user_column", "user"), ("item_features", "item_column", "item"))

# --- features ---------------------------------------------------------------------------------


def _table_files(settings: Mapping[str, Any]) -> Iterable[str]:
    return [settings[name] for name, _, _ in TABLES if settings.get(name)]


def _tables(settings: Mapping[str, Any], project_dir: Any) -> dict[str, Any]:
    from conveyor_recsys.features import empty_table, feature_table

    out = {}
    for name, key_setting, key in TABLES:
        source = settings.get(name)
        out[name] = empty_table(key) if not source else feature_table(
            project_dir, source, settings[key_setting], setting=f"recsys.{name}",
            key_setting=f"recsys.{key_setting}", key=key)
    return out


def _check_features(settings: Mapping[str, Any], ctx: conveyor.CheckContext) -> None:
    _tables(settings, ctx.project_dir)    # a broken table stops the run before anything runs


def _features(ctx: conveyor.StageContext) -> Mapping[str, Any]:
    """Reads and encodes the feature tables (conveyor_recsys.features has the rules)."""
    tables = _tables(ctx.settings, ctx.project_dir)
    for name, _, key in TABLES:
        table = tables[name]
        if ctx.settings.get(name):
            ctx.log(f"{ctx.settings[name]}: {len(table):,} {key}s, {table.shape[1] - 1} "
                    "feature column(s) after one-hot encoding")
        else:
            ctx.log(f"no {key} feature table (recsys.{name} is not set)")
        ctx.log_metrics({f"{name}_rows": len(table), f"{name}_columns": table.shape[1] - 1})
    return tables


# --- rank -------------------------------------------------------------------------------------


def _check_rank(settings: Mapping[str, Any], ctx: conveyor.CheckContext) -> None:
    check_train(settings, ctx)      # the candidate model it refits
    for key, low in (("candidates", 1), ("n_estimators", 1), ("num_leaves", 2),
                     ("min_child_samples", 1)):
        if settings[key] < low:
            raise conveyor.ConfigError(f"recsys.ranker.{key} is {settings[key]}; it must be at "
                                       f"least {low}")
    if settings["learning_rate"] <= 0:
        raise conveyor.ConfigError(f"recsys.ranker.learning_rate is "
                                   f"{settings['learning_rate']}; it must be positive")
    if not 0 <= settings["validation_fraction"] < 1:
        raise conveyor.ConfigError(f"recsys.ranker.validation_fraction is "
                                   f"{settings['validation_fraction']}; the share of users held "
                                   "out to stop the boosting is at least 0 and below 1")
    check_period(settings.get("label_days"), settings["label_fraction"],
                 "recsys.ranker.label_days", "recsys.ranker.label_fraction",
                 "of the training period that labels the ranker")


def label_split(train: Any, settings: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """The training period split in time for the ranker: (earlier part, later part, cutoff).
    The earlier part (timestamps up to the cutoff) gives candidates and features, the later
    part the labels."""
    cutoff = period_cutoff(train["timestamp"], settings.get("label_days"),
                           settings["label_fraction"])
    early = train[train["timestamp"] <= cutoff].reset_index(drop=True)
    later = train[train["timestamp"] > cutoff].reset_index(drop=True)
    if early.empty or later.empty:
        side = "earlier (candidate)" if early.empty else "later (label)"
        raise conveyor.StageFailed(
            f"the ranker's {side} part of the training period is empty (cutoff "
            f"{cutoff.isoformat()}, training from {train['timestamp'].min()} to "
            f"{train['timestamp'].max()})",
            hint="change recsys.ranker.label_fraction or recsys.ranker.label_days")
    return early, later, cutoff


def training_examples(early: Any, later: Any, candidates: Any, state: Any, pool: int,
                      exclude_seen: bool) -> dict[str, Any]:
    """The ranker's training set: per user of the later part whom the candidate model knows,
    its top `pool` candidates, their features (from `state`, built from the earlier part) and
    labels (1 when the user interacted with the item in the later part). Users none of whose
    candidates is relevant are left out: lambdarank learns nothing from them."""
    import numpy as np

    from conveyor_recsys.ranker import candidate_pools, pair_features

    wanted = {user: set(items.tolist())
              for user, items in later.groupby("user", sort=True)["item"]}
    users, rows, cols, scores, ranks, share = candidate_pools(
        candidates, list(wanted), pool, exclude_seen)
    item_ids = candidates.item_ids.tolist()
    labels = np.zeros(len(rows))
    starts = np.concatenate([[0], np.flatnonzero(ranks[1:] == 1) + 1, [len(rows)]]).astype(int)
    keep = np.zeros(len(rows), dtype=bool)
    groups = []
    relevant_total = found = 0
    for user, start, end in zip(users, starts[:-1], starts[1:], strict=True):
        relevant = wanted[user]
        if exclude_seen:
            relevant = relevant - set(candidates.seen(user))
        hits = np.asarray([item_ids[j] in relevant for j in cols[start:end]], dtype=float)
        relevant_total += len(relevant)
        found += int(hits.sum())
        labels[start:end] = hits
        if hits.any():
            keep[start:end] = True
            groups.append(end - start)
    matrix = pair_features(state, rows, cols, scores, ranks, share)
    return {"X": matrix[keep], "y": labels[keep], "group": np.asarray(groups, dtype=int),
            "users": len(users), "users_kept": len(groups),
            "candidate_recall": found / relevant_total if relevant_total else 0.0}


def train_ranker(train: Any, candidates: Any, user_table: Any, item_table: Any,
                 settings: Mapping[str, Any], threads: int | None,
                 log: Any = print) -> tuple[Any, dict[str, Any]]:
    """The RankedRecommender over `candidates` (trained on all of `train`), and what its
    training measured."""
    import lightgbm
    import numpy as np

    from conveyor_recsys.models import Recommender
    from conveyor_recsys.ranker import RankedRecommender, build_state

    st = settings
    early, later, cutoff = label_split(train, st)
    early_model = Recommender.fit(
        st["model"], early["user"].to_numpy(), early["item"].to_numpy(),
        early["weight"].to_numpy(), factors=st["factors"], iterations=st["iterations"],
        regularization=st["regularization"], alpha=st["alpha"], neighbours=st["neighbours"],
        seed=st["seed"], threads=threads)
    state = build_state(early, early_model.user_ids, early_model.item_ids, user_table,
                        item_table, st.get("category_column"))
    log(f"ranker: {st['model']} candidates from {len(early):,} interactions up to "
        f"{cutoff.isoformat()}, labels from the {len(later):,} after")
    examples = training_examples(early, later, early_model, state, st["candidates"],
                                 st.get("exclude_seen", True))
    if not len(examples["group"]):
        raise conveyor.StageFailed(
            f"no user of the ranker's label period ({len(later):,} interactions after "
            f"{cutoff.isoformat()}) has a relevant item among their {st['candidates']} "
            "candidates: there is nothing to learn a ranking from",
            hint="raise recsys.ranker.candidates or recsys.ranker.label_fraction")
    booster_text, trees, validation = _fit(examples, state.names, st, threads)
    full_state = build_state(train, candidates.user_ids, candidates.item_ids, user_table,
                             item_table, st.get("category_column"))
    model = RankedRecommender(candidates, booster_text, full_state, st["candidates"])
    gains = lightgbm.Booster(model_str=booster_text).feature_importance(importance_type="gain")
    order = np.argsort(-gains)[:5]
    summary = {"ranker_users": examples["users"], "ranker_users_kept": examples["users_kept"],
               "ranker_rows": len(examples["y"]), "ranker_positives": int(examples["y"].sum()),
               "ranker_features": len(state.names),
               "ranker_candidate_recall": float(examples["candidate_recall"]),
               "ranker_trees": trees, **validation,
               "top_features": [state.names[j] for j in order if gains[j] > 0]}
    log(f"ranker: LGBMRanker (lambdarank) on {summary['ranker_rows']:,} candidates of "
        f"{summary['ranker_users_kept']:,} users ({summary['ranker_positives']:,} relevant; the "
        f"candidates held {summary['ranker_candidate_recall']:.1%} of the label items), "
        f"{len(state.names)} features, {trees} trees"
        + (f" (early-stopped on {validation['ranker_validation_users']:,} held-out users' "
           f"ndcg@{st['k']} {validation['ranker_validation_ndcg']:.4f})" if validation else "")
        + f", {threads or 'all'} thread(s); most used: "
        + ", ".join(summary["top_features"]))
    return model, summary


MIN_VALIDATION_USERS = 20


def _fit(examples: Mapping[str, Any], names: list[str], st: Mapping[str, Any],
         threads: int | None) -> tuple[str, int, dict[str, Any]]:
    """LGBMRanker (lambdarank) on the examples; the booster as text, its number of trees, and
    the validation figures. A seeded `validation_fraction` of the users is held out and stops
    the boosting when their ndcg@k has not improved for 20 rounds: the number of trees fits
    the data (200 over-fit a small shop) instead of being tuned by hand."""
    import inspect

    import lightgbm
    import numpy as np

    group = examples["group"]
    rng = np.random.default_rng(st["seed"])
    held = rng.random(len(group)) < st["validation_fraction"]
    if held.sum() < MIN_VALIDATION_USERS or (~held).sum() < MIN_VALIDATION_USERS:
        held[:] = False          # too few users to spare: all of them train, no early stop
    rows = np.repeat(held, group)
    ranker = lightgbm.LGBMRanker(
        objective="lambdarank", n_estimators=st["n_estimators"],
        learning_rate=st["learning_rate"], num_leaves=st["num_leaves"],
        min_child_samples=st["min_child_samples"], random_state=st["seed"],
        deterministic=True, force_row_wise=True, n_jobs=threads or -1, verbose=-1)
    fit: dict[str, Any] = {}
    if held.any():
        held_out = (examples["X"][rows], examples["y"][rows])
        # LightGBM 4.7 renamed eval_set to eval_X / eval_y (the old name warns)
        fit = ({"eval_X": (held_out[0],), "eval_y": (held_out[1],)}
               if "eval_X" in inspect.signature(ranker.fit).parameters
               else {"eval_set": [held_out]})
        fit |= {"eval_group": [group[held]], "eval_at": [st["k"]],
               "callbacks": [lightgbm.early_stopping(20, verbose=False)]}
    ranker.fit(examples["X"][~rows], examples["y"][~rows], group=group[~held],
               feature_name=[_safe(name) for name in names], **fit)
    booster = ranker.booster_
    trees = int(booster.best_iteration or booster.current_iteration())
    validation = {}
    if held.any():
        score = ranker.best_score_["valid_0"][f"ndcg@{st['k']}"]
        validation = {"ranker_validation_users": int(held.sum()),
                      "ranker_validation_ndcg": float(score)}
    return booster.model_to_string(num_iteration=trees), trees, validation


def _safe(name: str) -> str:
    """LightGBM refuses some characters in feature names (JSON ones)."""
    return "".join(c if c.isalnum() or c in "_-=." else "_" for c in name)


def _rank(ctx: conveyor.StageContext) -> Mapping[str, Any]:
    st = dict(ctx.settings)
    model, summary = train_ranker(ctx.inputs["train"], ctx.inputs["model"],
                                  ctx.inputs["user_features"], ctx.inputs["item_features"], st,
                                  ctx.threads, log=ctx.log)
    ctx.log_metrics({key: value for key, value in summary.items()
                     if isinstance(value, int | float)})
    return {"model": model}


STAGE_TYPES = [
    conveyor.StageType("recsys.features", _features,
                       "read the optional user and item feature tables: keys checked, text "
                       "one-hot encoded", settings_schema=s.FeaturesSettings,
                       input_files=_table_files, check=_check_features,
                       outputs={"user_features": "the encoded user table (a DataFrame keyed "
                                                 "by 'user'; no row when there is none)",
                                "item_features": "the encoded item table (a DataFrame keyed "
                                                 "by 'item'; no row when there is none)"}),
    conveyor.StageType("recsys.rank", _rank,
                       "re-rank the candidate model's top items with LightGBM lambdarank "
                       "over user, item and candidate features",
                       settings_schema=s.RankSettings, check=_check_rank,
                       outputs={"model": "the two-stage conveyor_recsys.ranker."
                                         "RankedRecommender"}),
]
