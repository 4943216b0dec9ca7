"""Durations written as text, one parser for every setting and option that takes one.

"7d", "36h", "90m", "30s", "2w", "1.5h": a positive number and a unit (s, m, h, d, w; any case,
spaces allowed). `feedback.window` (`conveyor.feedback.parse_window`) and `conveyor watch
--every` read their values with `parse_duration`, each naming itself in its own error.
"""

from __future__ import annotations

import re

__all__ = ["DURATION_UNITS", "parse_duration"]

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])?\s*$", re.IGNORECASE)


def parse_duration(text: object, *, bare_seconds: bool = False) -> float | None:
    """`text` as seconds, or None when it is not a positive duration (the caller raises the
    error that names its setting or option). A number without a unit is seconds when
    `bare_seconds`, else not a duration."""
    match = _DURATION.match(str(text))
    if not match or (match[2] is None and not bare_seconds) or float(match[1]) <= 0:
        return None
    return float(match[1]) * DURATION_UNITS[(match[2] or "s").lower()]
