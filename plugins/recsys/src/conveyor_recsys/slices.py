"""Ranking metrics per slice of test users (`evaluate.slices.*`), as classification scores
per slice of test rows.

A test user's slice is their value in `evaluate.slices.column`:

* a column of the user table (`recsys.user_features`, keyed by `recsys.user_column`, read
  with `conveyor_recsys.features.keyed_table`; its raw values, not one-hot encoded). Users
  without a row, or with an empty value, are the slice `nan`, as missing values are for
  classification;
* or the built-in `user_history` (no table needed): `new` for users unseen in training (they
  get the popularity fallback), `returning` for the others. A user table column of that name
  is not read: the built-in wins.

Within a slice the metrics are `conveyor_recsys.metrics.ranking_metrics` over the slice's
users (per-user values averaged; coverage over their lists), plus `users`, their number.
Slices with fewer than `evaluate.slices.min_rows` users are left out (logged), as
classification leaves out small slices.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping
from pathlib import Path
from typing import Any

import conveyor

USER_HISTORY = "user_history"
NEW, RETURNING = "new", "returning"
MISSING = "nan"        # what classification's slices call a missing value: str(NaN)


def table_needed(settings: Mapping[str, Any]) -> bool:
    """Whether the evaluate stage's slices read the user table (when it is set)."""
    column = settings.get("slice_column")
    return bool(column) and column != USER_HISTORY and bool(settings.get("user_features"))


def check(settings: Mapping[str, Any], project_dir: Path) -> None:
    """ConfigError (exit 2) unless `evaluate.slices.*` can be computed: a column needs the
    user table, and the table that column."""
    from conveyor_recsys.features import keyed_table

    column = settings.get("slice_column")
    if not column:
        return
    if settings["slice_min_rows"] < 1:
        raise conveyor.ConfigError(f"evaluate.slices.min_rows is {settings['slice_min_rows']}; "
                                   "it must be at least 1")
    if column == USER_HISTORY:
        return
    source = settings.get("user_features")
    if not source:
        raise conveyor.ConfigError(
            f"evaluate.slices.column is '{column}', a column of the user table, but "
            "recsys.user_features (the user table) is not set",
            hint="set recsys.user_features=data/users.csv, or evaluate.slices.column="
                 f"{USER_HISTORY} (built in: new / returning users)")
    try:
        frame = keyed_table(project_dir, source, settings["user_column"],
                            setting="recsys.user_features", key_setting="recsys.user_column")
    except conveyor.ConfigError as exc:
        raise conveyor.ConfigError(f"evaluate.slices.column '{column}' is read from the user "
                                   f"table, and {exc.message}", hint=exc.hint) from exc
    if column not in frame.columns:
        raise conveyor.ConfigError(
            f"evaluate.slices.column '{column}' is not a column of {source} "
            f"(recsys.user_features); its columns are: {', '.join(map(str, frame.columns))}",
            hint=f"name one of them, or evaluate.slices.column={USER_HISTORY} (built in)")


def user_slices(users: Collection[Hashable], settings: Mapping[str, Any], project_dir: Path,
                knows: Any) -> dict[Hashable, str]:
    """Each of `users`' slice label (`knows(user)`: whether training saw the user)."""
    from conveyor_recsys.features import keyed_table

    column = settings["slice_column"]
    if column == USER_HISTORY:
        return {user: RETURNING if knows(user) else NEW for user in users}
    frame = keyed_table(project_dir, settings["user_features"], settings["user_column"],
                        setting="recsys.user_features", key_setting="recsys.user_column")
    # keys match as text, so 7 in the interactions meets "7" in the table
    values = dict(zip(frame[settings["user_column"]].astype(str).tolist(),
                      frame[column].tolist(), strict=True))
    return {user: _label(values.get(str(user))) for user in users}


def _label(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):   # NaN
        return MISSING
    return str(value)


def slice_scores(ctx: conveyor.StageContext, recommended: Mapping[Hashable, Any],
                 relevant: Mapping[Hashable, set[Any]], labels: Mapping[Hashable, str], *,
                 k: int, popularity: Mapping[Any, float], catalogue: list[Any]
                 ) -> dict[str, dict[str, float]]:
    """The ranking metrics of every slice with at least `slice_min_rows` users, and `users`."""
    from conveyor_recsys.metrics import ranking_metrics

    column, min_rows = ctx.settings["slice_column"], ctx.settings["slice_min_rows"]
    members: dict[str, dict[Hashable, set[Any]]] = {}
    for user, items in relevant.items():
        members.setdefault(labels[user], {})[user] = items
    out: dict[str, dict[str, float]] = {}
    for value in sorted(members):
        part = members[value]
        if len(part) < min_rows:
            ctx.log(f"slice {column}={value}: {len(part):,} test user(s), fewer than "
                    f"evaluate.slices.min_rows ({min_rows}): not scored")
            continue
        result = ranking_metrics(recommended, part, k=k, item_popularity=popularity,
                                 catalogue=catalogue)
        out[value] = {metric: float(score) for metric, score in result.items()}
        shown = ", ".join(f"{m}={v:.4g}" for m, v in out[value].items() if m != "users")
        ctx.log(f"slice {column}={value}: {len(part):,} test users, {shown}")
    return out
