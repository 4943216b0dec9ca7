"""Compiled inference (`conveyor.compiled`): the parity gate, the record, and what the CLI shows.

The gate is checked here with toy compiled models (no plugin); the projects below run the real
`conveyor` CLI with conveyor-sklearn's ONNX form (tolerance: labels identical, probabilities or
values within 1e-5 absolute).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conveyor import api
from conveyor.compiled import (
    TOLERANCE,
    CompiledModel,
    CompiledPrediction,
    CompiledStatus,
    check_parity,
    columns_from_frame,
    threads_for_loading,
)
from conveyor.errors import UsageError
from conveyor.store import Registry, open_store
from conveyor.testing import UNCONVERTIBLE_MODEL, use_miscompiling_plugin

pytest.importorskip("onnxruntime")


class ToyClassifier:
    """A Python 'model': class 'yes' when x > 0, probability of 'yes' = sigmoid(x)."""

    classes_ = np.array(["no", "yes"], dtype=object)

    def predict_proba(self, frame):
        p = 1 / (1 + np.exp(-frame["x"].to_numpy(dtype=float)))
        return np.column_stack([1 - p, p])

    def predict(self, frame):
        return self.classes_[(self.predict_proba(frame)[:, 1] > 0.5).astype(int)]


class ToyCompiled:
    """Its compiled form, off by `shift` in probability (and flipping labels with `flip`)."""

    form = "toy"
    features = ["x", "city"]
    kinds = {"x": "number", "city": "text"}
    classes = ["no", "yes"]

    def __init__(self, shift: float = 0.0, flip: int = 0) -> None:
        self.shift, self.flip = shift, flip

    def predict_columns(self, columns):
        x = columns["x"]
        assert columns["city"].dtype == object  # text as str, None for missing
        p = np.clip(1 / (1 + np.exp(-x)) + self.shift, 0, 1)
        labels = np.where(p > 0.5, "yes", "no").astype(object)
        labels[:self.flip] = np.where(labels[:self.flip] == "yes", "no", "yes")
        return CompiledPrediction(labels, np.column_stack([1 - p, p]))


ROWS = pd.DataFrame({"x": np.linspace(-3, 3, 50), "city": ["a", None] * 25})


def test_a_toy_compiled_model_is_a_compiled_model():
    assert isinstance(ToyCompiled(), CompiledModel)


def test_columns_from_a_frame_are_float64_numbers_and_text_with_none_for_missing():
    frame = pd.DataFrame({"n": [1, None], "t": ["a", np.nan], "b": [True, False]})
    columns = columns_from_frame(frame, ["n", "t", "b"], {"n": "number", "t": "text",
                                                          "b": "number"})
    assert columns["n"].dtype == np.float64 and np.isnan(columns["n"][1])
    assert columns["t"].tolist() == ["a", None]
    assert columns["b"].tolist() == [1.0, 0.0]


def test_parity_passes_within_the_tolerance():
    parity, failure = check_parity(ToyCompiled(shift=TOLERANCE / 2), ToyClassifier(), ROWS)
    assert failure is None
    assert parity["rows"] == 50 and parity["labels_equal"] is True
    assert 0 < parity["max_abs_diff"] <= TOLERANCE and parity["tolerance"] == TOLERANCE


def test_parity_fails_on_a_probability_gap_or_a_single_label():
    _, failure = check_parity(ToyCompiled(shift=1e-4), ToyClassifier(), ROWS)
    assert failure.startswith("parity failed: max probability difference 0.0001 > 1e-05")
    _, failure = check_parity(ToyCompiled(flip=1), ToyClassifier(), ROWS)
    assert failure.startswith("parity failed: 1 of 50 labels differ")


def test_parity_of_a_regressor_compares_values_and_fails_on_nan():
    class Values:
        form, features, kinds, classes = "toy", ["x"], {"x": "number"}, None

        def __init__(self, offset):
            self.offset = offset

        def predict_columns(self, columns):
            return CompiledPrediction(columns["x"] * 2 + self.offset)

    class Python:
        def predict(self, frame):
            return frame["x"].to_numpy() * 2

    assert check_parity(Values(1e-7), Python(), ROWS)[1] is None
    assert "max value difference" in check_parity(Values(1e-3), Python(), ROWS)[1]
    assert check_parity(Values(np.nan), Python(), ROWS)[1].startswith("parity failed")


def test_threads_for_loading_takes_only_whole_numbers():
    with pytest.raises(UsageError, match="threads must be a whole number"), threads_for_loading(0):
        pass


def test_the_record_round_trips_and_the_first_record_stands(store_url, tmp_path):
    store = open_store(tmp_path / "p", url=store_url)
    registry = Registry(store)
    first = CompiledStatus("onnx", None, "ab" * 32, {"rows": 3, "max_abs_diff": 1e-9},
                           {"onnxruntime": "1.0"}, 1.0)
    assert registry.compiled("m", 1) is None
    assert registry.record_compiled("m", 1, first) == first
    other = CompiledStatus.python("parity failed: 1 of 3 labels differ", created_at=2.0)
    assert registry.record_compiled("m", 1, other) == first  # another process came first
    assert registry.record_compiled("m", 1, other, replace=True) == other
    assert registry.compiled_all() == {("m", 1): other}
    assert CompiledStatus.from_dict(other.to_dict()) == other
    assert other.short() == "python: parity failed: 1 of 3 labels differ"
    store.close()


def _inference(project) -> dict:
    rows = json.loads(project.cli("models", "list", "--json", check=True).stdout)
    return {row["version"]: row["inference"] for row in rows}


def test_a_version_converts_at_registration_and_serves_compiled(new_project):
    project = new_project("classification")
    result = project.run(check=True)
    assert "proj v1 compiled to onnx" in result.stdout
    inference = _inference(project)[1]
    assert inference["served_by"] == "onnx" and inference["reason"] is None
    assert inference["parity"]["labels_equal"] is True
    assert inference["parity"]["max_abs_diff"] <= TOLERANCE
    assert {"onnx", "onnxruntime", "scikit-learn", "conveyor"} <= set(inference["converters"])
    table = project.cli("models", "list", check=True).stdout
    assert "inference" in table and "onnx" in table
    loaded = api.load_model(project.path, compiled=True, threads=1)
    assert loaded.compiled_status.served_by == "onnx"
    assert loaded.compiled.form == "onnx" and loaded.compiled.threads == 1
    assert loaded.compiled_status.sha256 == inference["sha256"]
    assert api.load_model(project.path).compiled is None  # compiled=False costs nothing
    # Checked under another onnxruntime: the gate runs again before it serves here.
    store = open_store(project.path)
    with store.write() as conn:
        converters = {**inference["converters"], "onnxruntime": "0.0.1"}
        conn.execute("UPDATE compiled_models SET converters=?", (json.dumps(converters),))
    store.close()
    again = api.load_model(project.path, compiled=True)
    assert again.compiled is not None and again.compiled_status.served_by == "onnx"


def test_a_model_without_converter_is_served_by_python_with_the_reason(new_project):
    project = new_project("classification")
    project.run(*UNCONVERTIBLE_MODEL, check=True)
    inference = _inference(project)[1]
    assert inference["served_by"] == "python"
    assert inference["reason"] == "no ONNX converter for step 'model' (NearestCentroid)"
    table = project.cli("models", "list", check=True).stdout
    assert "python: no ONNX converter for step 'model'" in table
    loaded = api.load_model(project.path, compiled=True)
    assert loaded.compiled is None
    assert loaded.compiled_status.reason == inference["reason"]


def test_a_converter_that_disagrees_fails_the_parity_gate(new_project):
    project = new_project("classification")
    use_miscompiling_plugin(project.path)
    result = project.run(check=True)  # never fails the run
    assert "is served by its Python model: parity failed" in result.stdout
    inference = _inference(project)[1]
    assert inference["served_by"] == "python" and inference["sha256"] is None
    assert inference["reason"].startswith("parity failed: ")
    assert inference["parity"]["max_abs_diff"] > TOLERANCE


@pytest.mark.slow
def test_an_earlier_version_is_compiled_once_on_first_use_even_by_two_processes(new_project):
    project = new_project("classification")
    project.run(check=True)
    store = open_store(project.path)
    with store.write() as conn:
        conn.execute("DELETE FROM compiled_models")
    store.close()
    assert _inference(project)[1] is None
    assert "not built yet" in project.cli("models", "list", check=True).stdout
    code = ("from conveyor import api; import json; m = api.load_model('.', compiled=True); "
            "print(json.dumps(m.compiled_status.to_dict()))")
    processes = [subprocess.Popen([sys.executable, "-c", code], cwd=project.path, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
    statuses = []
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        statuses.append(json.loads(out.strip().splitlines()[-1]))
    recorded = _inference(project)[1]
    assert recorded["served_by"] == "onnx"
    # Both serve what is recorded: the first to record wins, the other takes its record.
    assert all(s["sha256"] == recorded["sha256"] for s in statuses)
    assert all(s["created_at"] == recorded["created_at"] for s in statuses)


def test_a_tampered_compiled_file_falls_back_to_python_with_the_reason(new_project):
    project = new_project("classification")
    project.run(check=True)
    sha = _inference(project)[1]["sha256"]
    [path] = (project.path / ".conveyor" / "artifacts").glob(f"*/{sha}.onnx")
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    loaded = api.load_model(project.path, compiled=True)
    assert loaded.compiled is None
    assert loaded.compiled_status.served_by == "python"
    assert "tampered" in loaded.compiled_status.reason
    # The record still says onnx: repairing the file (or rebuilding) serves it again.
    assert _inference(project)[1]["served_by"] == "onnx"
    shown = project.cli("models", "compile", "proj", "1", check=True).stdout
    assert shown.startswith("proj v1: python: compiled artifact unusable") and "tamper" in shown
    rebuilt = project.cli("models", "compile", "proj", "1", "--rebuild", check=True).stdout
    assert "building proj v1's compiled form" in rebuilt and "proj v1: onnx" in rebuilt
    again = api.load_model(project.path, compiled=True)
    assert again.compiled is not None and again.compiled_status.sha256 == sha
    result = project.cli("models", "compile", "proj", "7")
    assert result.returncode == 2 and "has no version 7" in result.stderr
