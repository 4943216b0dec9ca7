"""`conveyor serve` with the compiled form of a version (issue 18): a real server on a free
127.0.0.1 port answering from the ONNX form, a version that does not convert answered by its
Python model with the reason in /metadata and `conveyor models list`, and swaps between them
(also on PostgreSQL: a promotion there seen by the running server, each version's compiled
status read from its `compiled_models` rows)."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from _serve_support import run_cli
from conveyor import api
from conveyor.testing import (
    UNCONVERTIBLE_MODEL,
    Project,
    copy_project,
    each_store,
    store_rows,
    use_miscompiling_plugin,
)

pytestmark = [pytest.mark.server]
JSON = {"content-type": "application/json"}
UNCONVERTIBLE = "no ONNX converter for step 'model' (NearestCentroid)"


@pytest.fixture(scope="session")
def mixed(tmp_path_factory: pytest.TempPathFactory, trained: Path) -> Path:
    """The trained project plus v3, a NearestCentroid (conveyor.testing.UNCONVERTIBLE_MODEL): no
    ONNX converter, so Python serves it (a deliberately unconvertible step). v1 stays the
    champion. And v4, registered with a local plugin whose compiled form fails the parity gate
    (conveyor.testing.use_miscompiling_plugin): Python serves it too, reason "parity failed"."""
    root = tmp_path_factory.mktemp("serve-compiled")
    project = root / "shop"
    shutil.copytree(trained, project)
    done = run_cli("run", *UNCONVERTIBLE_MODEL, cwd=project)
    # registered, and promoted or not (it may miss the gate): v1 is made the champion again
    assert "shop v3 registered" in done.stdout, done.stdout + done.stderr
    use_miscompiling_plugin(project)
    done = run_cli("run", "model.params.max_iter=20", cwd=project)
    assert "shop v4 registered" in done.stdout, done.stdout + done.stderr
    assert run_cli("models", "promote", "shop", "1", "--force", cwd=project).returncode == 0
    return project


@pytest.fixture
def project(tmp_path: Path, mixed: Path) -> Project:
    return copy_project(mixed, tmp_path / "shop")  # its store too, on PostgreSQL


def records(project: Project, count: int) -> list[dict]:
    """`count` rows of the project's data as JSON records (missing values as null)."""
    frame = pd.read_csv(project.path / "data" / "customers.csv").head(count)
    frame = frame.drop(columns=["churned"]).astype(object)
    return frame.where(frame.notna(), None).to_dict("records")


def python_answers(project: Project, version: int, rows: list[dict]) -> tuple[list, np.ndarray]:
    model = api.load_model(project.path, "shop", version=version).model
    proba = model.predict_proba(pd.DataFrame.from_records(rows))
    return [c.item() for c in model.classes_[proba.argmax(axis=1)]], proba


def predict(server, rows: list[dict]) -> list[dict]:
    resp = httpx.post(f"{server.url}/predict", content=json.dumps(rows), headers=JSON,
                      timeout=30)
    assert resp.status_code == 200, resp.text
    return resp.json()


def inference(server) -> dict:
    return httpx.get(f"{server.url}/metadata", timeout=10).json()["inference"]


