"""Row fingerprints: which rows a model trained on, so it is never scored on them.

A training stage keeps one 64-bit hash per training row (of the model's feature columns and
the target) with the version; whoever later compares that model with another (the evaluate
stage, a retrain's hold-out) drops the rows whose fingerprints are among them. pandas is
imported only when hashing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def row_fingerprints(frame: Any, columns: Iterable[str]) -> Any:
    """A 64-bit hash per row of `columns` (in name order), the same whether a column was read
    as numbers or as text (5, 5.0 and "5" agree), so a row is recognised in a later file."""
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    texts = {}
    for column in sorted(set(columns)):
        values = frame[column]
        if is_numeric_dtype(values) or is_bool_dtype(values):
            texts[column] = values.astype("float64").astype(str)
            continue
        numbers = pd.to_numeric(values, errors="coerce")
        text = values.astype(object).where(values.notna(), "nan").astype(str)
        texts[column] = text.where(numbers.isna(), numbers.astype("float64").astype(str))
    table = pd.DataFrame(texts, index=frame.index)
    return pd.util.hash_pandas_object(table, index=False).to_numpy()


def unseen(frame: Any, columns: Iterable[str], known: Any) -> Any:
    """A boolean mask of the rows of `frame` whose fingerprints are not in `known`."""
    import numpy as np

    return ~np.isin(row_fingerprints(frame, columns), np.asarray(known))
