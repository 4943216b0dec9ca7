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
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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
    def from_evaluation(cls, evaluation: Mapping[str, Any],
                        shortfall: Mapping[str, float] | None = None) -> Comparison | None:
        """From an evaluate stage's output: its `comparison` section, or (older stages) its
        `champion` metrics next to the challenger's overall ones on the same test set."""
        shortfall = dict(shortfall or {})
        section = evaluation.get("comparison")
        if section:
            rows = section.get("rows")
            return cls(champion=section.get("champion") or {},
                       challenger=section.get("challenger") or {}, rows=rows,
                       version=section.get("champion_version"),
                       diffs=section.get("bootstrap") or {},
                       unavailable=section.get("unavailable"), shortfall=shortfall,
                       where=f"{rows:,} test rows it never trained on" if rows else
                       "the same rows")
        if evaluation.get("champion"):
            return cls(champion=evaluation["champion"], challenger=evaluation.get("overall", {}),
                       version=evaluation.get("champion_version"), shortfall=shortfall,
                       where="the same test set")
        if evaluation.get("champion_version") is not None:
            return cls(version=evaluation["champion_version"], shortfall=shortfall,
                       unavailable=f"champion v{evaluation['champion_version']} could not be "
                                   "scored")
        return None

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
        """(holds, why). Relative conditions compare with `comparison` (champion and challenger
        on the same rows) when given, else with the bare `champion` value."""
        if not self.relative:
            ok = OPERATORS[self.op](value, self.value)  # type: ignore[index]
            verdict = "meets" if ok else "misses"
            return ok, f"{metric} {value:.4g} {verdict} {self.op} {self.value:.4g} ({self.text})"
        if comparison is not None and comparison.unavailable:
            return False, (f"{metric}: '{self.text}' fails closed: {comparison.unavailable} "
                           f"(`conveyor models promote NAME VERSION --force` overrides, "
                           f"recorded as forced)")
        if comparison is not None:
            if metric not in comparison.champion or metric not in comparison.challenger:
                return False, (f"{metric}: '{self.text}' fails closed: the champion was not "
                               f"scored on {metric}")
            champion, value = comparison.champion[metric], comparison.challenger[metric]
        if champion is None:
            return True, f"{metric}: no champion yet, '{self.text}' holds trivially"
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
        if self.level is not None:
            if record is None or record["low"] is None:
                return False, (f"{metric}: '{self.text}' fails closed: no interval of the "
                               f"difference with the champion")
            # The interval's worse end must clear the margin.
            bound = record["low"] if op in (">=", ">") else record["high"]
            ok = OPERATORS[op](bound, delta)
            verdict = "meets" if ok else "misses"
            side = "lower" if op in (">=", ">") else "upper"
            line = (f"{metric} difference's {side} bound {bound:+.4g} at "
                    f"{self.level * 100:g}% {verdict} {op} {delta:+.4g} ({self.text})")
        else:
            ok = OPERATORS[op](value, threshold)
            verdict = "meets" if ok else "misses"
            line = f"{metric} {value:.4g} {verdict} {op} {threshold:.4g} ({self.text})"
        if comparison is not None:
            from conveyor.uncertainty import describe

            who = f"champion v{comparison.version}" if comparison.version else "champion"
            notes.insert(0, f"{who} {champion:.4g} on {comparison.where}"
                         + (f", {describe({**record, 'rows': None})}" if record else ""))
        return ok, line + (f" [{'; '.join(notes)}]" if notes else "")


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
) -> tuple[bool, list[str]]:
    """(passed, reasons): every condition, overall and on every slice, must hold."""
    passed, reasons = True, []
    for metric, condition in gate.items():
        if metric not in metrics:
            passed = False
            reasons.append(f"{metric}: not computed, so the gate cannot pass "
                           f"(add it to evaluate.metrics)")
            continue
        ok, why = condition.check(metric, metrics[metric], (champion or {}).get(metric),
                                  directions=directions,
                                  comparison=comparison if condition.relative else None)
        passed &= ok
        reasons.append(why)
    for slice_value, slice_metrics in (slices or {}).items():
        for metric, condition in (slice_gate or {}).items():
            if metric not in slice_metrics:
                continue
            ok, why = condition.check(metric, slice_metrics[metric], None, directions=directions)
            passed &= ok
            if not ok:
                reasons.append(f"slice {slice_column}={slice_value}: {why}")
    return passed, reasons


FAILING = (" misses ", "not computed", "fails closed")


def failing(reasons: Iterable[str]) -> list[str]:
    """The reasons of `evaluate_gate` (or `Condition.check`) that say a condition did not hold,
    for showing why a gate or policy said no."""
    return [r for r in reasons if any(word in r for word in FAILING)]


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
