"""Threshold conditions and the evaluation gate. Conditions are parsed, never evaluated as code.

  ">= 0.80"                    absolute
  ">= champion - 0.01"         relative to the champion, both scored on the same rows
  "+0.005"                     beat the champion by this much (in the metric's better direction)
  "+0.005 at 95%"              ...and the paired difference's 95% interval must clear it (its
                               lower bound, for a metric where higher is better)
  ">= champion - 0.01 at 90%"  any relative condition can ask for its interval the same way

A relative condition compares the challenger with the champion on the rows both were scored on
(a `Comparison`). When a champion exists but could not be compared (it cannot be loaded or
scored, or too few rows are left that it never trained on), relative conditions fail closed
with the reason. A tolerance (">= champion - 0.02") is anchored to the best recent champion:
the ground earlier promotions already gave up (each version's recorded `shortfall`) is taken
off it, so a chain of slightly worse models cannot slide quality down step by step.

A checked condition is a `ConditionResult` (metric, op, threshold, value, met, and for a
relative one the champion's value and the interval); its `message` (and `str()`) is the line
users see. `failing` keeps the results not met; `gate_results` reads a registered version's
gate decision back as results, also from registries that kept only the text.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from conveyor.errors import ConfigError
from conveyor.metrics import greater_is_better

OPERATORS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
             "==": operator.eq, "!=": operator.ne}
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
LEVEL = r"(?:\s+at\s+(?P<level>\d+(?:\.\d+)?)\s*%)?"
PATTERN = re.compile(
    rf"^\s*(?P<op>>=|<=|==|!=|>|<)\s*(?:(?P<abs>{NUMBER})|champion\s*(?:(?P<sign>[-+])\s*"
    rf"(?P<delta>{NUMBER}))?{LEVEL})\s*$")
MARGIN = re.compile(rf"^\s*(?P<margin>[-+]{NUMBER}){LEVEL}\s*$")
HINT = ("write e.g. '>= 0.8', '< 0.3', '>= champion - 0.01', '+0.005' or '+0.005 at 95%'")


@dataclass
class Comparison:
    """Champion and challenger scored on the same rows (from the evaluate stage, or a retrain's
    hold-out). `diffs` holds the bootstrap differences challenger - champion per metric;
    `unavailable` says why there is no comparison although there is a champion."""

    champion: Mapping[str, float] = field(default_factory=dict)
    challenger: Mapping[str, float] = field(default_factory=dict)
    rows: int | None = None
    version: int | None = None
    diffs: Mapping[str, Sequence[float]] = field(default_factory=dict)
    unavailable: str | None = None
    shortfall: Mapping[str, float] = field(default_factory=dict)  # the champion's, per metric
    where: str = "the same rows"

    @classmethod
    def from_evaluation(cls, evaluation: Any,
                        shortfall: Mapping[str, float] | None = None) -> Comparison | None:
        """From an evaluate stage's output (a `conveyor.EvaluationResult` or its stored form):
        its `comparison` section, or (older stages) its `champion` metrics next to the
        challenger's overall ones on the same test set."""
        from conveyor.evaluation import EvaluationResult

        return EvaluationResult.from_dict(evaluation).gate_comparison(shortfall)

    def interval(self, metric: str, level: float) -> dict[str, Any] | None:
        """The paired difference for `metric` with its interval at `level` (None when the
        metric was not compared)."""
        from conveyor.uncertainty import interval

        if metric not in self.champion or metric not in self.challenger:
            return None
        point = self.challenger[metric] - self.champion[metric]
        return interval(self.diffs.get(metric) or [], point, level, self.rows)


