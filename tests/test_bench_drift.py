"""The drift benchmark runs (tiny sizes here; `python tests/bench/bench_drift.py` for the real
figures) and our counts-based PSI and KS agree with plain numpy/scipy on every verdict."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


def test_the_drift_benchmark_runs_with_identical_verdicts(tmp_path, capsys):
    pytest.importorskip("conveyor_monitor")
    path = Path(__file__).parent / "bench" / "bench_drift.py"
    spec = importlib.util.spec_from_file_location("bench_drift", path)
    bench_drift = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_drift)
    output = tmp_path / "drift.json"
    assert bench_drift.main(["--rows", "50000", "--big-rows", "200000", "--repeat", "1",
                             "--output", str(output)]) == 0
    (row,) = json.loads(output.read_text())
    assert row["verdicts_identical"] and row["columns"] == 20
    assert row["drifted_psi"] == 5 and row["drifted_ks"] >= 10
    assert row["max_psi_difference"] < 1e-9
    assert row["max_ks_statistic_difference"] <= row["max_grid_error"] + 1e-12
    assert row["big"]["rows"] == 200000 and row["big"]["peak_rss"] > 0
    assert "verdicts identical: True" in capsys.readouterr().out
