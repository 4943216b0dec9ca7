"""Conditions are parsed, never evaluated; the gate combines absolute, relative and slice rules."""

from __future__ import annotations

import pytest
from conveyor.errors import ConfigError
from conveyor.gate import evaluate_gate, parse_condition, parse_gate


@pytest.mark.parametrize("text, value, champion, holds", [
    (">= 0.8", 0.81, None, True),
    (">= 0.8", 0.79, None, False),
    ("< 0.3", 0.2, None, True),
    (">= champion - 0.01", 0.795, 0.80, True),
    (">= champion - 0.01", 0.78, 0.80, False),
    ("> champion", 0.81, 0.80, True),
    (">= champion", 0.10, None, True),  # no champion yet: relative rules hold
])
def test_conditions(text, value, champion, holds):
    assert parse_condition(text, "evaluate.gate.m").check("m", value, champion)[0] is holds


def test_margin_shorthand_is_direction_aware():
    better = parse_condition("+0.005", "retrain.promote_if.roc_auc", "roc_auc")
    assert better.check("roc_auc", 0.806, 0.80)[0] and not better.check("roc_auc", 0.804, 0.80)[0]
    lower = parse_condition("+0.5", "x", "mean_absolute_error")
    assert lower.check("mean_absolute_error", 9.4, 10.0)[0]
    assert not lower.check("mean_absolute_error", 9.6, 10.0)[0]


@pytest.mark.parametrize("text", ["__import__('os').system('x')", ">= 0.8; rm -rf /", "big",
                                  ">= champion * 2", ""])
def test_anything_else_is_refused_not_evaluated(text):
    with pytest.raises(ConfigError, match="cannot read the condition"):
        parse_condition(text, "evaluate.gate.roc_auc")


def test_gate_reports_every_rule_and_every_failing_slice():
    gate = parse_gate({"roc_auc": ">= 0.8", "f1": ">= champion - 0.02"}, "evaluate.gate")
    passed, reasons = evaluate_gate(
        gate, {"roc_auc": 0.85, "f1": 0.60}, {"f1": 0.65},
        slice_gate=parse_gate({"roc_auc": ">= 0.7"}, "evaluate.slices.gate"),
        slices={"north": {"roc_auc": 0.9}, "south": {"roc_auc": 0.6}}, slice_column="region")
    assert not passed
    assert any(r.startswith("roc_auc 0.85 meets") for r in reasons)
    assert any(r.startswith("f1 0.6 misses >= 0.63") for r in reasons)
    assert any(r.startswith("slice region=south: roc_auc 0.6 misses") for r in reasons)
    assert not any("north" in r for r in reasons)


def test_a_gated_metric_that_was_not_computed_fails_the_gate():
    passed, reasons = evaluate_gate(parse_gate({"r2": ">= 0.5"}, "g"), {"mae": 1.0}, None)
    assert not passed and "not computed" in reasons[0]
