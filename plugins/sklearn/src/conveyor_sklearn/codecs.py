"""Artifact codecs: DataFrames as Arrow IPC, estimators with skops (no pickle, trusted types only)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import conveyor

# Types a stored model may contain without the user vouching for them: scikit-learn's own,
# numpy's and scipy's, and plain Python containers.
TRUSTED_MODULES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.", "conveyor_sklearn.")


def _is_frame(obj: Any) -> bool:
    kind = type(obj)
    return kind.__name__ == "DataFrame" and kind.__module__.startswith("pandas")


def _dump_frame(frame: Any, path: Path) -> None:
    """Arrow IPC (Feather v2, lz4): for a local cache it writes ~6x faster than Parquet, and
    pandas' metadata round-trips any index and column names."""
    import pyarrow as pa
    import pyarrow.feather as feather

    feather.write_feather(pa.Table.from_pandas(frame), path, compression="lz4")


def _load_frame(path: Path) -> Any:
    import pyarrow.feather as feather

    return feather.read_table(path).to_pandas()


def _dump_parquet(frame: Any, path: Path) -> None:
    frame.to_parquet(path)


def _load_parquet(path: Path) -> Any:
    import pandas as pd

    return pd.read_parquet(path)


def _is_estimator(obj: Any) -> bool:
    return hasattr(obj, "fit") and hasattr(obj, "get_params")


_SKOPS_IMPORT = threading.Lock()


def _skops_io() -> Any:
    """skops.io, imported without its default trusted-types table.

    On import, skops builds that table by importing every scikit-learn estimator (and pytest,
    through sklearn.utils._testing): about 0.3 s that saving a model never needs. Loading does
    not rely on the table either: `_load_estimator` checks every type in the file against
    TRUSTED_MODULES itself. With the table empty, skops simply reports more types as untrusted
    to that check; nothing is trusted that was not before.
    """
    import sys

    with _SKOPS_IMPORT:  # the runner's warm-up thread may be importing it right now
        if "skops.io" not in sys.modules:
            import sklearn.utils

            original = sklearn.utils.all_estimators
            sklearn.utils.all_estimators = lambda *args, **kwargs: []
            try:
                import skops.io
            finally:
                sklearn.utils.all_estimators = original
    import skops.io  # complete: a plain import waits for any import in progress

    return skops.io


def _dump_estimator(model: Any, path: Path) -> None:
    _skops_io().dump(model, path)


def _load_estimator(path: Path) -> Any:
    skops_io = _skops_io()
    untrusted = skops_io.get_untrusted_types(file=path)
    refused = [t for t in untrusted if not t.startswith(TRUSTED_MODULES)]
    if refused:
        raise conveyor.StoreError(
            f"the model {path.name} contains types that are not trusted: {', '.join(refused)}",
            hint="only scikit-learn, numpy and scipy types load without review")
    return skops_io.load(path, trusted=untrusted)


def _import_arrow() -> None:
    import pyarrow.feather  # noqa: F401


def _import_skops() -> None:
    _skops_io()


ARROW = conveyor.Codec(name="arrow", suffix=".arrow", handles=_is_frame, dump=_dump_frame,
                       load=_load_frame, priority=10, prepare=_import_arrow)
# Still registered so artifacts of earlier versions load; new frames are written as Arrow.
PARQUET = conveyor.Codec(name="parquet", suffix=".parquet", handles=_is_frame, dump=_dump_parquet,
                         load=_load_parquet, priority=5)
SKOPS = conveyor.Codec(name="skops", suffix=".skops", handles=_is_estimator,
                       dump=_dump_estimator, load=_load_estimator, priority=10,
                       prepare=_import_skops)
