"""Alerts: what monitoring and retraining tell people, delivered through `conveyor_alert`.

    from conveyor.alerts import Alert, fire

    fire(session, Alert(kind="drift", severity="warning", message="3 of 8 features drifted",
                        model="churn:4", details={...}))

Every installed plugin implementing `conveyor_alert` gets the alert (conveyor-monitor ships a
log and a webhook delivery). A delivery that fails is named and does not stop the others, nor
the command that fired it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.session import Session

KINDS = ("drift", "performance", "retrain_decision", "promotion")
SEVERITIES = ("info", "warning", "critical")


@dataclass(frozen=True)
class Alert:
    """One event worth telling people about.

    `kind` is one of KINDS, `severity` one of SEVERITIES, `message` one line a person reads,
    `model` the model concerned as "name:version" (or None), `details` JSON-able facts
    (scores, thresholds, the monitored batch's id) for machines. `at` is a Unix time.
    """

    kind: str
    severity: str
    message: str
    model: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"alert kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert severity must be one of {', '.join(SEVERITIES)}, "
                             f"not {self.severity!r}")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "details": dict(self.details)}


def fire(session: Session, alert: Alert, *, quiet: bool = False) -> list[str]:
    """Deliver `alert` to every `conveyor_alert` implementation of the session's plugins, with
    the session's config (the command's overrides included); returns the failures.

    Each failure is one message naming the plugin; unless `quiet`, it is also printed to
    stderr as a warning. Failures never raise: an alert that cannot be delivered must not
    stop monitoring or retraining.
    """
    from conveyor.errors import ConveyorError

    try:
        config = session.config.data
    except ConveyorError:
        config = {}  # a config that does not compose: deliveries fall back to their defaults
    errors = session.host.call_each("conveyor_alert", alert=alert,
                                    project_dir=session.project_dir, config=config)
    messages = [str(error.message) for error in errors]
    if not quiet:
        for message in messages:
            print(f"warning: alert not delivered: {message}", file=sys.stderr)
    return messages
