"""The core stage type `conveyor.register`: record the trained model as a new version of the
model in the registry, with its lineage and the gate's decision; make it champion if it passes.

It needs a stage producing `model` (stored) and one producing `metrics`, a
`conveyor.EvaluationResult` in its stored form (`to_dict()`; see `conveyor.evaluation`),
checked here: a malformed one fails this stage naming the stage that produced it. Its
`comparison` scores champion and challenger on the same rows (those the champion never trained
on) and `unavailable` says why they could not be compared: relative conditions then fail
closed. The gate's results (`conveyor.gate.ConditionResult`) are recorded with the version, as
text (`reasons`) and as data (`conditions`); promotion follows `conveyor.promotion.on_gate`
once the run has completed. A stored `training_rows` input (a frame with a `fingerprint`
column, one per training row) is kept with the version, so later comparisons leave those rows
out.
The version is recorded with its contract (`conveyor.ModelContract`, `StageContext.contract`):
the schema the data was validated against, target, id column, features, inference path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor import promotion
from conveyor.contributions import CheckContext, StageType
from conveyor.errors import ConfigError, StageFailed, UsageError
from conveyor.evaluation import EvaluationResult
from conveyor.gate import Comparison, evaluate_gate, failing, parse_gate, shortfall_after
from conveyor.stage_context import StageContext
from conveyor.store.registry import CHAMPION


@dataclass
class RegisterSettings:
    model_name: str = "model"
    gate: dict[str, str] = field(default_factory=dict)
    metrics: list[str] = field(default_factory=list)  # evaluate.metrics: what the gate may name
    slice_gate: dict[str, str] = field(default_factory=dict)
    promote: bool = True


def _check(settings: Mapping[str, Any], ctx: CheckContext) -> None:
    parse_gate(settings["gate"], "evaluate.gate", known=settings.get("metrics"))
    for metric, condition in parse_gate(settings["slice_gate"], "evaluate.slices.gate",
                                        known=settings.get("metrics")).items():
        if condition.relative:
            # Slices are scored for the challenger only: a condition relative to the
            # champion would hold trivially on every slice.
            raise ConfigError(
                f"evaluate.slices.gate.{metric}: '{condition.text}' is relative to the "
                "champion, which is not scored per slice",
                hint="give slices an absolute condition (e.g. '>= 0.7'); relative conditions "
                     "belong in evaluate.gate")


def _register(ctx: StageContext) -> Mapping[str, Any]:
    settings = ctx.settings
    name = settings["model_name"]
    model_ref = ctx.inputs.ref("model")
    if model_ref is None:
        raise StageFailed(f"stage '{ctx.name}' needs a stored 'model' input; none of "
                          "the stages it needs produced one")
    evaluation = EvaluationResult.from_dict(ctx.inputs["metrics"],
                                            stage=ctx.inputs.producer("metrics"))
    metrics = dict(evaluation.overall)
    directions = dict(evaluation.directions)
    champion_version = evaluation.champion_version
    shortfall: dict[str, float] = {}
    if champion_version is not None:
        try:
            shortfall = ctx.registry.get(name, champion_version).gate.get("shortfall") or {}
        except UsageError:
            shortfall = {}
    comparison = evaluation.gate_comparison(shortfall)
    passed, results = evaluate_gate(
        parse_gate(settings["gate"], "evaluate.gate"), metrics, evaluation.champion,
        slice_gate=parse_gate(settings["slice_gate"], "evaluate.slices.gate"),
        slices=evaluation.slices, slice_column=evaluation.slice_column,
        directions=directions, comparison=comparison)
    reasons = [result.message for result in results]
    decision = "passed" if passed else "rejected"
    record: dict[str, Any] = {
        "rules": dict(settings["gate"]), "reasons": reasons,
        "conditions": [result.to_dict() for result in results],
        "champion": dict(evaluation.champion) if evaluation.champion is not None else None,
        "champion_version": champion_version,
        "directions": directions, "comparison": summarise(comparison, evaluation),
        "shortfall": shortfall_after(comparison, directions)}
    training_rows = ctx.inputs.ref("training_rows")
    if training_rows is not None:
        record["training_rows"] = training_rows.as_dict()
    version = ctx.registry.register(
        name=name, run_id=ctx.run.id, stage=ctx.name, artifact=model_ref.as_dict(),
        metrics=metrics, gate=record, decision=decision, config_hash=ctx.run.config_hash,
        data=dict(ctx.run.data_versions), contract=ctx.contract())
    # Its compiled form (conveyor.compiled), once the run has succeeded: the test rows the
    # parity gate checks are then recorded. Before promotion, so a server picking up the new
    # champion finds it compiled.
    ctx.on_run_success(lambda: _compile(ctx, name, version))
    promoting = passed and settings["promote"]
    if promoting:
        # Promotion waits for the whole run: a stage after this one, or a plugin's
        # conveyor_finish_run, that fails the run must leave the champion as it was.
        ctx.on_run_success(lambda: promotion.on_gate(ctx.registry, name, version, results,
                                                     champion_version).message)
    if passed:
        message = f"{name} v{version} registered" + (
            ", to be promoted to champion once the run completes" if promoting else "")
    else:
        message = f"{name} v{version} registered, not promoted: " + "; ".join(failing(results))
    ctx.log(message)
    # Not promoted yet: that happens once the run completes (`promotion` says it waits).
    return {"registration": {"model": name, "version": version, "decision": decision,
                             "promoted": False,
                             "promotion": "pending" if promoting else None,
                             "reasons": reasons},
            "verdict": {"ok": passed, "message": message, "model": name, "version": version}}


def _compile(ctx: StageContext, name: str, version: int) -> None:
    """Build, check and record the version's compiled form; a failure is recorded as the
    reason it is served by Python, never a failed run."""
    from conveyor.compiled import TEST_OUTPUT, CompiledStatus, compile_version
    from conveyor.session import Session

    try:
        rows = ctx.run_output(TEST_OUTPUT)  # in memory: nothing downloaded again
        # The command's own session when there is one: one plugin host per command.
        scope = contextlib.nullcontext(ctx.session) if ctx.session is not None \
            else Session(ctx.project_dir)
        with scope as session:
            status, _ = compile_version(session, ctx.registry.get(name, version),
                                        model=ctx.inputs["model"], contract=ctx.contract(),
                                        rows=rows, log=ctx.log)
    except Exception as exc:  # never fails the run: recorded as the reason instead
        status = CompiledStatus.python(f"compiling failed: {type(exc).__name__}: {exc}")
        # Unrecorded, first use (`load_model(compiled=True)`) builds it again.
        with contextlib.suppress(Exception):
            ctx.registry.record_compiled(name, version, status)
    if not status.compiled:
        ctx.log(f"{name} v{version} is served by its Python model: {status.reason}")
    return None


def summarise(comparison: Comparison | None, evaluation: Mapping[str, Any] | EvaluationResult
              ) -> dict[str, Any] | None:
    """What the registry keeps of a comparison: the rows, both models' scores, and the paired
    difference with its 95% interval per metric (the bootstrap itself is not kept)."""
    if comparison is None:
        return None
    if not isinstance(evaluation, EvaluationResult):
        evaluation = EvaluationResult.from_dict(evaluation)
    section = evaluation.comparison
    summary: dict[str, Any] = {
        "champion_version": comparison.version, "rows": comparison.rows,
        "test_rows": section.test_rows if section else None,
        "excluded": section.excluded if section else None,
        "champion": dict(comparison.champion), "challenger": dict(comparison.challenger),
        "unavailable": comparison.unavailable, "intervals": {}}
    for metric in comparison.champion:
        interval = comparison.interval(metric, 0.95)
        if interval is not None:
            summary["intervals"][metric] = interval
    return summary


def replayed(registry: Any, verdict: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """A cached register stage's verdict, told as the registry is now: the version it
    registered back then, and who is champion today (not the old run's message)."""
    name, version = verdict["model"], verdict["version"]
    try:
        record = registry.get(name, version)
    except UsageError:
        return {**verdict, "message": f"nothing changed since run {run_id}, whose {name} "
                                      f"v{version} is no longer in the registry"}
    champion = registry.aliases(name).get(CHAMPION)
    status = ("is the champion" if champion == version else
              f"is not the champion (v{champion} is)" if champion is not None else
              "is not the champion (there is none)")
    gate = "passed" if record.decision == "passed" else "was rejected by"
    return {**verdict, "message": f"nothing changed since run {run_id}: {name} v{version} "
                                  f"(registered then; it {gate} the gate) {status}"}


REGISTER = StageType(
    name="conveyor.register", run=_register, settings_schema=RegisterSettings, check=_check,
    description="register the model as a new version; promote it if it passes the gate",
    outputs={"registration": "the model name, version, gate decision, whether it is promoted "
                             "and the gate's reasons",
             "verdict": "ok and a one-line message, shown by `conveyor run`"})
