"""The mirror against a real MLflow tracking server (`mlflow server` on 127.0.0.1, started once
per session by conftest.py): runs, versions, aliases, a server that is down, `sync`, bad URIs."""

from __future__ import annotations

from typing import Any

import pytest
from conveyor.testing import Project, assert_usage_error, free_port
from mlflow_support import model_of, use_mlflow

pytestmark = [pytest.mark.server, pytest.mark.slow]


def client(url: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url, registry_uri=url)


def mirrored_runs(url: str, experiment: str) -> dict[str, Any]:
    """{our run id: MLflow run} in the experiment."""
    found = client(url).get_experiment_by_name(experiment)
    if found is None:
        return {}
    runs = client(url).search_runs([found.experiment_id], "", max_results=1000)
    return {run.data.tags["conveyor.run_id"]: run for run in runs}


def champion(url: str, model: str) -> str | None:
    """Our version number the MLflow champion alias points at."""
    mlflow = client(url)
    aliases = mlflow.get_registered_model(model).aliases
    if "champion" not in aliases:
        return None
    return mlflow.get_model_version(model, aliases["champion"]).tags["conveyor.version"]


def test_run_is_mirrored_with_its_model_version_and_champion(shop: Project, mlflow_server: str
                                                              ) -> None:
    use_mlflow(shop, mlflow_server, "mirror-one")
    result = shop.run(check=True)
    assert "mirrored to " + mlflow_server in result.stdout, result.stdout + result.stderr
    run = shop.last_run()
    runs = mirrored_runs(mlflow_server, "mirror-one")
    # The template's training run (before mlflow was configured) is caught up as well.
    assert run.id in runs and len(runs) == 2
    mirrored = runs[run.id]
    assert mirrored.info.status == "FINISHED"
    tags = mirrored.data.tags
    assert tags["conveyor.mirror"] == "complete" and tags["conveyor.status"] == "completed"
    assert tags["conveyor.config_hash"] == run.config_hash
    assert tags["conveyor.data.data/customers.csv"] == run.data["data/customers.csv"]
    assert mirrored.data.params["data.target"] == "churned"
    model = model_of(shop)
    assert mirrored.data.params["registry.model_name"] == model
    assert mirrored.data.metrics["evaluate.accuracy"] == pytest.approx(run.metrics["accuracy"])
    mlflow = client(mlflow_server)
    files = {a.path for a in mlflow.list_artifacts(mirrored.info.run_id, "outputs/train")}
    assert any(path.startswith("outputs/train/model") for path in files), files
    assert mlflow.list_artifacts(mirrored.info.run_id, "conveyor")[0].path == "conveyor/config.yaml"

    (version,) = mlflow.search_model_versions(f"name = '{model}'")
    assert version.tags["conveyor.version"] == "1" and version.run_id == mirrored.info.run_id
    assert version.tags["conveyor.gate.decision"] == "passed"
    assert champion(mlflow_server, model) == "1"


def test_promotion_rollback_and_sync_twice(shop: Project, mlflow_server: str) -> None:
    use_mlflow(shop, mlflow_server, "mirror-moves")
    model = model_of(shop)
    shop.run(check=True)
    # A second version, promoted by hand, then rolled back: `sync` follows both moves.
    shop.run("model.params.max_iter=60", check=True)
    shop.cli("models", "promote", model, "2", "--force", check=True)
    synced = shop.cli("mlflow", "sync", check=True)
    assert champion(mlflow_server, model) == "2", synced.stdout
    shop.cli("models", "rollback", model, check=True)
    synced = shop.cli("mlflow", "sync", check=True)
    assert "1 alias move" in synced.stdout, synced.stdout
    assert champion(mlflow_server, model) == "1"
    versions = client(mlflow_server).search_model_versions(f"name = '{model}'")
    assert sorted(v.tags["conveyor.version"] for v in versions) == ["1", "2"]

    before = mirrored_runs(mlflow_server, "mirror-moves")
    again = shop.cli("mlflow", "sync", check=True)
    assert "already up to date: 0 runs, 0 model versions, 0 alias moves" in again.stdout, again.stdout
    assert mirrored_runs(mlflow_server, "mirror-moves").keys() == before.keys()

    # A mirror cut short (no `conveyor.mirror` tag) is written again whole, not doubled.
    cut = shop.last_run().id
    client(mlflow_server).delete_tag(before[cut].info.run_id, "conveyor.mirror")
    healed = shop.cli("mlflow", "sync", check=True)
    assert "mirrored 1 run," in healed.stdout, healed.stdout
    after = mirrored_runs(mlflow_server, "mirror-moves")
    assert after.keys() == before.keys() and after[cut].info.run_id != before[cut].info.run_id
    history = client(mlflow_server).get_metric_history(after[cut].info.run_id, "evaluate.accuracy")
    assert len(history) == 1


def test_server_down_warns_and_the_next_run_catches_up(shop: Project, mlflow_server: str
                                                       ) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    use_mlflow(shop, down, "mirror-down")
    first = shop.run()
    assert first.returncode == 0, first.stdout + first.stderr
    warnings = [line for line in first.stderr.splitlines() if "not mirrored" in line]
    assert len(warnings) == 1 and down in warnings[0], first.stderr
    assert "Traceback" not in first.stderr
    missed = shop.last_run()

    use_mlflow(shop, mlflow_server, "mirror-down")
    second = shop.run(check=True)
    runs = mirrored_runs(mlflow_server, "mirror-down")
    assert missed.id in runs and shop.last_run().id in runs, second.stdout


def test_bad_tracking_uri_is_a_config_error(shop: Project) -> None:
    result = shop.cli("mlflow", "sync", "mlflow.tracking_uri=ftp://user:s3cret@host/x")
    stderr = assert_usage_error(result, "mlflow.tracking_uri", "command line")
    assert "s3cret" not in stderr and "user:***@host" in stderr
    result = shop.cli("mlflow", "sync")
    assert_usage_error(result, "mlflow.tracking_uri", "is not set")
    result = shop.run("mlflow.tracking_uri=http://host:port")
    assert_usage_error(result, "mlflow.tracking_uri")
