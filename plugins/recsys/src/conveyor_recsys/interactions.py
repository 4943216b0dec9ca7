"""One reader of interactions: the `recsys.load` stage's training file and `conveyor
feedback`'s events file go through `canonical`, so the two follow the same rules.

The rules:

* the columns named by the `recsys` section (`user_column`, `item_column`,
  `timestamp_column`, and `event_column` / `weight_column` when set) become `user`, `item`,
  `timestamp`, `event` (None without an event column) and `weight` (1.0 without a weight
  column or value, times `event_weights[event]` when set);
* a timestamp that is a number is Unix seconds; any other is parsed as a date, made UTC and
  then naive; a column where no value is a timestamp is an error naming the setting;
* rows missing a user, an item or a timestamp are dropped (`incomplete`); rows that repeat
  another row's user, item, timestamp and event (and request id, when kept) are duplicates:
  only the first is kept (`duplicates`);
* rows are sorted by timestamp (stable: ties keep the file's order); the rows that came
  earlier than the row before them in the file are counted (`out_of_order`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import conveyor

COLUMNS = ("user", "item", "timestamp", "event", "weight")


def canonical(raw: Any, section: Mapping[str, Any], *, where: str,
              error: type[conveyor.ConveyorError], optional: tuple[str, ...] = (),
              request_id_column: str | None = None) -> tuple[Any, dict[str, int]]:
    """`raw` (a DataFrame as read) under the module's rules: the canonical columns (plus
    `request_id`, text or missing, when `request_id_column` is given: a file without that
    column gets it missing), sorted, and the counts `rows` (read), `incomplete`,
    `duplicates` and `out_of_order`.

    `section` is the `recsys` settings (the column names, `event_weights`); `where` names the
    file in messages (e.g. "data/x.csv" or "--data events.csv"); `error` is the error raised
    for a missing column or unreadable timestamps; the settings in `optional` ("event",
    "weight") may name a column the file lacks (then it is absent, not an error)."""
    import pandas as pd

    wanted = {"user": ("user_column", section.get("user_column") or "user_id"),
              "item": ("item_column", section.get("item_column") or "item_id"),
              "timestamp": ("timestamp_column", section.get("timestamp_column") or "timestamp")}
    for name in ("event", "weight"):
        column = section.get(f"{name}_column")
        if column and not (name in optional and column not in raw.columns):
            wanted[name] = (f"{name}_column", column)
    missing = [(key, column) for key, column in wanted.values() if column not in raw.columns]
    if missing:
        listed = "; ".join(f"column '{column}' (recsys.{key})" for key, column in missing)
        raise error(
            f"{where} has no {listed}; its columns are: {', '.join(map(str, raw.columns))}",
            hint="name the right columns, e.g. " + " ".join(
                f"recsys.{key}=COLUMN" for key, _ in missing)
            + " (or recsys.event_column=null / recsys.weight_column=null when there is none)")
    out = pd.DataFrame({name: raw[column] for name, (_, column) in wanted.items()})
    if "event" not in out:
        out["event"] = None
    if "weight" not in out:
        out["weight"] = 1.0
    out["weight"] = pd.to_numeric(out["weight"], errors="coerce").fillna(1.0).astype("float64")
    keys = ["user", "item", "timestamp", "event"]
    if request_id_column is not None:
        out["request_id"] = raw[request_id_column].astype("string") \
            if request_id_column in raw.columns else pd.NA
        keys.append("request_id")
    stamps = out["timestamp"]
    out["timestamp"] = utc_naive(stamps)
    unparsed = int(out["timestamp"].isna().sum() - stamps.isna().sum())
    if unparsed and unparsed == len(out):
        raise error(f"no value of column '{wanted['timestamp'][1]}' (recsys.timestamp_column) "
                    "is a timestamp", hint="use ISO dates (2024-05-01T12:00:00) or Unix seconds")
    rows = len(out)
    incomplete = out[["user", "item", "timestamp"]].isna().any(axis=1)
    out = out[~incomplete]
    weights = section.get("event_weights") or {}
    if weights and "event" in wanted:
        out["weight"] = out["weight"] * out["event"].map(weights).fillna(1.0).astype("float64")
    duplicated = out.duplicated(subset=keys, keep="first")
    out = out[~duplicated]
    stamps = out["timestamp"]
    out_of_order = int((stamps < stamps.cummax().shift(1)).sum())
    out = out.sort_values("timestamp", kind="stable").reset_index(drop=True)
    return out, {"rows": rows, "incomplete": int(incomplete.sum()),
                 "duplicates": int(duplicated.sum()), "out_of_order": out_of_order}


def utc_naive(values: Any) -> Any:
    """Timestamps as naive UTC datetimes: numbers are Unix seconds, anything else is parsed as
    a date (with its zone, made UTC); what does not parse is NaT."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(values):
        return pd.to_datetime(values, unit="s", errors="coerce")
    return pd.to_datetime(values, errors="coerce", utc=True).dt.tz_localize(None)
