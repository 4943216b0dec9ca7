"""Artifact codecs: a `Recommender` (or a two-stage `RankedRecommender`, whose LightGBM
model is its text form in a unicode array) as numpy arrays in one `.npz` (no pickle), and DataFrames
as Arrow IPC when no other plugin stores them (conveyor-sklearn's `arrow` codec wins if it is
installed: it has the higher priority)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import conveyor

KIND = "__kind__"


class UnreadableModel(conveyor.StoreError):
    """A recommender file that is not the arrays Conveyor saved."""


def _is_recommender(obj: Any) -> bool:
    from conveyor_recsys.models import Recommender

    return isinstance(obj, Recommender)


def _dump(model: Any, path: Path) -> None:
    import numpy as np

    # a two-stage model (ranker.RankedRecommender) saves its candidate model's arrays and more
    arrays = model.saved_arrays() if hasattr(model, "saved_arrays") else dict(model.arrays)
    arrays[KIND] = np.asarray(model.kind)
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def _load(path: Path) -> Any:
    """Arrays only: `allow_pickle=False` refuses any object array, so loading runs no code."""
    import numpy as np

    from conveyor_recsys.models import Recommender

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except Exception as exc:
        raise UnreadableModel(f"the recommender {path.name} is not a readable .npz of arrays: "
                              f"{type(exc).__name__}: {exc}") from exc
    kind = str(arrays.pop(KIND, ""))
    if kind == "ranked":
        from lightgbm.basic import LightGBMError

        from conveyor_recsys.ranker import RankedRecommender

        try:
            return RankedRecommender.from_arrays(arrays)
        except (KeyError, ValueError, LightGBMError) as exc:
            raise UnreadableModel(f"the two-stage recommender {path.name} is incomplete or its "
                                  f"LightGBM model unreadable: {exc}") from exc
    try:
        return Recommender(kind, arrays)
    except (KeyError, ValueError) as exc:
        raise UnreadableModel(f"the recommender {path.name} is incomplete: {exc}") from exc


def _is_frame(obj: Any) -> bool:
    kind = type(obj)
    return kind.__name__ == "DataFrame" and kind.__module__.startswith("pandas")


def _dump_frame(frame: Any, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.feather as feather

    feather.write_feather(pa.Table.from_pandas(frame), path, compression="lz4")


def _load_frame(path: Path) -> Any:
    import pyarrow.feather as feather

    return feather.read_table(path).to_pandas()


NPZ = conveyor.Codec(name="recsys-npz", suffix=".npz", handles=_is_recommender, dump=_dump,
                     load=_load, priority=10)
FRAMES = conveyor.Codec(name="recsys-arrow", suffix=".arrow", handles=_is_frame,
                        dump=_dump_frame, load=_load_frame, priority=1)
