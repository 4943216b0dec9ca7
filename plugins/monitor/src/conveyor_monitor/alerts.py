"""The built-in alert deliveries: a log line, and a JSON POST to `monitor.alerts.webhook.url`.

Both read the `monitor` section of the config the alert comes with (the firing command's). A
webhook that is slow, down or answers with an error raises, so `conveyor.alerts.fire` names it
in a warning; the command that fired the alert carries on.
"""

from __future__ import annotations

import json
import logging
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

logger = logging.getLogger("conveyor.alerts")


def log_alert(alert: Any, project_dir: Path, settings: Any) -> None:
    if not settings.alerts.log:
        return
    line = f"alert [{alert.kind}, {alert.severity}] {alert.message}"
    if logger.hasHandlers():  # the application configured logging: let it route the line
        logger.log(logging.WARNING if alert.severity != "info" else logging.INFO, line)
    else:
        print(line, file=sys.stderr, flush=True)


def webhook_alert(alert: Any, project_dir: Path, settings: Any) -> None:
    hook = settings.alerts.webhook
    if not hook.url:
        return
    body = json.dumps({**alert.as_dict(), "project": str(project_dir)}, default=str).encode()
    request = urllib.request.Request(hook.url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "conveyor-monitor",
        **dict(hook.headers)})
    try:
        with urllib.request.urlopen(request, timeout=hook.timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"webhook {hook.url} answered HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RuntimeError(f"webhook {hook.url} unreachable: {reason} "
                           f"(monitor.alerts.webhook.timeout={hook.timeout}s)") from None