@pytest.mark.parametrize("batching", ["true", "false"])
def test_a_version_that_converts_is_answered_by_onnx_as_python_answers(project, serve,
                                                                       batching):
    server = serve(project, f"+serve.batching.enabled={batching}")
    status = inference(server)
    assert status["served_by"] == "onnx" and status["reason"] is None, status
    assert status["sha256"] and status["parity"]["labels_equal"] is True
    rows = records(project, 200)
    labels, proba = python_answers(project, 1, rows)
    answers = predict(server, rows)
    assert [a["prediction"] for a in answers] == labels
    got = np.array([[a["probabilities"]["0"], a["probabilities"]["1"]] for a in answers])
    assert np.abs(got - proba).max() < 1e-5
    assert {a["model_version"] for a in answers} == {1}
    assert len({a["request_id"] for a in answers}) == 1

    async def concurrent() -> list[list[dict]]:  # single records at once: batched together
        async with httpx.AsyncClient(timeout=30) as client:
            resps = await asyncio.gather(*[
                client.post(f"{server.url}/predict", content=json.dumps([row]), headers=JSON)
                for row in rows[:64]])
        assert all(r.status_code == 200 for r in resps), [r.text for r in resps][:3]
        return [r.json() for r in resps]

    singles = asyncio.run(concurrent())
    assert [s[0]["prediction"] for s in singles] == labels[:64]
    single = np.array([[s[0]["probabilities"]["0"], s[0]["probabilities"]["1"]]
                       for s in singles])
    assert np.abs(single - proba[:64]).max() < 1e-5
    assert server.stop() == 0  # the prediction log has every record, as on the Python path
    from conveyor.predictions import read_prediction_log

    log = pd.concat(list(read_prediction_log(project.path, "shop")), ignore_index=True)
    assert len(log) == 200 + 64
    assert sorted(log["prediction"].tolist()) == sorted(labels + labels[:64])


def test_a_version_that_does_not_convert_is_answered_by_python_with_the_reason(project,
                                                                               serve):
    assert run_cli("models", "promote", "shop", "3", "--force", cwd=project.path).returncode == 0
    server = serve(project, "+serve.poll_seconds=0.2")
    meta = httpx.get(f"{server.url}/metadata", timeout=10).json()
    assert meta["version"] == 3
    assert meta["inference"]["served_by"] == "python", meta["inference"]
    assert UNCONVERTIBLE in meta["inference"]["reason"]
    rows = records(project, 20)
    labels, proba = python_answers(project, 3, rows)
    answers = predict(server, rows)
    assert [a["prediction"] for a in answers] == labels
    got = np.array([[a["probabilities"]["0"], a["probabilities"]["1"]] for a in answers])
    assert np.abs(got - proba).max() < 1e-12  # the same model: the same numbers
    listed = run_cli("models", "list", cwd=project.path)
    assert listed.returncode == 0, listed.stderr
    assert "NearestCentroid" in listed.stdout and "onnx" in listed.stdout
    # v4's compiled form fails the parity gate: Python answers it, and says so
    assert run_cli("models", "promote", "shop", "4", "--force", cwd=project.path).returncode == 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and \
            httpx.get(f"{server.url}/metadata", timeout=10).json()["version"] != 4:
        time.sleep(0.2)
    status = inference(server)
    assert status["served_by"] == "python" and status["reason"].startswith("parity failed"), \
        status
    labels, proba = python_answers(project, 4, rows)
    answers = predict(server, rows)
    assert [a["prediction"] for a in answers] == labels
    assert {a["model_version"] for a in answers} == {4}


@each_store
def test_hot_swap_to_a_python_served_version_and_back(project, serve):
    # registration recorded how each version is scored, in the test's store
    recorded = {row["version"]: row["served_by"] for row in store_rows(
        project.path, "SELECT version, served_by FROM compiled_models WHERE name='shop'")}
    assert (recorded.get(1), recorded.get(3)) == ("onnx", "python"), recorded
    server = serve(project, "+serve.poll_seconds=0.2")
    rows = records(project, 5)
    assert inference(server)["served_by"] == "onnx"

    def swapped_to(version: int) -> dict:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            meta = httpx.get(f"{server.url}/metadata", timeout=10).json()
            if meta["version"] == version:
                return meta
            time.sleep(0.2)
        raise AssertionError(f"no swap to v{version}:\n{server.output()[-3000:]}")

    assert run_cli("models", "promote", "shop", "3", "--force", cwd=project.path).returncode == 0
    meta = swapped_to(3)
    assert meta["inference"]["served_by"] == "python"
    assert {a["model_version"] for a in predict(server, rows)} == {3}
    assert run_cli("models", "promote", "shop", "1", "--force", cwd=project.path).returncode == 0
    meta = swapped_to(1)
    assert meta["inference"]["served_by"] == "onnx"
    labels, _ = python_answers(project, 1, rows)
    answers = predict(server, rows)
    assert [a["prediction"] for a in answers] == labels
    assert {a["model_version"] for a in answers} == {1}
