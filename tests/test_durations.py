"""One duration syntax for settings and options: `conveyor.durations.parse_duration`, used by
`feedback.window` and `conveyor watch --every`, each naming itself when the value is wrong."""

from __future__ import annotations

import pytest
from conveyor.durations import parse_duration
from conveyor.errors import ConfigError, UsageError
from conveyor.feedback import parse_window


@pytest.mark.parametrize(("text", "seconds"), [
    ("7d", 7 * 86400), ("36h", 36 * 3600), ("90m", 5400), ("30s", 30), ("2w", 14 * 86400),
    (" 1.5 H ", 5400)])
def test_durations_with_a_unit(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_window(text, "feedback.window") == seconds


@pytest.mark.parametrize("text", ["", "d", "0d", "-1h", "7 days", "7y", "1h30m", None])
def test_not_durations(text):
    assert parse_duration(text) is None and parse_duration(text, bare_seconds=True) is None


def test_a_bare_number_is_seconds_only_where_allowed():
    assert parse_duration("45") is None
    assert parse_duration("45", bare_seconds=True) == 45


def test_each_caller_names_itself():
    with pytest.raises(ConfigError, match=r"feedback\.window is '7 days'"):
        parse_window("7 days", "feedback.window")
    watch = pytest.importorskip("conveyor_retrain.watch")
    assert watch.parse_every("45") == 45 and watch.parse_every("10m") == 600
    with pytest.raises(UsageError, match="--every 'soon' is not a duration"):
        watch.parse_every("soon")
