"""`conveyor predict`: batch inference with the champion or a named version, through the real
console script; the scoring run is recorded; bad input stops it with nothing written."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from _support import assert_run_failed, assert_usage_error
from conveyor import api
from conveyor.store import ArtifactRef, open_store
from conveyor.testing import UNCONVERTIBLE_MODEL


@pytest.fixture
def trained(new_project):
    project = new_project("classification")
    project.run(check=True)
    return project


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_predict_scores_the_file_in_chunks_and_records_the_run(trained):
    project = trained
    data = pd.read_csv(project.path / "data" / "customers.csv")
    data.drop(columns=["churned"]).to_parquet(project.path / "new.parquet")
    result = project.cli("predict", "--data", "new.parquet", "--chunk-rows", "700", check=True)
    assert "scored 3,000 rows in 5 chunk(s)" in result.stdout
    assert "scored by onnx" in result.stdout  # the compiled form (conveyor.compiled)
    written = pd.read_parquet(project.path / "new.predictions.parquet")
    assert list(written.columns) == ["customer_id", "prediction", "proba__0", "proba__1"]
    model = api.load_model(project.path).model
    features = list(model.feature_names_in_)
    assert written["customer_id"].tolist() == data["customer_id"].tolist()
    assert (written["prediction"].to_numpy() == model.predict(data[features])).all()
    proba = model.predict_proba(data[features])
    # within the parity gate's tolerance of the Python model's (conveyor.compiled.TOLERANCE)
    assert abs(written[["proba__0", "proba__1"]].to_numpy() - proba).max() < 1e-5

    # The same file as CSV, in one chunk, to a CSV output: the same predictions.
    project.cli("predict", "--data", "data/customers.csv", "-o", "out.csv", "--model", "proj:1",
                check=True)
    assert pd.read_csv(project.path / "out.csv")["prediction"].tolist() == \
        written["prediction"].tolist()

    runs = sorted((r for r in project.runs() if r["command"] == "predict"),
                  key=lambda r: r["created_at"])
    assert [r["status"] for r in runs] == ["completed", "completed"]
    recorded = api.get_run(project.path, runs[0]["id"])
    assert recorded.command == "predict"
    assert list(recorded.data) == ["new.parquet"] and recorded.data["new.parquet"]
    assert recorded.metrics == {"rows": 3000.0, "rows_scored": 3000.0, "chunks": 5.0}
    stage = recorded.config["pipeline"]["predict"]
    assert (stage["model_name"], stage["model_version"]) == ("proj", 1)
    assert stage["artifact"]["sha256"] == api.load_model(project.path).sha256
    assert _leftovers(project.path) == []


def test_predict_without_a_champion_is_a_usage_error(new_project):
    project = new_project("classification")
    assert project.run("evaluate.gate.balanced_accuracy='>= 0.99'").returncode == 1
    result = project.cli("predict", "--data", "data/customers.csv")
    assert_usage_error(result, "model 'proj' has no champion yet", "conveyor models promote")
    assert not (project.path / "data" / "customers.predictions.parquet").exists()
    assert [r for r in project.runs() if r["command"] == "predict"] == []


def test_a_file_failing_the_schema_is_reported_whole_and_nothing_is_written(trained):
    project = trained
    data = pd.read_csv(project.path / "data" / "customers.csv")
    data.loc[2500, "tenure_months"] = 500          # in the last chunk: still reported
    data.loc[10, "region"] = "atlantis"
    data.to_csv(project.path / "bad.csv", index=False)
    result = project.cli("predict", "--data", "bad.csv", "--chunk-rows", "1000")
    message = assert_run_failed(result, "bad.csv does not match the schema", "nothing was written",
                                "tenure_months", "row 2500", "region", "row 10")
    assert "2 check(s) failed on 2 of 3,000 rows" in message
    assert not (project.path / "bad.predictions.parquet").exists()
    assert _leftovers(project.path) == []
    failed = [r for r in project.runs() if r["command"] == "predict"]
    assert [r["status"] for r in failed] == ["failed"]


@pytest.mark.parametrize(("args", "needles"), [
    (["--data", "nope.csv"], ["--data nope.csv: no such file"]),
    (["--data", "conveyor.yaml"], ["unsupported file type '.yaml'"]),
    (["--data", "data/customers.csv", "--model", "proj:9"], ["model 'proj' has no version 9",
                                                              "versions of 'proj': 1"]),
    (["--data", "data/customers.csv", "--model", "other:1"], ["model 'other' has no version 1"]),
    (["--data", "data/customers.csv", "--model", "proj:v:2"], ["--model 'proj:v:2' is not "
                                                                "NAME:VERSION"]),
    (["--data", "data/customers.csv", "--model", "proj:latest"], ["is not NAME:VERSION"]),
    (["--data", "data/customers.csv", "-o", "out.txt"], ["unsupported output type '.txt'"]),
    (["--data", "data/customers.csv", "-o", "data/customers.csv"], ["is the input file itself"]),
])
def test_bad_arguments_are_usage_errors(trained, args, needles):
    result = trained.cli("predict", *args)
    assert_usage_error(result, *needles)
    assert [r for r in trained.runs() if r["command"] == "predict"] == []


def test_a_tampered_model_file_is_refused(trained):
    project = trained
    store = open_store(project.path)
    champion = api.resolve_model(project.path)
    path = store.artifacts.path(ArtifactRef.from_dict(champion.artifact))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    result = project.cli("predict", "--data", "data/customers.csv")
    assert_run_failed(result, "corrupt or was tampered with")
    assert not (project.path / "data" / "customers.predictions.parquet").exists()
    assert _leftovers(project.path / "data") == []


def test_predict_follows_the_champion_after_a_rollback(trained):
    """Registry through the real console script: a forced promotion is recorded as forced,
    rollback restores the previous champion, history says who and why, predict follows."""
    project = trained
    assert project.run("evaluate.gate.balanced_accuracy='>= 0.99'").returncode == 1
    refused = project.cli("models", "promote", "proj", "2")
    assert_run_failed(refused, "did not pass the evaluation gate", "--force")
    project.cli("models", "promote", "proj", "2", "--force", "--reason", "try it", check=True)
    project.cli("predict", "--data", "data/customers.csv", check=True)
    scored = [r for r in project.runs() if r["command"] == "predict"]
    assert api.get_run(project.path, scored[0]["id"]).config["pipeline"]["predict"][
        "model_version"] == 2
    rolled = json.loads(project.cli("models", "rollback", "proj", "--reason", "worse", "--json",
                                    check=True).stdout)
    assert rolled == {"name": "proj", "champion": 1, "previous": 2}
    assert api.resolve_model(project.path).version == 1
    history = json.loads(project.cli("models", "history", "proj", "--json", check=True).stdout)
    assert [(h["version"], h["action"], h["forced"], h["reason"]) for h in history] == [
        (1, "gate", 0, history[0]["reason"]), (2, "promote", 1, "try it"),
        (1, "rollback", 0, "worse")]
    assert all(h["actor"] for h in history)
    text = project.cli("models", "history", "proj", check=True).stdout
    assert f"promote (forced) by {history[1]['actor']}: try it" in text
    assert f"rollback by {history[2]['actor']}: worse" in text


def test_a_plugin_gone_from_the_recorded_config_is_named_as_coming_from_it(new_project):
    """Issue 14.9: predict on an old model failed when a plugin named in its recorded config
    was gone, without saying the key came from that run's recorded config."""
    import yaml

    project = new_project("classification")
    (project.path / "helper.py").write_text(
        "import conveyor\n\n\n@conveyor.hookimpl\ndef conveyor_alert(alert):\n    pass\n")
    config = yaml.safe_load((project.path / "conveyor.yaml").read_text())
    config.setdefault("plugins", {})["local"] = ["helper"]
    (project.path / "conveyor.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    project.run(check=True)
    run_id = project.runs()[0]["id"]
    (project.path / "helper.py").unlink()
    config["plugins"]["local"] = []
    (project.path / "conveyor.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    data = pd.read_csv(project.path / "data" / "customers.csv").head(20)
    data.to_csv(project.path / "new.csv", index=False)
    result = project.cli("predict", "--data", "new.csv")
    assert_usage_error(result, "'helper'", f"in the recorded config of run {run_id}",
                       "not the project's conveyor.yaml")
    assert not (project.path / "new.predictions.parquet").exists()


def test_predict_deserialises_the_model_once(trained, monkeypatch):
    """The command loads the version to see what it is (a recommender is refused); its stage
    takes that model instead of loading the artifact a second time."""
    from conveyor.cli import run_cli
    from conveyor.store.artifacts import ArtifactStore

    loads = []
    real = ArtifactStore.load

    def counting(self, ref, codec):
        loads.append(ref.sha256)
        return real(self, ref, codec)

    monkeypatch.setattr(ArtifactStore, "load", counting)
    monkeypatch.chdir(trained.path)
    assert run_cli(["predict", "--data", "data/customers.csv", "-o", "once.csv"]) == 0
    loaded = list(loads)
    # the model once, and its compiled form once (conveyor.compiled)
    assert loaded[0] == api.load_model(trained.path).sha256
    assert len(loaded) == len(set(loaded)) == 2
    assert len(pd.read_csv(trained.path / "once.csv")) == 3000


def test_predict_with_the_compiled_form_equals_the_python_model_and_says_which_scored(trained):
    """The compiled form's output is the Python model's (labels equal, probabilities within
    1e-5, the same columns and types); a version with no ONNX converter is scored by Python
    and the log says why."""
    project = trained
    data = pd.read_csv(project.path / "data" / "customers.csv")
    compiled = project.cli("predict", "--data", "data/customers.csv", "-o", "onnx.parquet",
                           check=True)
    assert "scored by onnx" in compiled.stdout
    forced = project.cli("predict", "--data", "data/customers.csv", "-o", "forced.parquet",
                         "--no-compiled", check=True)
    assert "scored by python (--no-compiled)" in forced.stdout
    forced_out = pd.read_parquet(project.path / "forced.parquet")
    done = project.cli("run", *UNCONVERTIBLE_MODEL)
    assert "proj v2 registered" in done.stdout, done.stdout + done.stderr
    python = project.cli("predict", "--data", "data/customers.csv", "-o", "python.parquet",
                         "--model", "proj:2", check=True)
    assert "scored by python (no ONNX converter for step 'model' (NearestCentroid))" in \
        python.stdout
    onnx_out = pd.read_parquet(project.path / "onnx.parquet")
    python_out = pd.read_parquet(project.path / "python.parquet")
    assert onnx_out.dtypes.to_dict() == python_out.dtypes.to_dict() == \
        forced_out.dtypes.to_dict()
    assert onnx_out["prediction"].tolist() == forced_out["prediction"].tolist()
    model = api.load_model(project.path, version=1).model
    features = list(model.feature_names_in_)
    assert onnx_out["prediction"].tolist() == model.predict(data[features]).tolist()
    assert abs(onnx_out[["proba__0", "proba__1"]].to_numpy()
               - model.predict_proba(data[features])).max() < 1e-5
    centroid = api.load_model(project.path, version=2).model
    assert (python_out[["proba__0", "proba__1"]].to_numpy()
            == centroid.predict_proba(data[features])).all()
    summaries = [api.load_output(project.path, r["id"], "summary") for r in project.runs()
                 if r["command"] == "predict"]
    assert sorted(s["scored_by"] for s in summaries) == ["onnx", "python", "python"]


def _peak_rss_mb(project, *args: str) -> float:
    """The peak resident memory of `conveyor predict ARGS` (a child of a fresh Python)."""
    import subprocess
    import sys

    from conveyor.testing import conveyor_executable

    probe = ("import resource, subprocess, sys; "
             "done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
             "print(done.stdout[-2000:], done.stderr[-2000:], file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", probe, conveyor_executable(), "predict", *args],
                          cwd=project.path, capture_output=True, text=True, timeout=600)
    code, peak_kb = done.stdout.split()
    assert code == "0", done.stderr
    return int(peak_kb) / 1024


def test_predict_memory_does_not_grow_with_the_file(trained):
    """Scored in chunks by the compiled form: a file 8x longer peaks at about the same memory
    (the 1M- and 10M-row figures are in tests/bench/bench_predict.py)."""
    project = trained
    data = pd.read_csv(project.path / "data" / "customers.csv").drop(columns=["churned"])
    for name, copies in (("small.parquet", 5), ("large.parquet", 40)):
        frames = [data.assign(customer_id=data["customer_id"] + f"-{i}") for i in range(copies)]
        pd.concat(frames, ignore_index=True).to_parquet(project.path / name, row_group_size=5000)
    small = _peak_rss_mb(project, "--data", "small.parquet", "--chunk-rows", "5000")
    large = _peak_rss_mb(project, "--data", "large.parquet", "--chunk-rows", "5000")
    written = pd.read_parquet(project.path / "large.predictions.parquet")
    assert len(written) == 120_000 and written["customer_id"].is_unique
    print(f"peak RSS: 15,000 rows {small:.0f} MB, 120,000 rows {large:.0f} MB")
    assert large - small < 25, (small, large)
