"""Reading batches in chunks (CSV, TSV, Parquet through pyarrow) and the serving prediction log.

Only one chunk is in memory at a time. CSV columns the reference knows are read with the
reference's types, so a chunk's type never depends on which rows happen to be in it; a value
that does not fit (text in a number column) is reported as an invalid batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import conveyor

SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
CSV_BLOCK = 8 << 20  # bytes per CSV block: ~20-100k rows of a typical table
LOG_DIR = Path(".conveyor") / "predictions"


class BadBatch(Exception):
    """The batch cannot be read as a table of the expected columns: an invalid batch."""


def check_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise conveyor.UsageError(f"{what} {path}: no such file")
    if path.suffix.lower() not in SUFFIXES:
        raise conveyor.UsageError(f"{what} {path}: unsupported file type '{path.suffix}'",
                                  hint="use .csv, .tsv or .parquet")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def arrow_types(reference_dtypes: dict[str, Any]) -> dict[str, Any]:
    """Arrow types for CSV columns, from the reference frame's dtypes (numbers stay numbers)."""
    import pandas as pd
    import pyarrow as pa

    types = {}
    for name, dtype in reference_dtypes.items():
        if pd.api.types.is_bool_dtype(dtype):
            types[name] = pa.bool_()
        elif pd.api.types.is_integer_dtype(dtype):
            types[name] = pa.int64()
        elif pd.api.types.is_float_dtype(dtype):
            types[name] = pa.float64()
        else:
            types[name] = pa.string()
    return types


def read_chunks(path: Path, *, chunk_rows: int, types: dict[str, Any] | None = None
                ) -> Iterator[Any]:
    """The file as pandas DataFrames of at most about `chunk_rows` rows each."""
    import pyarrow as pa

    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            handle = pq.ParquetFile(path)
            for batch in handle.iter_batches(batch_size=chunk_rows):
                yield batch.to_pandas()
            return
        import pyarrow.csv as csv

        if path.stat().st_size == 0:
            raise BadBatch(f"{path.name} is empty: not even a header line")
        reader = csv.open_csv(
            path, read_options=csv.ReadOptions(block_size=CSV_BLOCK),
            parse_options=csv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ","),
            convert_options=csv.ConvertOptions(column_types=types or {},
                                               strings_can_be_null=True))
        for batch in reader:
            for start in range(0, batch.num_rows, chunk_rows):
                yield batch.slice(start, chunk_rows).to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise BadBatch(f"{path.name} cannot be read as a table: {_arrow_message(exc)}") from exc


def _arrow_message(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0]
    return text.replace("In CSV column #", "CSV column #")


def read_table(path: Path) -> Any:
    """A small table (labels) read whole."""
    import pandas as pd

    check_file(path, "--labels")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except Exception as exc:
        raise conveyor.UsageError(f"--labels {path}: cannot be read: {exc}") from exc


# --- the serving prediction log -----------------------------------------------------------------


@dataclass(frozen=True)
class LogSlice:
    model: str
    parts: list[Path]
    since: Any  # the newest timestamp of the previous slice (exclusive), or None
    digest: str


def prediction_log_dir(project_dir: Path, model: str) -> Path:
    return Path(project_dir) / LOG_DIR / model


def read_prediction_log(project_dir: Path, model: str, *, since: Any = None,
                        chunk_rows: int = 100000) -> Iterator[Any]:
    """The serving prediction log of `model`, rows newer than `since`, in time order.

    The contract of the serving plugin's log (`conveyor.predictions`, being written on the
    `serve` branch): Parquet parts under `.conveyor/predictions/<model>/`, columns request_id,
    timestamp, model_name, model_version, the input features, prediction, proba__<class>.
    This reads the parts with pyarrow directly, oldest part first (part names sort in time
    order); replace it with `conveyor.predictions.read_prediction_log` once that is on main.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    for part in log_parts(project_dir, model):
        for batch in pq.ParquetFile(part).iter_batches(batch_size=chunk_rows):
            frame = batch.to_pandas()
            if since is not None and "timestamp" in frame.columns:
                frame = frame[pd.to_datetime(frame["timestamp"], utc=True)
                              > pd.Timestamp(since, tz="UTC")]
            if len(frame):
                yield frame.sort_values("timestamp", kind="stable") \
                    if "timestamp" in frame.columns else frame


def log_parts(project_dir: Path, model: str) -> list[Path]:
    folder = prediction_log_dir(project_dir, model)
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []


def log_digest(parts: list[Path], since: Any) -> str:
    digest = hashlib.sha256(str(since).encode())
    for part in parts:
        stat = part.stat()
        digest.update(f"{part.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()
