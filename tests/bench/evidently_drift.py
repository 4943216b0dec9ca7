"""Evidently's DataDriftPreset on the drift benchmark's data: the context figure of bench_drift.py.

Runs in a virtualenv of its own (Evidently needs pandas < 3; `make bench` makes
.venv-bench-evidently), on the Parquet files bench_drift.py wrote, and prints one JSON line:
seconds for the report, the columns it found drifted, and this process's peak RSS.

    .venv-bench-evidently/bin/python tests/bench/evidently_drift.py REFERENCE.parquet CURRENT.parquet
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def run_report(reference: Any, current: Any) -> list[str]:
    """The preset with Evidently's defaults, through whichever API the installed version has."""
    try:  # Evidently 0.7 and later
        from evidently import Report
        from evidently.presets import DataDriftPreset

        snapshot = Report([DataDriftPreset()]).run(reference_data=reference, current_data=current)
        result = snapshot.dict()
    except ImportError:  # Evidently 0.4 - 0.6
        from evidently.metric_preset import DataDriftPreset
        from evidently.report import Report

        report = Report(metrics=[DataDriftPreset()])
        report.run(reference_data=reference, current_data=current)
        result = report.as_dict()
    return sorted(_drifted(result))


def _drifted(result: Any) -> set[str]:
    """Column names Evidently marked as drifted, wherever its result format keeps them."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            config = node.get("config")
            if isinstance(config, dict) and str(config.get("type", "")).endswith(":ValueDrift"):
                # Evidently 0.7: one ValueDrift per column, a p-value (drift below the
                # threshold) or a distance (drift at or above it), by the method's name
                value, threshold = node.get("value"), config.get("threshold")
                if isinstance(value, int | float) and isinstance(threshold, int | float):
                    p_value = "p_value" in str(config.get("method", ""))
                    if (value < threshold) if p_value else (value >= threshold):
                        found.add(str(config.get("column")))
            by_column = node.get("drift_by_columns")
            if isinstance(by_column, dict):
                found.update(name for name, item in by_column.items()
                             if isinstance(item, dict) and item.get("drift_detected"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(result)
    return found


def main() -> int:
    import resource

    import pandas as pd

    reference = pd.read_parquet(sys.argv[1])
    current = pd.read_parquet(sys.argv[2])
    started = time.perf_counter()
    drifted = run_report(reference, current)
    seconds = time.perf_counter() - started
    from importlib.metadata import version

    print(json.dumps({"seconds": seconds, "drifted": drifted, "evidently": version("evidently"),
                      "pandas": pd.__version__,
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
