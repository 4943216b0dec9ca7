"""Threshold conditions and the evaluation gate. Conditions are parsed, never evaluated as code.

  ">= 0.80"              absolute
  ">= champion - 0.01"   relative to the current champion's value on the same data
  "+0.005"               beat the champion by this much (direction-aware for error metrics)
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass

from conveyor.errors import ConfigError
from conveyor.metrics import greater_is_better

OPERATORS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt,
             "==": operator.eq, "!=": operator.ne}
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
PATTERN = re.compile(
    rf"^\s*(?P<op>>=|<=|==|!=|>|<)\s*(?:(?P<abs>{NUMBER})|champion\s*(?:(?P<sign>[-+])\s*"
    rf"(?P<delta>{NUMBER}))?)\s*$")
MARGIN = re.compile(rf"^\s*(?P<margin>[-+]{NUMBER})\s*$")


@dataclass(frozen=True)
class Condition:
    op: str
    value: float  # the threshold, or the offset from the champion
    relative: bool
    text: str

    def check(self, metric: str, value: float, champion: float | None) -> tuple[bool, str]:
        if self.relative:
            if champion is None:
                return True, f"{metric}: no champion yet, '{self.text}' holds trivially"
            threshold = champion + self.value
        else:
            threshold = self.value
        ok = OPERATORS[self.op](value, threshold)
        verdict = "meets" if ok else "misses"
        return ok, f"{metric} {value:.4g} {verdict} {self.op} {threshold:.4g} ({self.text})"


def parse_condition(text: object, where: str, metric: str = "") -> Condition:
    raw = str(text)
    margin = MARGIN.match(raw)
    if margin:
        delta = float(margin["margin"])
        op = ">=" if greater_is_better(metric) else "<="
        return Condition(op, delta if op == ">=" else -delta, True, raw)
    match = PATTERN.match(raw)
    if not match:
        raise ConfigError(
            f"cannot read the condition '{raw}' at {where}",
            hint="write e.g. '>= 0.8', '< 0.3', '>= champion - 0.01' or '+0.005'")
    if match["abs"] is not None:
        return Condition(match["op"], float(match["abs"]), False, raw)
    delta = float(match["delta"] or 0) * (-1 if match["sign"] == "-" else 1)
    return Condition(match["op"], delta, True, raw)


def parse_gate(gate: Mapping[str, object], where: str) -> dict[str, Condition]:
    return {metric: parse_condition(text, f"{where}.{metric}", metric)
            for metric, text in (gate or {}).items()}


def evaluate_gate(
    gate: Mapping[str, Condition],
    metrics: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    slice_gate: Mapping[str, Condition] | None = None,
    slices: Mapping[str, Mapping[str, float]] | None = None,
    slice_column: str | None = None,
) -> tuple[bool, list[str]]:
    """(passed, reasons): every condition, overall and on every slice, must hold."""
    passed, reasons = True, []
    for metric, condition in gate.items():
        if metric not in metrics:
            passed = False
            reasons.append(f"{metric}: not computed, so the gate cannot pass "
                           f"(add it to evaluate.metrics)")
            continue
        ok, why = condition.check(metric, metrics[metric], (champion or {}).get(metric))
        passed &= ok
        reasons.append(why)
    for slice_value, slice_metrics in (slices or {}).items():
        for metric, condition in (slice_gate or {}).items():
            if metric not in slice_metrics:
                continue
            ok, why = condition.check(metric, slice_metrics[metric], None)
            passed &= ok
            if not ok:
                reasons.append(f"slice {slice_column}={slice_value}: {why}")
    return passed, reasons
