"""The validation benchmark runs (tiny sizes here; `python tests/bench/bench_validate.py` for the
real figures) and every contender agrees on the verdicts it asserts."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path


def test_the_validation_benchmark_runs_and_writes_its_figures(tmp_path, capsys):
    path = Path(__file__).parent / "bench" / "bench_validate.py"
    spec = importlib.util.spec_from_file_location("bench_validate", path)
    bench_validate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_validate)
    output = tmp_path / "validate.json"
    assert bench_validate.main(["--rows", "20000", "--repeat", "1", "--output", str(output)]) == 0
    (row,) = json.loads(output.read_text())
    assert row["rows"] == 20000 and row["columns"] == 10
    for name in ("ours", "pandera", "pandas", "numpy", "ours_invalid", "pandera_invalid"):
        assert row[name]["seconds"] > 0 and row[name]["peak_x_frame"] >= 1
    assert "goal at 20,000 rows" in capsys.readouterr().out
