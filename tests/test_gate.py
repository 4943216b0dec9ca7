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
    assert any(r.startswith("roc_auc 0.85 meets") for r in map(str, reasons))
    assert any(r.startswith("f1 0.6 misses >= 0.63") for r in map(str, reasons))
    assert any(r.startswith("slice region=south: roc_auc 0.6 misses") for r in map(str, reasons))
    assert not any("north" in r for r in map(str, reasons))


def test_a_gated_metric_that_was_not_computed_fails_the_gate():
    passed, reasons = evaluate_gate(parse_gate({"r2": ">= 0.5"}, "g"), {"mae": 1.0}, None)
    assert not passed and "not computed" in reasons[0].message and not reasons[0].met


@pytest.mark.parametrize("metric", ["d2_absolute_error_score", "d2_brier_score",
                                    "d2_log_loss_score", "d2_pinball_score", "r2",
                                    "neg_mean_absolute_error", "explained_variance"])
def test_scores_named_after_an_error_are_still_better_when_higher(metric):
    from conveyor.metrics import greater_is_better

    assert greater_is_better(metric)


def test_a_reported_direction_wins_over_the_name():
    from conveyor.metrics import greater_is_better

    assert not greater_is_better("mean_absolute_error")
    assert greater_is_better("custom_error", {"custom_error": "higher"})
    assert not greater_is_better("custom_score", {"custom_score": "lower"})
    margin = parse_condition("+0.01", "g.custom_error", "custom_error")
    assert margin.check("custom_error", 0.52, 0.50, directions={"custom_error": "higher"})[0]
    assert not margin.check("custom_error", 0.52, 0.50)[0]  # guessed: lower is better


def _comparison(champion, challenger, diffs=(), **more):
    from conveyor.gate import Comparison

    return Comparison(champion={"m": champion}, challenger={"m": challenger}, rows=500,
                      version=3, diffs={"m": list(diffs)}, **more)


def test_a_champion_that_could_not_be_compared_fails_relative_conditions_closed():
    from conveyor.gate import Comparison

    closed = Comparison(version=3, unavailable="champion v3 cannot be loaded: gone")
    ok, why = parse_condition(">= champion - 0.01", "g.m").check("m", 0.9, comparison=closed)
    assert not ok and "fails closed: champion v3 cannot be loaded" in why
    # absolute conditions do not need the champion
    passed, _ = evaluate_gate(parse_gate({"m": ">= 0.5"}, "g"), {"m": 0.9}, None,
                              comparison=closed)
    assert passed


def test_at_a_level_the_intervals_worse_end_must_clear_the_margin():
    import numpy as np

    noisy = np.random.default_rng(0).normal(0.02, 0.02, 1000)  # mean +0.02, sd 0.02
    condition = parse_condition("+0.01 at 95%", "g.m", "m")
    assert condition.level == 0.95 and condition.relative
    ok, why = condition.check("m", 0.82, comparison=_comparison(0.80, 0.82, noisy))
    assert not ok and "lower bound" in why and "misses" in why
    assert parse_condition("+0.01", "g.m", "m").check(
        "m", 0.82, comparison=_comparison(0.80, 0.82, noisy))[0]
    sure = noisy - 0.02 + 0.05
    assert condition.check("m", 0.85, comparison=_comparison(0.80, 0.85, sure))[0]
    # lower is better: the upper end of the difference must be below -margin
    error = parse_condition("+0.01 at 90%", "g.mae", "mae")
    assert error.check("mae", 0.75, comparison=_comparison_for("mae", 0.80, 0.75, -sure))[0]


def _comparison_for(metric, champion, challenger, diffs):
    from conveyor.gate import Comparison

    return Comparison(champion={metric: champion}, challenger={metric: challenger}, rows=500,
                      diffs={metric: list(diffs)})


@pytest.mark.parametrize("text", ["+0.01 at 120%", "+0.01 at 10%", "+0.01 at", "+0.01 at 95",
                                  ">= 0.8 at 95%"])
def test_malformed_levels_are_refused(text):
    with pytest.raises(ConfigError, match=r"evaluate\.gate\.m"):
        parse_condition(text, "evaluate.gate.m", "m")


def test_a_tolerance_is_reduced_by_what_earlier_promotions_gave_up():
    from conveyor.gate import shortfall_after

    tolerance = parse_condition(">= champion - 0.02", "g.m", "m")
    fresh = _comparison(0.80, 0.785)
    assert tolerance.check("m", 0.785, comparison=fresh)[0]
    given_up = shortfall_after(fresh)
    assert given_up["m"] == pytest.approx(0.015)
    # the next step has only 0.005 left: 0.79 -> 0.78 is refused, 0.79 -> 0.786 is not
    after = _comparison(0.79, 0.78, shortfall=given_up)
    ok, why = tolerance.check("m", 0.78, comparison=after)
    assert not ok and "already given up" in why
    assert tolerance.check("m", 0.786, comparison=_comparison(0.79, 0.786, shortfall=given_up))[0]
    # an improvement pays it back
    assert shortfall_after(_comparison(0.785, 0.80, shortfall=given_up))["m"] == 0.0
    # a margin that asks for better is not affected
    assert parse_condition("+0.0", "g.m", "m").check(
        "m", 0.80, comparison=_comparison(0.79, 0.80, shortfall={"m": 0.5}))[0]


def test_conditions_checked_on_one_model_cannot_ask_for_an_interval():
    assert parse_gate({"m": "+0.01 at 95%"}, "evaluate.gate")["m"].level == 0.95
    with pytest.raises(ConfigError, match=r"monitor\.performance\.m: .* asks for an interval"):
        parse_gate({"m": ">= champion - 0.05 at 95%"}, "monitor.performance", paired=False)
