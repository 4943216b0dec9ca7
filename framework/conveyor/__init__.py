"""Conveyor: config-driven machine-learning pipelines with pluggy plugins.

The public API for plugin authors is exactly what `__all__` lists (the hooks' argument types
among them: `RunInfo`, `Stage`, `StageContext`, `Alert`, `Host` with its `PluginInfo`,
`Session`), plus the documented modules `conveyor.hookspecs` (the hook reference),
`conveyor.api` (run a project, read a recorded run), `conveyor.alerts` (fire an `Alert` to
every `conveyor_alert` plugin), `conveyor.compiled` (a version scored by a compiled form of
its model, its parity gate and record: `conveyor_compile_model`'s types),
`conveyor.durations` (durations such as "7d" in settings and options), `conveyor.errors`,
`conveyor.evaluation` (what an evaluate stage hands the register stage), `conveyor.feedback`
(delayed feedback joined to what was served: `conveyor_join_feedback`'s types), `conveyor.gate`,
`conveyor.promotion` (when a registered version becomes champion), `conveyor.contract` (a model
version's contract), `conveyor.fingerprints` (one fingerprint per data row: which rows a model
trained on), `conveyor.names` (the rule for names that become paths: project and model names,
batch ids), `conveyor.predictions` (the prediction log a server writes and monitoring reads),
`conveyor.serving` (what a server needs from a model: `RecommendingModel`),
`conveyor.secrets` (redacting secrets from what is stored and shown), `conveyor.store` (with
`conveyor.store.runs`, the recorded runs, and `conveyor.store.tables`, the tables a plugin
keeps in the store; conveyor-monitor's batches and conveyor-retrain's decisions are in
`conveyor_monitor.records` and `conveyor_retrain.records`), `conveyor.tables` (reading a data
table, CSV, TSV or Parquet, the one way every stage and plugin reads it), `conveyor.testing`,
`conveyor.threads` (native thread pools sized to the free cores: `limited(n)` for a stage run
elsewhere than the runner, e.g. in a Ray task),
`conveyor.uncertainty` (paired comparisons of two models on the same rows, with bootstrap
intervals) and `conveyor.validation`
(validating data against `data.schema` through whichever plugin validates it). Everything else
is private and may change.
"""

from conveyor.alerts import Alert
from conveyor.contract import Feature, ModelContract, RowTransform, SchemaSnapshot
from conveyor.contributions import (
    CheckContext,
    CliCommand,
    Codec,
    ConfigSchema,
    DriftDetector,
    DriftResult,
    FeatureDistributions,
    ProjectTemplate,
    StageType,
)
from conveyor.errors import (
    ConfigError,
    ConveyorError,
    GateRejected,
    PluginError,
    StageFailed,
    StoreError,
    UsageError,
)
from conveyor.evaluation import ChampionComparison, EvaluationResult
from conveyor.feedback import FeedbackPeriod, FeedbackResult, FeedbackSettings
from conveyor.host import Host, PluginInfo
from conveyor.markers import hookimpl, hookspec
from conveyor.serving import RecommendedSlate, RecommendingModel
from conveyor.session import Session
from conveyor.stage_context import Inputs, RunInfo, Stage, StageContext
from conveyor.validation import ValidationFailure, ValidationReport

__version__ = "0.1.0"

__all__ = [
    "Alert",
    "ChampionComparison",
    "CheckContext",
    "CliCommand",
    "Codec",
    "ConfigError",
    "ConfigSchema",
    "ConveyorError",
    "DriftDetector",
    "DriftResult",
    "EvaluationResult",
    "Feature",
    "FeatureDistributions",
    "FeedbackPeriod",
    "FeedbackResult",
    "FeedbackSettings",
    "GateRejected",
    "Host",
    "Inputs",
    "ModelContract",
    "PluginError",
    "PluginInfo",
    "ProjectTemplate",
    "RecommendedSlate",
    "RecommendingModel",
    "RowTransform",
    "RunInfo",
    "SchemaSnapshot",
    "Session",
    "Stage",
    "StageContext",
    "StageFailed",
    "StageType",
    "StoreError",
    "UsageError",
    "ValidationFailure",
    "ValidationReport",
    "__version__",
    "hookimpl",
    "hookspec",
]
