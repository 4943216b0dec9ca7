"""`conveyor recommend --users FILE`: a slate for every user of a table, written in one go.

The users come from a CSV, TSV or Parquet table (`conveyor.tables.read_table`): the column
`recsys.user_column`, or the table's only column. The model is the champion of the project's
model, or `--model NAME[:VERSION]`, loaded by `conveyor.api.load_model` (its sha256 checked
before it is read) and recognised by the core's `conveyor.serving.is_recommender`.

Ids are taken as the model's user id type (`RecommendingModel.user_id_type`): for a model of
int ids, whole numbers and text of digits; for one of text ids, any value as text. A value that
is not of that type (text in an int model), like a user the model never saw, gets the
popularity fallback, flagged in the `fallback` column and counted in the summary. Blank ids are
skipped, and a user listed twice is answered once (the first time), both counted too.

Slates come from the model's `recommend_batch` (conveyor-recsys's `Recommender` and
`RankedRecommender`: known users scored a block at a time), else its `recommend` one user at a
time, `PROGRESS_USERS` users at a time with progress on stderr. The output has one row per
(user, position): `user`, `position` (1 = best), `item`, `score`, `fallback`,
`model_version`; it is written to a temporary file beside OUT, renamed into place once every
slate is in, so OUT is whole or absent.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import conveyor

INPUT_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
OUTPUT_SUFFIXES = (".parquet", ".pq", ".csv")
PROGRESS_USERS = 20_000       # users per recommend_batch call between progress lines
PROGRESS_SECONDS = 2.0
COLUMNS = ("user", "position", "item", "score", "fallback", "model_version")

HELP = "write the top-k items of every user in a table (batch recommendations)"
DESCRIPTION = """\
Recommend k items to every user listed in a table, with the champion recommender (or the
version given), and write the slates as one row per (user, position): user, position (1 =
best), item, score, fallback, model_version.

  conveyor recommend --users users.csv                       # -> users.recommendations.parquet
  conveyor recommend --users users.csv -o slates.parquet --k 20
  conveyor recommend --users active.parquet -o out.csv --model books:3 --include-seen
  conveyor recommend --users customers.csv recsys.user_column=customer_id --json

The users are the column recsys.user_column of FILE (default user_id), or its only column.
Users the model never saw, and ids of the wrong type (text for a model of number ids), get the
popularity fallback (fallback = true) and are counted; a user listed twice is answered once;
blank ids are skipped. Items the user interacted with in training are left out unless
--include-seen (or recsys.exclude_seen=false). OUT is written whole or not at all.