@dataclass(frozen=True)
class Condition:
    op: str | None  # None for a margin ("+0.005"): its operator follows the metric's direction
    value: float  # the threshold, or the offset from the champion (the margin)
    relative: bool
    text: str
    level: float | None = None  # "at 95%": the interval's bound must clear it

    def check(self, metric: str, value: float, champion: float | None = None, *,
              directions: Mapping[str, str] | None = None,
              comparison: Comparison | None = None) -> tuple[bool, str]:
        """(holds, why): `result`'s `met` and `message`."""
        result = self.result(metric, value, champion, directions=directions,
                             comparison=comparison)
        return result.met, result.message

    def result(self, metric: str, value: float, champion: float | None = None, *,
               directions: Mapping[str, str] | None = None,
               comparison: Comparison | None = None) -> ConditionResult:
        """Does the condition hold for `metric` at `value`? Relative conditions compare with
        `comparison` (champion and challenger on the same rows) when given, else with the bare
        `champion` value."""
        base = {"metric": metric, "condition": self.text, "relative": self.relative,
                "level": self.level}
        if not self.relative:
            ok = OPERATORS[self.op](value, self.value)  # type: ignore[index]
            verdict = "meets" if ok else "misses"
            return ConditionResult(
                **base, op=self.op, threshold=self.value, value=value, met=ok,
                message=f"{metric} {value:.4g} {verdict} {self.op} {self.value:.4g} "
                        f"({self.text})")
        if comparison is not None and comparison.unavailable:
            return ConditionResult(
                **base, op=self.op, value=value, met=False, closed=True,
                message=f"{metric}: '{self.text}' fails closed: {comparison.unavailable} "
                        f"(`conveyor models promote NAME VERSION --force` overrides, "
                        f"recorded as forced)")
        if comparison is not None:
            if metric not in comparison.champion or metric not in comparison.challenger:
                return ConditionResult(
                    **base, op=self.op, value=value, met=False, closed=True,
                    message=f"{metric}: '{self.text}' fails closed: the champion was not "
                            f"scored on {metric}")
            champion, value = comparison.champion[metric], comparison.challenger[metric]
        if champion is None:
            return ConditionResult(
                **base, op=self.op, value=value, met=True,
                message=f"{metric}: no champion yet, '{self.text}' holds trivially")
        higher = greater_is_better(metric, directions)
        op, delta = self.op, self.value
        if op is None:  # a margin: beat the champion by it, in the better direction
            op, delta = (">=", delta) if higher else ("<=", -delta)
        notes = []
        worse_allowed = (higher and op in (">=", ">") and delta < 0) or (
            not higher and op in ("<=", "<") and delta > 0)
        given_up = (comparison.shortfall.get(metric, 0.0) if comparison else 0.0)
        if worse_allowed and given_up > 0:
            left = max(0.0, abs(delta) - given_up)
            notes.append(f"tolerance {abs(delta):.4g} less {given_up:.4g} already given up "
                         f"since the best recent champion")
            delta = -left if higher else left
        threshold = champion + delta
        record = comparison.interval(metric, self.level or 0.95) if comparison else None
        extra: dict[str, Any] = {"champion": champion, "interval": record}
        if self.level is not None:
            if record is None or record["low"] is None:
                return ConditionResult(
                    **base, op=op, value=value, met=False, closed=True, champion=champion,
                    message=f"{metric}: '{self.text}' fails closed: no interval of the "
                            f"difference with the champion")
            # The interval's worse end must clear the margin.
            bound = record["low"] if op in (">=", ">") else record["high"]
            ok = OPERATORS[op](bound, delta)
            verdict = "meets" if ok else "misses"
            side = "lower" if op in (">=", ">") else "upper"
            line = (f"{metric} difference's {side} bound {bound:+.4g} at "
                    f"{self.level * 100:g}% {verdict} {op} {delta:+.4g} ({self.text})")
            extra.update(threshold=delta, bound=bound)
        else:
            ok = OPERATORS[op](value, threshold)
            verdict = "meets" if ok else "misses"
            line = f"{metric} {value:.4g} {verdict} {op} {threshold:.4g} ({self.text})"
            extra.update(threshold=threshold)
        if comparison is not None:
            from conveyor.uncertainty import describe

            who = f"champion v{comparison.version}" if comparison.version else "champion"
            notes.insert(0, f"{who} {champion:.4g} on {comparison.where}"
                         + (f", {describe({**record, 'rows': None})}" if record else ""))
        return ConditionResult(**base, **extra, op=op, value=value, met=ok,
                               message=line + (f" [{'; '.join(notes)}]" if notes else ""))


