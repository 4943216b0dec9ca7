"""/predict with the compiled form of a version (`conveyor.compiled.CompiledModel`): validated
records straight to typed columns, no DataFrame.

The request type (`conveyor_bentoml.records`) has already checked every record, so what is left
is layout: one numpy array per feature, in the model's order, of the kind it takes
(`compiled.kinds`): float64 with NaN for a missing number, an object array of str with None for
missing text. The answers are built as the Python path builds them (`service.Predictor.predict`):
the compiled model's labels (the first class of the highest probability, as scikit-learn picks
it) and its probabilities in the order of `classes`, so both paths give the same JSON for the
same records. A version with row transforms builds its DataFrame for them, then
`conveyor.compiled.columns_from_frame`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

NUMBER, TEXT = "number", "text"


def record_columns(records: Sequence[Mapping[str, Any]], features: Sequence[str],
                   kinds: Mapping[str, str]) -> dict[str, np.ndarray]:
    """One 1-D array per feature from `records` (a field absent from a record is missing)."""
    columns: dict[str, np.ndarray] = {}
    for name in features:
        values = [record.get(name) for record in records]
        if kinds.get(name, NUMBER) == TEXT:
            column = np.empty(len(values), dtype=object)
            column[:] = [v if v is None or type(v) is str else str(v) for v in values]
        else:  # None -> NaN; a bool is 0/1 as pandas would make it
            column = np.array(values, dtype=np.float64)
        columns[name] = column
    return columns


def score_and_log(serving: Any, columns: Mapping[str, np.ndarray],
                  records: Sequence[Mapping[str, Any]], request_ids: Sequence[str],
                  log: Any) -> list[dict[str, Any]]:
    """The JSON answers for `records` scored by `serving.compiled` from their `columns`; their
    rows are appended to `log` (a PredictionLogWriter, or None) once the answers are built."""
    results, predictions, proba = answers(serving.compiled.predict_columns(columns),
                                          serving.classes, serving.name, serving.version,
                                          request_ids)
    if log is not None:
        log.append(records, predictions, proba, serving.version, request_ids,
                   classes=serving.classes)
    return results


def answers(prediction: Any, classes: list[Any] | None, name: str, version: int,
            request_ids: Sequence[str]) -> tuple[list[dict[str, Any]], list[Any], Any]:
    """The JSON answers of /predict, the predictions and the probabilities (for the log)."""
    proba = prediction.probabilities
    if classes is not None and proba is not None:
        predictions = prediction.predictions.tolist()
        results = [{"prediction": p, "probabilities": dict(zip(classes, row, strict=True)),
                    "model": name, "model_version": version, "request_id": rid}
                   for p, row, rid in zip(predictions, proba.tolist(), request_ids, strict=True)]
        return results, predictions, proba
    predictions = prediction.predictions.tolist()
    results = [{"prediction": p, "model": name, "model_version": version, "request_id": rid}
               for p, rid in zip(predictions, request_ids, strict=True)]
    return results, predictions, None