exit codes: 0 written · 2 bad usage (no such file, an empty table or a missing column, a
model that is not a recommender, no champion)"""


@dataclass
class Summary:
    """What `conveyor recommend` did (its `--json` output)."""

    users_file: str
    output: str
    model: str
    model_version: int
    k: int
    exclude_seen: bool
    column: str
    rows_read: int
    users: int                # distinct users answered
    duplicates: int           # rows naming a user already answered
    blank: int                # rows with no id, skipped
    fallback: int             # users answered with the popularity fallback ...
    unknown: int              # ... because the model never saw them
    wrong_type: int           # ... because their id is not of the model's id type
    rows_written: int
    seconds: float
    users_per_second: float


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--users", required=True, metavar="FILE",
                        help="a .csv, .tsv or .parquet table of users (column "
                             "recsys.user_column, or its only column)")
    parser.add_argument("-o", "--output", metavar="OUT",
                        help="where the slates go, .parquet or .csv (default: FILE's folder, "
                             "<stem>.recommendations.parquet)")
    parser.add_argument("--k", type=int, metavar="N",
                        help="items per user (default recsys.k, 10 unless configured)")
    parser.add_argument("--model", metavar="NAME[:VERSION]",
                        help="the version to use, e.g. books:3 or books:challenger (default: "
                             "the champion of the project's only model)")
    parser.add_argument("--include-seen", action="store_true",
                        help="keep items the user interacted with in training")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("overrides", nargs="*",
                        help="config overrides, e.g. recsys.user_column=customer_id")


def run(args: argparse.Namespace, app: Any) -> int:
    from conveyor import api

    if args.overrides:
        app.set_overrides(list(args.overrides))
    name, version, alias = api.parse_model_spec(args.model)
    users_path = Path(args.users)
    users_path = (users_path if users_path.is_absolute() else Path.cwd() / users_path).resolve()
    output = _output_path(args.output, users_path)
    section = api.load_config(app).data.get("recsys") or {}
    k = args.k if args.k is not None else int(section.get("k") or 10)
    if k < 1:
        raise conveyor.UsageError(f"--k {k}: must be at least 1")
    exclude_seen = bool(section.get("exclude_seen", True)) and not args.include_seen
    record = api.resolve_model(app, name, version=version, alias=alias)  # no champion: exit 2
    column, raw = read_users(users_path, args.users, section.get("user_column") or "user_id")
    loaded = api.load_model(app, record.name, version=record.version)
    from conveyor.serving import is_recommender

    if not is_recommender(loaded.model):
        raise conveyor.UsageError(
            f"model '{loaded.name}' v{loaded.number} is not a recommender",
            hint="`conveyor recommend` needs a model trained by a recommender pipeline; score "
                 "rows of a classifier or regressor with `conveyor predict --data FILE`")
    started = time.perf_counter()
    ids, counts = as_model_ids(raw, loaded.model.user_id_type)
    if not args.json and len(ids) > PROGRESS_USERS:
        print(f"recommending {k} items to {len(ids):,} users with {loaded.name} "
              f"v{loaded.number} ...", file=sys.stderr, flush=True)
    slates = recommend_all(loaded.model, ids, k, exclude_seen, quiet=args.json)
    frame = slate_table(ids, slates, counts["wrong_ids"], loaded.number)
    write_atomically(frame, output)
    seconds = time.perf_counter() - started
    fallback = sum(slate.fallback for slate in slates)
    summary = Summary(
        users_file=args.users, output=str(output), model=loaded.name,
        model_version=loaded.number, k=k, exclude_seen=exclude_seen, column=column,
        rows_read=len(raw), users=len(ids), duplicates=counts["duplicates"],
        blank=counts["blank"], fallback=fallback, wrong_type=len(counts["wrong_ids"]),
        unknown=fallback - len(counts["wrong_ids"]), rows_written=len(frame),
        seconds=round(seconds, 3), users_per_second=round(len(ids) / seconds if seconds else 0.0))
    show(summary, counts["wrong_ids"], loaded.model, as_json=args.json)
    return 0


def _output_path(option: str | None, users_path: Path) -> Path:
    output = (Path.cwd() / option).resolve() if option else \
        users_path.with_name(f"{users_path.stem}.recommendations.parquet")
    shown = option or str(output)
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise conveyor.UsageError(f"-o {shown}: unsupported output type '{output.suffix}'",
                                  hint="use .parquet or .csv")
    if output == users_path:
        raise conveyor.UsageError(f"-o {shown} is the users file itself",
                                  hint="choose another output file")
    if not output.parent.is_dir():
        raise conveyor.UsageError(f"-o {shown}: folder {output.parent} does not exist")
    return output


def read_users(path: Path, shown: str, wanted: str) -> tuple[str, list[Any]]:
    """(the column used, its values) of the users table; UsageError naming the file and
    column when there is no such file, it is not a table, the column is missing, or it has no
    rows."""
    from conveyor import tables

    if not path.is_file():
        raise conveyor.UsageError(f"--users {shown}: no such file",
                                  hint=f"paths are relative to the current folder ({Path.cwd()})")
    if path.suffix.lower() not in INPUT_SUFFIXES:
        raise conveyor.UsageError(f"--users {shown}: unsupported file type '{path.suffix}'",
                                  hint="use .csv, .tsv or .parquet")
    if path.stat().st_size == 0:
        # not read at all: pyarrow's reader, failing on an empty file, can leave a thread
        # that aborts the interpreter at exit (about one run in ten)
        raise conveyor.UsageError(f"--users {shown} is empty: no header, no rows (column "
                                  f"'{wanted}')", hint="list one user id per row under a header")
    try:
        frame = tables.read_table(path)
    except Exception as exc:  # pyarrow's and pandas' many parse errors: the file is the culprit
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise conveyor.UsageError(f"--users {shown} cannot be read as a table of users "
                                  f"(column '{wanted}'): {first}",
                                  hint="a CSV with a header row, or a Parquet file") from None
    columns = [str(c) for c in frame.columns]
    if wanted in columns:
        column = wanted
    elif len(columns) == 1:
        column = columns[0]
    else:
        raise conveyor.UsageError(
            f"--users {shown} has no column '{wanted}' (recsys.user_column); its columns: "
            + ", ".join(columns[:10]) + (" ..." if len(columns) > 10 else ""),
            hint="rename the column, or pass recsys.user_column=NAME")
    if len(frame) == 0:
        raise conveyor.UsageError(f"--users {shown} has no rows (column '{column}')",
                                  hint="list one user id per row under a header")
    return column, frame[column].tolist()


def as_model_ids(values: Sequence[Any], id_type: type) -> tuple[list[Hashable], dict[str, Any]]:
    """The distinct ids in first-seen order, as `id_type` where they can be, and the counts:
    blank rows, duplicates, and the ids that are not of the model's type (`wrong_ids`, kept as
    text: the model answers them with its fallback)."""
    import math

    ids: dict[Hashable, None] = {}
    wrong: set[Hashable] = set()
    blank = 0
    for value in values:
        if value is None or (isinstance(value, float) and math.isnan(value)) \
                or (isinstance(value, str) and not value.strip()):
            blank += 1
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)   # an int column with a blank reads as floats
        if id_type is int:
            if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
                value = int(value)
            elif not isinstance(value, int) or isinstance(value, bool):
                value = str(value)
                wrong.add(value)
        elif id_type is str:
            value = str(value)
        ids.setdefault(value, None)
    distinct = list(ids)
    return distinct, {"blank": blank, "duplicates": len(values) - blank - len(distinct),
                      "wrong_ids": wrong}


def recommend_all(model: Any, users: list[Hashable], k: int, exclude_seen: bool, *,
                  quiet: bool) -> list[Any]:
    """Every user's slate, `PROGRESS_USERS` at a time, with a progress line on stderr at most
    every `PROGRESS_SECONDS` (none with `quiet` or for a file done sooner)."""
    batch = getattr(model, "recommend_batch", None)
    slates: list[Any] = []
    started = last = time.perf_counter()
    for start in range(0, len(users), PROGRESS_USERS):
        part = users[start:start + PROGRESS_USERS]
        if batch is not None:
            slates.extend(batch(part, k, exclude_seen=exclude_seen))
        else:   # another plugin's RecommendingModel: the protocol's one-user call
            slates.extend(model.recommend(user, k, exclude_seen=exclude_seen) for user in part)
        now = time.perf_counter()
        if not quiet and now - last >= PROGRESS_SECONDS and len(slates) < len(users):
            last = now
            print(f"  {len(slates):,} of {len(users):,} users "
                  f"({len(slates) / (now - started):,.0f}/s)", file=sys.stderr, flush=True)
    return slates


def slate_table(users: list[Hashable], slates: list[Any], wrong_ids: set[Hashable],
                version: int) -> Any:
    """One row per (user, position) as a DataFrame with `COLUMNS`; users as text when some
    were of the wrong type (a column holds one type)."""
    import numpy as np
    import pandas as pd

    lengths = np.fromiter((len(s) for s in slates), dtype="int64", count=len(slates))
    items: list[Any] = []
    scores: list[float] = []
    for slate in slates:
        for item, score in slate:
            items.append(item)
            scores.append(score)
    user_column = [str(u) for u in users] if wrong_ids else list(users)
    total = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return pd.DataFrame({
        "user": np.repeat(np.asarray(user_column, dtype=object if wrong_ids else None), lengths),
        "position": (np.arange(total) - starts + 1).astype("int64"),
        "item": items,
        "score": np.asarray(scores, dtype="float64"),
        "fallback": np.repeat(np.fromiter((bool(s.fallback) for s in slates), dtype=bool,
                                          count=len(slates)), lengths),
        "model_version": np.full(total, version, dtype="int64")}, columns=list(COLUMNS))


def write_atomically(frame: Any, output: Path) -> None:
    """`frame` to `output` (Parquet or CSV by suffix) through a temporary file beside it."""
    handle, temp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(handle)
    try:
        if output.suffix.lower() == ".csv":
            frame.to_csv(temp, index=False)
        else:
            frame.to_parquet(temp, index=False)
        os.replace(temp, output)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def show(summary: Summary, wrong_ids: set[Hashable], model: Any, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(asdict(summary), indent=2, sort_keys=True))
        return
    print(f"✓ {summary.users:,} users x k={summary.k} -> {summary.rows_written:,} rows in "
          f"{summary.output} ({summary.model} v{summary.model_version}, "
          f"{summary.seconds:.2f} s, {summary.users_per_second:,.0f} users/s)")
    notes = []
    if summary.fallback:
        type_name = getattr(getattr(model, "user_id_type", None), "__name__", "?")
        examples = ", ".join(repr(u) for u in sorted(wrong_ids, key=str)[:3])
        notes.append(f"popularity fallback for {summary.fallback:,} users: {summary.unknown:,} "
                     f"unknown to the model" + (
                         f", {summary.wrong_type:,} not {type_name} ids (e.g. {examples})"
                         if summary.wrong_type else ""))
    if summary.duplicates:
        notes.append(f"{summary.duplicates:,} repeated rows answered once")
    if summary.blank:
        notes.append(f"{summary.blank:,} blank ids skipped")
    for note in notes:
        print(f"  {note}")


RECOMMEND = conveyor.CliCommand("recommend", HELP, configure, run, description=DESCRIPTION)
