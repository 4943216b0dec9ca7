"""Conveyor's scikit-learn plugin: stage types, model config group, codecs, project templates.

Only light modules are imported here: scikit-learn, pandas and skops are imported inside the
stage functions, so `conveyor --help` and fully cached runs never pay for them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import conveyor
import conveyor.compiled

from conveyor_sklearn import codecs, compiling, exporting, scoring, settings, templates

__version__ = "0.1.0"


@conveyor.hookimpl
def conveyor_stage_types(register: Callable[[conveyor.StageType], None]) -> None:
    from conveyor_sklearn import stages

    for stage_type in stages.STAGE_TYPES:
        register(stage_type)
    register(scoring.PREDICT)


@conveyor.hookimpl
def conveyor_cli_commands(register: Callable[[conveyor.CliCommand], None]) -> None:
    register(scoring.PREDICT_COMMAND)
    register(exporting.EXPORT_COMMAND)


@conveyor.hookimpl
def conveyor_config_dirs(register: Callable[[Path], None]) -> None:
    register(Path(__file__).parent / "conf")


@conveyor.hookimpl
def conveyor_config_schemas(register: Callable[[conveyor.ConfigSchema], None]) -> None:
    register(conveyor.ConfigSchema("model", settings.ModelConfig,
                                   "the estimator: _target_, params, task"))


@conveyor.hookimpl
def conveyor_codecs(register: Callable[[conveyor.Codec], None]) -> None:
    register(codecs.ARROW)
    register(codecs.PARQUET)
    register(codecs.SKOPS)
    register(compiling.ONNX)


@conveyor.hookimpl
def conveyor_compile_model(model: Any, features: list[str], kinds: Mapping[str, str]
                           ) -> conveyor.compiled.CompiledArtifact | None:
    return compiling.compile_pipeline(model, features, kinds)


@conveyor.hookimpl
def conveyor_project_templates(register: Callable[[conveyor.ProjectTemplate], None]) -> None:
    register(templates.CLASSIFICATION)
    register(templates.REGRESSION)


@conveyor.hookimpl
def conveyor_target_prefixes(register: Callable[[str], None]) -> None:
    register("sklearn")


