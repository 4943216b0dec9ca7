"""Conveyor's monitoring plugin: `conveyor monitor` checks batches (or the serving log) against
the champion for drift and performance, records each in the store (`conveyor_monitor.records.Monitoring`),
fires alerts (`conveyor_alert`) and writes JSON and HTML reports.

Hooks: `conveyor_config_schemas` (the `monitor` section), `conveyor_config_dirs` (monitor
presets), `conveyor_drift_detectors` (psi, ks, chi2, js), `conveyor_alert` (log and webhook
deliveries), `conveyor_cli_commands` (`monitor`, `feedback`), `conveyor_join_feedback`
(delayed labels of classifiers and regressors, `conveyor_monitor.delayed`),
`conveyor_store_tables` (`monitor_batches`, see `conveyor_monitor.records`). numpy, scipy,
pandas and scikit-learn are imported inside functions only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import conveyor
from conveyor.feedback import FeedbackResult, FeedbackSettings

from conveyor_monitor.settings import FEEDBACK_SCHEMA, SCHEMA

__version__ = "0.1.0"


@conveyor.hookimpl
def conveyor_store_tables(register: Callable[..., None]) -> None:
    from conveyor_monitor.records import TABLES

    register(TABLES)


@conveyor.hookimpl
def conveyor_config_schemas(register: Callable[[conveyor.ConfigSchema], None]) -> None:
    register(SCHEMA)
    register(FEEDBACK_SCHEMA)


@conveyor.hookimpl
def conveyor_config_dirs(register: Callable[[Path], None]) -> None:
    register(Path(__file__).parent / "conf")


@conveyor.hookimpl
def conveyor_drift_detectors(register: Callable[[conveyor.DriftDetector], None]) -> None:
    from conveyor_monitor.detectors import BUILT_IN

    for detector in BUILT_IN:
        register(detector)


@conveyor.hookimpl
def conveyor_alert(alert: Any, project_dir: Path, config: Any) -> None:
    from conveyor_monitor.alerts import log_alert, webhook_alert
    from conveyor_monitor.settings import settings_from

    settings = settings_from(config)
    log_alert(alert, project_dir, settings)
    webhook_alert(alert, project_dir, settings)


@conveyor.hookimpl
def conveyor_cli_commands(register: Callable[[conveyor.CliCommand], None]) -> None:
    from conveyor_monitor.command import MONITOR
    from conveyor_monitor.feedback import FEEDBACK

    register(MONITOR)
    register(FEEDBACK)


@conveyor.hookimpl
def conveyor_monitor_batch(data: Path, labels: Path | None, model: str | None, quiet: bool,
                           session: Any) -> Any:
    """`conveyor monitor --data DATA` as a call: the recorded batch (any status)."""
    from conveyor_monitor.check import Request, check_batch

    outcome = check_batch(session, Request(data=Path(data), labels=labels, model=model, quiet=quiet))
    return outcome.record



@conveyor.hookimpl(trylast=True)
def conveyor_join_feedback(session: conveyor.Session, model_name: str | None, events: Path,
                           source: str, settings: FeedbackSettings) -> FeedbackResult | None:
    """Delayed labels joined to logged predictions (classification, regression); runs last,
    after a recommender plugin had its chance (`conveyor_monitor.delayed`)."""
    from conveyor_monitor.delayed import join_labels

    return join_labels(session, model_name, events, source, settings)
