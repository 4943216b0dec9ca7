"""A batch's data quality: what monitoring tells apart from drift.

A model cannot score a batch without its columns, and cannot score a row whose values break the
contract (a hard check of the schema, a number column holding text). Such rows are *set aside*:
counted by reason, kept out of drift, predictions and performance; the batch is invalid only
when their share exceeds `monitor.max_invalid_share` (or a column is missing). Values outside
the schema's *expectations* (observed ranges, known categories: what `conveyor schema infer`
writes unless `--strict`) are only counted, per column; those rows stay in. Categories the
model's training data never held are counted per column too, schema or not.

The figures go into the report (`quality`), `--json`, the batch record (`details["quality"]`),
and `retrain.when` (`quality.invalid_share`, `quality.unexpected_share`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EXAMPLES = 5
NULL_WORDS = frozenset({"", "nan", "na", "n/a", "null", "none"})
NOT_A_NUMBER = "not a number"


@dataclass
class Quality:
    rows: int = 0  # rows read
    set_aside: int = 0  # rows breaking the contract
    by_reason: dict[str, int] = field(default_factory=dict)  # "column: check" -> rows
    examples: dict[str, list[list[Any]]] = field(default_factory=dict)  # reason -> [row, value]
    checked_rows: int = 0  # rows kept, whose expectations were counted
    unexpected_rows: int = 0
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra_columns: list[str] = field(default_factory=list)

    def set_aside_rows(self, reasons: dict[int, tuple[str, ...]], examples: dict[str, list]
                       ) -> None:
        """Rows (batch positions) set aside, each with its reasons."""
        self.set_aside += len(reasons)
        for row_reasons in reasons.values():
            for reason in row_reasons:
                self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        for reason, found in examples.items():
            kept = self.examples.setdefault(reason, [])
            kept += found[:EXAMPLES - len(kept)]

    def expectations(self, failures: Any, unexpected_rows: int, offset: Any) -> None:
        """Expectation failures of a chunk (`ValidationFailure`s); `offset` maps a chunk
        position to its batch row."""
        self.unexpected_rows += unexpected_rows
        for failure in failures:
            column = self.columns.setdefault(str(failure.column), {"unexpected": 0,
                                                                   "checks": {}})
            column["unexpected"] += failure.failing_rows
            column["checks"][failure.check] = column["checks"].get(failure.check, 0) + \
                failure.failing_rows
            kept = column.setdefault("examples", [])
            kept += [[offset(row), value] for row, value in failure.examples][:EXAMPLES - len(kept)]

    def unseen(self, column: str, categories: dict[str, int]) -> None:
        if categories:
            entry = self.columns.setdefault(column, {"unexpected": 0, "checks": {}})
            entry["unseen_categories"] = dict(categories)

    @property
    def invalid_share(self) -> float:
        return self.set_aside / self.rows if self.rows else 0.0

    @property
    def unexpected_share(self) -> float:
        return self.unexpected_rows / self.checked_rows if self.checked_rows else 0.0

    def top_reasons(self, limit: int = 3) -> str:
        ranked = sorted(self.by_reason.items(), key=lambda item: -item[1])[:limit]
        return "; ".join(f"{reason} ({count:,} row{'s' if count != 1 else ''})"
                         for reason, count in ranked)

    def as_dict(self, max_invalid_share: float) -> dict[str, Any]:
        return {"rows": self.rows, "invalid_rows": self.set_aside,
                "invalid_share": round(self.invalid_share, 6),
                "max_invalid_share": max_invalid_share,
                "invalid_by_reason": dict(sorted(self.by_reason.items(), key=lambda i: -i[1])),
                "invalid_examples": self.examples,
                "checked_rows": self.checked_rows, "unexpected_rows": self.unexpected_rows,
                "unexpected_share": round(self.unexpected_share, 6),
                "columns": self.columns, "extra_columns": self.extra_columns}


def numbers_from_text(chunk: Any, numeric: list[str], first_row: int
                      ) -> tuple[Any, dict[int, tuple[str, ...]], dict[str, list]]:
    """Number columns read as text (a batch with words where numbers belong): each converted,
    and the rows holding a value that is not a number, with their reasons and examples."""
    import pandas as pd

    reasons: dict[int, tuple[str, ...]] = {}
    examples: dict[str, list] = {}
    converted = {}
    for name in numeric:
        if name not in chunk.columns or pd.api.types.is_numeric_dtype(chunk[name].dtype):
            continue
        text = chunk[name]
        numbers = pd.to_numeric(text, errors="coerce")
        words = text.astype("string").str.strip().str.lower()
        bad = (text.notna() & numbers.isna() & ~words.isin(NULL_WORDS)).to_numpy()
        converted[name] = numbers.astype("float64")
        if bad.any():
            reason = f"{name}: {NOT_A_NUMBER}"
            positions = bad.nonzero()[0]
            for position in positions:
                reasons[int(position)] = (*reasons.get(int(position), ()), reason)
            examples[reason] = [[first_row + int(p), str(text.iat[p])]
                                for p in positions[:EXAMPLES]]
    if converted:
        chunk = chunk.assign(**converted)
    return chunk, reasons, examples
