"""Optional user and item feature tables (`recsys.user_features`, `recsys.item_features`).

A table is a CSV, TSV or Parquet file with one row per user (or item), keyed by the
interactions' `recsys.user_column` (or `recsys.item_column`). The rules, checked before
anything runs (a broken table is a ConfigError, exit 2, naming the file and the column):

* the key column must be there, with no missing and no repeated key;
* numeric and boolean columns are features as they are (missing values stay missing:
  LightGBM handles them);
* text columns are one-hot encoded, one 0/1 column `COLUMN=VALUE` per value, when they have
  at most `MAX_LEVELS` distinct values; more is refused (an id or free text is no feature);
* date columns are refused (turn them into a number, such as days since an event);
* a table with no column besides its key is refused.

Users and items without a row get missing values, never an error: the ranker scores them
from their interactions alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import conveyor

MAX_LEVELS = 50
ONE_HOT = "="          # one-hot columns are named COLUMN=VALUE


def feature_table(project_dir: Path, source: str, key_column: str, *, setting: str,
                  key_setting: str, key: str) -> Any:
    """The table at `source` (relative to `project_dir`), encoded: a DataFrame whose first
    column `key` holds the keys and whose other columns are float features.

    `setting` and `key_setting` name the settings (e.g. `recsys.item_features`,
    `recsys.item_column`) the errors cite."""
    import pandas as pd

    where = f"{source} ({setting})"
    frame = keyed_table(project_dir, source, key_column, setting=setting,
                        key_setting=key_setting)
    keys = frame[key_column]
    out = {key: keys.to_numpy()}
    for column in frame.columns:
        if column == key_column:
            continue
        values = frame[column]
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            out[str(column)] = values.astype("float64").to_numpy()
        elif pd.api.types.is_datetime64_any_dtype(values) or _holds_dates(values):
            raise conveyor.ConfigError(
                f"{where}: column '{column}' holds dates; a feature is a number or a category",
                hint="turn it into a number (e.g. days since it) or drop the column")
        else:
            levels = sorted(values.dropna().astype(str).unique())
            if len(levels) > MAX_LEVELS:
                raise conveyor.ConfigError(
                    f"{where}: column '{column}' is text with {len(levels)} distinct values; "
                    f"text columns are one-hot encoded up to {MAX_LEVELS} values",
                    hint="drop the column, or make it numeric")
            text = values.astype(str).where(values.notna())
            for level in levels:
                out[f"{column}{ONE_HOT}{level}"] = (text == level).astype("float64").to_numpy()
    if len(out) == 1:
        raise conveyor.ConfigError(f"{where} has no feature column besides '{key_column}'")
    return pd.DataFrame(out)


def keyed_table(project_dir: Path, source: str, key_column: str, *, setting: str,
                key_setting: str) -> Any:
    """The table at `source` (relative to `project_dir`) as read, its columns untouched, after
    the key checks of the module (the key column is there, with no missing and no repeated
    key). `setting` and `key_setting` name the settings the errors cite."""
    from conveyor.tables import read_table

    where = f"{source} ({setting})"
    path = Path(source) if Path(source).is_absolute() else project_dir / source
    if not path.is_file():
        raise conveyor.ConfigError(f"{where}: no such file",
                                   hint=f"set {setting}=path/to/table.csv, or {setting}=null")
    try:
        frame = read_table(path)
    except Exception as exc:  # any reader error: the file is not a table we can read
        raise conveyor.ConfigError(f"{where} is not a readable table: "
                                   f"{type(exc).__name__}: {exc}") from exc
    if key_column not in frame.columns:
        raise conveyor.ConfigError(
            f"{where} has no column '{key_column}' ({key_setting}) to key its rows; its "
            f"columns are: {', '.join(map(str, frame.columns))}",
            hint=f"name the key column {key_column}, or set {key_setting}")
    keys = frame[key_column]
    if keys.isna().any():
        rows = [int(i) + 2 for i in keys.index[keys.isna()][:5]]
        raise conveyor.ConfigError(f"{where}: {int(keys.isna().sum())} row(s) have no "
                                   f"'{key_column}' (file lines {rows})")
    repeated = keys[keys.duplicated(keep=False)]
    if not repeated.empty:
        shown = ", ".join(map(str, list(dict.fromkeys(repeated.tolist()))[:5]))
        raise conveyor.ConfigError(
            f"{where}: column '{key_column}' repeats {repeated.nunique()} key(s) ({shown}); "
            "one row per key", hint="deduplicate the table")
    return frame


def _holds_dates(values: Any) -> bool:
    """A column the reader parsed into dates (pyarrow reads ISO dates as `datetime.date`)."""
    import datetime

    present = values.dropna()
    return not present.empty and isinstance(present.iloc[0], datetime.date)


def empty_table(key: str) -> Any:
    """No table: only the key column, no row."""
    import pandas as pd

    return pd.DataFrame({key: pd.Series([], dtype="object")})


def aligned(table: Any, key: str, ids: Any) -> tuple[Any, list[str]]:
    """The table's features for `ids` (rows in that order, NaN for ids it lacks) as a float
    matrix, and the column names. Keys match as text, so 7 in one file meets "7" in another."""
    import numpy as np

    names = [c for c in table.columns if c != key]
    if not names:
        return np.zeros((len(ids), 0)), []
    indexed = table.set_index(table[key].astype(str))[names]
    matrix = indexed.reindex(np.asarray(ids).astype(str)).to_numpy(dtype="float64")
    return matrix, names


def matched(table: Any, key: str, ids: Any) -> int:
    """How many of `ids` have a row in the table."""
    import numpy as np

    return int(np.isin(np.asarray(ids).astype(str), table[key].astype(str).to_numpy()).sum())