@dataclass(frozen=True)
class ConditionResult:
    """One condition of a gate or policy, checked: `metric` `op` `threshold` against `value`,
    `met` or not. For a relative condition `threshold` is the champion's value moved by the
    condition's offset (or, with an interval, the margin the difference's bound must clear:
    `bound` at `level`), `champion` the champion's value and `interval` the paired difference
    with its interval. `closed` says the condition failed closed (no champion comparison, the
    metric not computed). `message` is the line shown to users (and `str()` of it); `slice`
    names the slice ("column=value") a slice condition was checked on."""

    metric: str
    op: str | None
    threshold: float | None = None
    value: float | None = None
    met: bool = False
    message: str = ""
    condition: str = ""
    relative: bool = False
    level: float | None = None
    champion: float | None = None
    interval: Mapping[str, Any] | None = None
    bound: float | None = None
    closed: bool = False
    slice: str | None = None

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {key: (dict(value) if isinstance(value, Mapping) else value)
                for key, value in self.__dict__.items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConditionResult:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_text(cls, text: str) -> ConditionResult:
        """A reason stored as text (registries written before results were structured): the
        metric is its first word; it failed when it says so."""
        metric = text.split(":", 1)[0].split(" ", 1)[0] if text else ""
        if text.startswith("slice "):
            metric = text.split(": ", 1)[-1].split(":", 1)[0].split(" ", 1)[0]
        return cls(metric=metric, op=None, met=not any(word in text for word in FAILING),
                   message=text, closed="fails closed" in text or "not computed" in text)

    @classmethod
    def read(cls, item: Any) -> ConditionResult:
        """A stored or given reason: a result, its dict, or its text."""
        if isinstance(item, ConditionResult):
            return item
        if isinstance(item, Mapping):
            return cls.from_dict(item)
        return cls.from_text(str(item))


def parse_condition(text: object, where: str, metric: str = "") -> Condition:
    raw = str(text)
    margin = MARGIN.match(raw)
    match = margin or PATTERN.match(raw)
    if not match:
        raise ConfigError(f"cannot read the condition '{raw}' at {where}", hint=HINT)
    level = None
    if match["level"] is not None:
        level = float(match["level"]) / 100
        if not 0.5 <= level < 1:
            raise ConfigError(f"{where}: '{raw}' asks for a {match['level']}% interval; "
                              "use a level from 50% to 99.9%", hint=HINT)
    if margin:
        return Condition(None, float(margin["margin"]), True, raw, level)
    if match["abs"] is not None:
        return Condition(match["op"], float(match["abs"]), False, raw)
    delta = float(match["delta"] or 0) * (-1 if match["sign"] == "-" else 1)
    return Condition(match["op"], delta, True, raw, level)


def parse_gate(gate: Mapping[str, object], where: str,
               known: Sequence[str] | None = None, *, paired: bool = True
               ) -> dict[str, Condition]:
    """The gate's conditions; with `known` (the metrics that will be computed) a condition on
    any other metric is a ConfigError naming its key. Without `paired` (conditions checked on
    one model's scores, as monitoring does) asking for an interval ("at 95%") is one too."""
    conditions = {}
    for metric, text in (gate or {}).items():
        if known and metric not in known:
            import difflib

            close = difflib.get_close_matches(str(metric), list(known), n=1)
            raise ConfigError(f"{where}.{metric}: '{metric}' is not among the metrics computed "
                              f"({', '.join(known)})",
                              hint=f"did you mean '{close[0]}'?" if close else
                              "add it to evaluate.metrics")
        condition = parse_condition(text, f"{where}.{metric}", metric)
        if condition.level is not None and not paired:
            raise ConfigError(f"{where}.{metric}: '{text}' asks for an interval, which needs "
                              "two models scored on the same rows; here there is one",
                              hint="drop 'at L%' here; evaluate.gate and retrain.promote_if "
                                   "can ask for it")
        conditions[metric] = condition
    return conditions


def evaluate_gate(
    gate: Mapping[str, Condition],
    metrics: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    slice_gate: Mapping[str, Condition] | None = None,
    slices: Mapping[str, Mapping[str, float]] | None = None,
    slice_column: str | None = None,
    directions: Mapping[str, str] | None = None,
    comparison: Comparison | None = None,
) -> tuple[bool, list[ConditionResult]]:
    """(passed, results): every condition, overall and on every slice, must hold. The results
    hold every overall condition and the slice conditions that failed."""
    passed, results = True, []
    for metric, condition in gate.items():
        if metric not in metrics:
            passed = False
            results.append(ConditionResult(
                metric=metric, op=condition.op, met=False, closed=True, condition=condition.text,
                relative=condition.relative, level=condition.level,
                message=f"{metric}: not computed, so the gate cannot pass "
                        f"(add it to evaluate.metrics)"))
            continue
        result = condition.result(metric, metrics[metric], (champion or {}).get(metric),
                                  directions=directions,
                                  comparison=comparison if condition.relative else None)
        passed &= result.met
        results.append(result)
    for slice_value, slice_metrics in (slices or {}).items():
        for metric, condition in (slice_gate or {}).items():
            if metric not in slice_metrics:
                continue
            result = condition.result(metric, slice_metrics[metric], None,
                                      directions=directions)
            passed &= result.met
            if not result.met:
                where = f"{slice_column}={slice_value}"
                results.append(replace(result, slice=where,
                                       message=f"slice {where}: {result.message}"))
    return passed, results


FAILING = (" misses ", "not computed", "fails closed")


def failing(reasons: Iterable[ConditionResult | Mapping[str, Any] | str]) -> list[str]:
    """The messages of the conditions that did not hold, for showing why a gate or policy said
    no. Takes `evaluate_gate`'s results, or reasons as a registry stores them (result dicts, or
    the text lines of registries written before results were structured)."""
    return [result.message for result in map(ConditionResult.read, reasons) if not result.met]


def gate_results(gate: Mapping[str, Any]) -> list[ConditionResult]:
    """A registered version's gate decision (`ModelVersion.gate`) as condition results: from
    its `conditions` when recorded, else read from its `reasons` text."""
    stored = gate.get("conditions")
    if isinstance(stored, list) and stored:
        return [ConditionResult.read(item) for item in stored]
    reasons = gate.get("reasons", [])
    return [ConditionResult.read(r) for r in (reasons if isinstance(reasons, list)
                                               else [reasons])]


def shortfall_after(comparison: Comparison | None, directions: Mapping[str, str] | None = None
                    ) -> dict[str, float]:
    """What a challenger promoted over `comparison`'s champion has given up since the best
    recent champion, per metric: the champion's own shortfall plus how much worse the
    challenger scored on the same rows (an improvement pays it back, down to 0)."""
    if comparison is None or comparison.unavailable:
        return dict(comparison.shortfall) if comparison else {}
    result = {}
    for metric in comparison.champion:
        if metric not in comparison.challenger:
            continue
        gain = comparison.challenger[metric] - comparison.champion[metric]
        if not greater_is_better(metric, directions):
            gain = -gain
        result[metric] = max(0.0, comparison.shortfall.get(metric, 0.0) - gain)
    return result
