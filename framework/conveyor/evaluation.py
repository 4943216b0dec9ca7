"""`EvaluationResult`: what an evaluate stage hands the register stage (output `metrics`).

An evaluate stage (the built-in `sklearn.evaluate`, or a plugin's) returns
`{"metrics": EvaluationResult(...).to_dict()}`; `conveyor.register` reads it back with
`EvaluationResult.from_dict`, which checks it and names the stage that produced a malformed
one. The stored form is plain JSON, the same mapping stores have always held:

    {"overall": {metric: value}, "metrics": [names], "rows": int,
     "directions": {metric: "higher" | "lower"}, "champion": {...} | None,
     "champion_version": int | None, "slices": {value: {metric: value}},
     "slice_column": str, "primary": str,
     "comparison": {"champion_version", "rows", "test_rows", "excluded", "note",
                    "champion": {...}, "challenger": {...},
                    "bootstrap": {metric: [differences]}, "unavailable": str}}

`comparison` scores champion and challenger on the same rows (those the champion never
trained on) and `unavailable` says why they could not be compared. Keys a producer adds beyond
these are kept (`extra`) and written back unchanged.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import StageFailed

_COMPARISON_KEYS = ("champion_version", "rows", "test_rows", "excluded", "note", "champion",
                    "challenger", "bootstrap", "unavailable")
_KEYS = ("overall", "metrics", "rows", "directions", "champion", "champion_version", "slices",
         "slice_column", "primary", "comparison")


class MalformedEvaluation(ValueError):
    """An evaluation result that does not follow the contract (which key, and why)."""


@dataclass(frozen=True)
class ChampionComparison:
    """The champion (`champion_version`) and the challenger scored on the same `rows` of the
    `test_rows` (`excluded` are those the champion trained on); `bootstrap` holds the paired
    differences challenger - champion per metric, from which `interval` gives the interval.
    `unavailable` says why they could not be compared (relative conditions then fail closed)."""

    champion_version: int | None = None
    champion: Mapping[str, float] = field(default_factory=dict)
    challenger: Mapping[str, float] = field(default_factory=dict)
    rows: int | None = None
    test_rows: int | None = None
    excluded: int | None = None
    bootstrap: Mapping[str, Sequence[float]] = field(default_factory=dict)
    unavailable: str | None = None
    note: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def interval(self, metric: str, level: float = 0.95) -> dict[str, Any] | None:
        """The paired difference for `metric` with its interval at `level` (None when the
        metric was not compared)."""
        return self.to_gate().interval(metric, level)

    def intervals(self, level: float = 0.95) -> dict[str, dict[str, Any]]:
        """`interval` for every compared metric."""
        found = {metric: self.interval(metric, level) for metric in self.champion}
        return {metric: value for metric, value in found.items() if value is not None}

    def to_gate(self, shortfall: Mapping[str, float] | None = None) -> Any:
        """As `conveyor.gate.Comparison`, for checking relative conditions."""
        from conveyor.gate import Comparison

        return Comparison(champion=dict(self.champion), challenger=dict(self.challenger),
                          rows=self.rows, version=self.champion_version,
                          diffs=dict(self.bootstrap), unavailable=self.unavailable,
                          shortfall=dict(shortfall or {}),
                          where=f"{self.rows:,} test rows it never trained on" if self.rows
                          else "the same rows")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"champion_version": self.champion_version}
        for key in ("test_rows", "excluded", "note"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.unavailable is not None:
            data["unavailable"] = self.unavailable
        if self.rows is not None:
            data["rows"] = self.rows
        if self.champion or self.challenger or self.bootstrap:
            data.update(champion=dict(self.champion), challenger=dict(self.challenger),
                        bootstrap={k: list(v) for k, v in self.bootstrap.items()})
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChampionComparison:
        if not isinstance(data, Mapping):
            raise MalformedEvaluation(f"'comparison' must be a mapping, not "
                                      f"{type(data).__name__}")
        return cls(champion_version=_int(data.get("champion_version"),
                                         "comparison.champion_version"),
                   champion=_scores(data.get("champion"), "comparison.champion"),
                   challenger=_scores(data.get("challenger"), "comparison.challenger"),
                   rows=_int(data.get("rows"), "comparison.rows"),
                   test_rows=_int(data.get("test_rows"), "comparison.test_rows"),
                   excluded=_int(data.get("excluded"), "comparison.excluded"),
                   bootstrap=_bootstrap(data.get("bootstrap")),
                   unavailable=_text(data.get("unavailable"), "comparison.unavailable"),
                   note=_text(data.get("note"), "comparison.note"),
                   extra={k: v for k, v in data.items() if k not in _COMPARISON_KEYS})


@dataclass(frozen=True)
class EvaluationResult:
    """A model's scores on the test set, for the gate: `overall` per metric (`metrics` names
    the metrics computed, `directions` which way each is better), on `rows` test rows; per
    slice of `slice_column` in `slices`; the champion it is compared with (`champion_version`,
    its scores in `champion`) and the paired `comparison` on the rows the champion never
    trained on. `primary` is the metric a sweep ranks by, when the producer knows it."""

    overall: Mapping[str, float]
    metrics: tuple[str, ...] = ()
    rows: int | None = None
    directions: Mapping[str, str] = field(default_factory=dict)
    champion: Mapping[str, float] | None = None
    champion_version: int | None = None
    slices: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    slice_column: str | None = None
    primary: str | None = None
    comparison: ChampionComparison | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def gate_comparison(self, shortfall: Mapping[str, float] | None = None) -> Any:
        """The `conveyor.gate.Comparison` relative conditions are checked with: the paired
        `comparison`, or (older producers) the `champion` scores next to `overall` on the same
        test set; None without a champion."""
        from conveyor.gate import Comparison

        if self.comparison is not None:
            return self.comparison.to_gate(shortfall)
        if self.champion:
            return Comparison(champion=dict(self.champion), challenger=dict(self.overall),
                              version=self.champion_version, shortfall=dict(shortfall or {}),
                              where="the same test set")
        if self.champion_version is not None:
            return Comparison(version=self.champion_version, shortfall=dict(shortfall or {}),
                              unavailable=f"champion v{self.champion_version} could not be "
                                          "scored")
        return None

    def to_dict(self) -> dict[str, Any]:
        """The stored (JSON) form."""
        data: dict[str, Any] = {
            "overall": dict(self.overall), "metrics": list(self.metrics), "rows": self.rows,
            "directions": dict(self.directions),
            "champion": dict(self.champion) if self.champion is not None else None,
            "champion_version": self.champion_version,
            "slices": {k: dict(v) for k, v in self.slices.items()}}
        if self.slice_column is not None:
            data["slice_column"] = self.slice_column
        if self.primary is not None:
            data["primary"] = self.primary
        if self.comparison is not None:
            data["comparison"] = self.comparison.to_dict()
        return {**data, **self.extra}

    @classmethod
    def from_dict(cls, data: Any, *, stage: str | None = None) -> EvaluationResult:
        """Read and check a stored or handed-over evaluation (any form stores hold). A
        malformed one raises StageFailed naming `stage`, the stage that produced it."""
        try:
            return cls._read(data)
        except MalformedEvaluation as exc:
            who = f"stage '{stage}'" if stage else "the evaluate stage"
            raise StageFailed(
                f"{who} produced a malformed evaluation result: {exc}",
                hint="an evaluate stage returns {'metrics': conveyor.EvaluationResult(...)"
                     ".to_dict()}; see conveyor.evaluation") from exc

    @classmethod
    def _read(cls, data: Any) -> EvaluationResult:
        if isinstance(data, EvaluationResult):
            return data
        if not isinstance(data, Mapping):
            raise MalformedEvaluation(f"expected a mapping, got {type(data).__name__}")
        if "overall" not in data:
            raise MalformedEvaluation("it has no 'overall' scores")
        overall = _scores(data["overall"], "overall")
        names = data.get("metrics")
        if names is None:
            names = list(overall)
        if not isinstance(names, Sequence) or isinstance(names, str):
            raise MalformedEvaluation("'metrics' must be a list of metric names")
        directions = data.get("directions") or {}
        if not isinstance(directions, Mapping) or any(
                v not in ("higher", "lower") for v in directions.values()):
            raise MalformedEvaluation("'directions' must map metrics to 'higher' or 'lower'")
        slices = data.get("slices") or {}
        if not isinstance(slices, Mapping):
            raise MalformedEvaluation("'slices' must map slice values to scores")
        champion = data.get("champion")
        comparison = data.get("comparison")
        return cls(
            overall=overall, metrics=tuple(str(n) for n in names),
            rows=_int(data.get("rows"), "rows"), directions=dict(directions),
            champion=_scores(champion, "champion") if champion is not None else None,
            champion_version=_int(data.get("champion_version"), "champion_version"),
            slices={str(k): _scores(v, f"slices.{k}") for k, v in slices.items()},
            slice_column=_text(data.get("slice_column"), "slice_column"),
            primary=_text(data.get("primary"), "primary"),
            comparison=ChampionComparison.from_dict(comparison) if comparison else None,
            extra={k: v for k, v in data.items() if k not in _KEYS})


def _scores(value: Any, where: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedEvaluation(f"'{where}' must map metric names to numbers, not "
                                  f"{type(value).__name__}")
    scores = {}
    for metric, score in value.items():
        if isinstance(score, bool) or not isinstance(score, numbers.Real):
            raise MalformedEvaluation(f"'{where}.{metric}' must be a number, not {score!r}")
        scores[str(metric)] = float(score)
    return scores


def _int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value != int(value):
        raise MalformedEvaluation(f"'{where}' must be a whole number, not {value!r}")
    return int(value)


def _text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEvaluation(f"'{where}' must be text, not {value!r}")
    return value


def _bootstrap(value: Any) -> dict[str, list[float]]:
    if not value:
        return {}
    if not isinstance(value, Mapping) or any(
            isinstance(v, str | Mapping) or not hasattr(v, "__iter__") for v in value.values()):
        raise MalformedEvaluation("'comparison.bootstrap' must map metrics to lists of "
                                  "differences")
    return {str(k): [float(x) for x in v] for k, v in value.items()}


__all__ = ["ChampionComparison", "EvaluationResult"]
