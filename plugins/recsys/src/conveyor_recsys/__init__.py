"""Conveyor's recommendation plugin: interactions, temporal splits, candidate generators
(popularity, item-item, implicit's ALS), ranking evaluation, the `recommend` pipeline and the
`recommender` template, and `conveyor recommend` (batch slates, `conveyor_recsys.batch`).

Only light modules are imported here: numpy, scipy, pandas and implicit are imported inside
the stages, so `conveyor --help` and fully cached runs never pay for them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import conveyor

from conveyor_recsys import codecs, settings, templates

if TYPE_CHECKING:
    from conveyor.feedback import FeedbackResult, FeedbackSettings

__version__ = "0.1.0"


@conveyor.hookimpl
def conveyor_stage_types(register: Callable[[conveyor.StageType], None]) -> None:
    from conveyor_recsys import rank_stages, stages

    for stage_type in [*stages.STAGE_TYPES, *rank_stages.STAGE_TYPES]:
        register(stage_type)


@conveyor.hookimpl
def conveyor_config_schemas(register: Callable[[conveyor.ConfigSchema], None]) -> None:
    register(settings.SCHEMA)


@conveyor.hookimpl
def conveyor_config_dirs(register: Callable[[Path], None]) -> None:
    register(Path(__file__).parent / "conf")


@conveyor.hookimpl
def conveyor_codecs(register: Callable[[conveyor.Codec], None]) -> None:
    register(codecs.NPZ)
    register(codecs.FRAMES)


@conveyor.hookimpl
def conveyor_project_templates(register: Callable[[conveyor.ProjectTemplate], None]) -> None:
    register(templates.RECOMMENDER)


@conveyor.hookimpl
def conveyor_cli_commands(register: Callable[[conveyor.CliCommand], None]) -> None:
    from conveyor_recsys.batch import RECOMMEND

    register(RECOMMEND)


@conveyor.hookimpl
def conveyor_join_feedback(session: conveyor.Session, model_name: str | None, events: Path,
                           source: str, settings: FeedbackSettings) -> FeedbackResult | None:
    """Purchases and clicks joined to the served slates (`conveyor_recsys.feedback`); None
    when the model is not a recommender."""
    from conveyor_recsys.feedback import join_feedback

    return join_feedback(session, model_name, events, source, settings)
