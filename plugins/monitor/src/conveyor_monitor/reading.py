"""Reading batches in chunks (CSV, TSV, Parquet through `conveyor.tables`) and the serving
prediction log.

Only one chunk is in memory at a time. CSV columns the reference knows are read with the
reference's types, so a chunk's type never depends on which rows happen to be in it. A value
that does not fit (text in a number column) stops that reading (`Unconvertible`); the batch is
then read again with its number columns as text, and the rows holding words where numbers
belong are set aside (`conveyor_monitor.quality`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import conveyor
from conveyor import tables
from conveyor.tables import SUFFIXES


class BadBatch(Exception):
    """The batch cannot be read as a table of the expected columns: an invalid batch."""


class Unconvertible(BadBatch):
    """A CSV value does not fit its column's type (text in a number column)."""


def check_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise conveyor.UsageError(f"{what} {path}: no such file")
    if path.suffix.lower() not in SUFFIXES:
        raise conveyor.UsageError(f"{what} {path}: unsupported file type '{path.suffix}'",
                                  hint="use .csv, .tsv or .parquet")


def arrow_types(reference_dtypes: dict[str, Any], *, numbers_as_text: bool = False
                ) -> dict[str, Any]:
    """Arrow types for CSV columns, from the reference frame's dtypes (numbers stay numbers,
    or, with `numbers_as_text`, are read as text to be converted row by row)."""
    import pandas as pd
    import pyarrow as pa

    types = {}
    for name, dtype in reference_dtypes.items():
        if pd.api.types.is_bool_dtype(dtype):
            types[name] = pa.bool_()
        elif numbers_as_text and (pd.api.types.is_integer_dtype(dtype)
                                  or pd.api.types.is_float_dtype(dtype)):
            types[name] = pa.string()
        elif pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
            # Whole numbers are read as floats: a column with a gap comes out of pandas, Excel
            # and most exports as "23.0", which is the same number; the schema's coerce and
            # nullable rules still decide whether the batch is valid.
            types[name] = pa.float64()
        else:
            types[name] = pa.string()
    return types


def read_chunks(path: Path, *, chunk_rows: int, types: dict[str, Any] | None = None
                ) -> Iterator[Any]:
    """The file as pandas DataFrames of at most about `chunk_rows` rows each."""
    import pyarrow as pa

    try:
        if tables.is_parquet(path):
            for batch in tables.parquet_batches(path, chunk_rows=chunk_rows):
                yield batch.to_pandas()
            return
        if path.stat().st_size == 0:
            raise BadBatch(f"{path.name} is empty: not even a header line")
        reader = tables.open_csv(path, column_types=types)
        for batch in reader:
            for start in range(0, batch.num_rows, chunk_rows):
                yield batch.slice(start, chunk_rows).to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        message = f"{path.name} cannot be read as a table: {_arrow_message(exc)}"
        if types and "conversion error" in str(exc):
            raise Unconvertible(message) from exc
        raise BadBatch(message) from exc
    except OSError as exc:  # a damaged Parquet file, say
        raise BadBatch(f"{path.name} cannot be read as a table: {exc}") from exc


def _arrow_message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0]
    return text.replace("In CSV column #", "CSV column #")


def read_table(path: Path) -> Any:
    """A small table (labels) read whole (`conveyor.tables.read_table`)."""
    check_file(path, "--labels")
    try:
        return tables.read_table(path)
    except Exception as exc:
        raise conveyor.UsageError(f"--labels {path}: cannot be read: {exc}") from exc


# --- the serving prediction log -----------------------------------------------------------------


def prediction_log_dir(project_dir: Path, model: str) -> Path:
    from conveyor.predictions import prediction_log_dir as log_dir

    return log_dir(project_dir, model)


def read_prediction_log(project_dir: Path, model: str, *, since: Any = None,
                        chunk_rows: int) -> Iterator[Any]:
    """The serving prediction log of `model` (`conveyor.predictions`), rows strictly newer
    than `since` (the newest timestamp the previous `--from-log` check saw), in time order."""
    import pandas as pd
    from conveyor.predictions import read_prediction_log as read_log

    cutoff = None if since is None else pd.Timestamp(since, tz="UTC") \
        if pd.Timestamp(since).tzinfo is None else pd.Timestamp(since).tz_convert("UTC")
    for frame in read_log(project_dir, model, since=None if cutoff is None
                          else cutoff.to_pydatetime(), batch_rows=chunk_rows):
        if cutoff is not None and "timestamp" in frame.columns:
            frame = frame[pd.to_datetime(frame["timestamp"], utc=True) > cutoff]
        if len(frame):
            yield frame


def log_parts(project_dir: Path, model: str) -> list[Path]:
    from conveyor.predictions import prediction_log_parts

    return prediction_log_parts(project_dir, model)


def log_digest(parts: list[Path], since: Any) -> str:
    digest = hashlib.sha256(str(since).encode())
    for part in parts:
        stat = part.stat()
        digest.update(f"{part.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()
