"""The `mlflow` section's checks and the messages' redaction, without a server."""

from __future__ import annotations

import conveyor
import pytest
from conveyor_mlflow.command import reason
from conveyor_mlflow.settings import MlflowConfig, settings_from, shown_uri


def test_the_plugin_is_inert_without_a_tracking_uri() -> None:
    settings = settings_from({})
    assert settings.tracking_uri is None and settings.enabled


@pytest.mark.parametrize(("uri", "problem"), [
    ("file:///tmp/mlruns", "not an http(s) URL (scheme 'file')"),
    ("mlflow.internal:5000", "not an http(s) URL"),
    ("http://", "has no host"),
    ("http://host:port", "not a valid URL"),
    ("https://user:pw@host:70000", "not a valid URL"),
])
def test_a_bad_tracking_uri_names_the_key_and_hides_the_password(uri: str, problem: str) -> None:
    with pytest.raises(conveyor.ConfigError) as caught:
        settings_from({"mlflow": {"tracking_uri": uri}})
    assert "mlflow.tracking_uri" in caught.value.message and problem in caught.value.message
    assert "pw" not in caught.value.message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(("key", "value"), [("timeout", 0), ("retries", -1), ("catch_up", -2),
                                            ("max_artifact_mb", -5), ("experiment", " ")])
def test_other_bad_settings_name_their_key(key: str, value: object) -> None:
    with pytest.raises(conveyor.ConfigError, match=f"mlflow.{key}"):
        settings_from({"mlflow": {"tracking_uri": "http://127.0.0.1:5000", key: value}})


def test_shown_uri_and_reasons_never_carry_the_password() -> None:
    assert shown_uri("https://ann:s3cret@mlflow.example.com/x") == \
        "https://ann:***@mlflow.example.com/x"
    assert shown_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    settings = MlflowConfig(tracking_uri="https://ann:s3cret@mlflow.example.com")
    refused = ConnectionError("HTTPSConnectionPool: Failed to establish a new connection: "
                              "[Errno 111] Connection refused")
    assert reason(refused, settings) == "connection refused (is the server running?)"
    leaked = RuntimeError("401 for https://ann:s3cret@mlflow.example.com/api\nbody")
    text = reason(leaked, settings)
    assert "s3cret" not in text and text.startswith("RuntimeError: 401 for") and "\n" not in text


def test_keys_mlflow_refuses_are_renamed_not_fatal() -> None:
    from conveyor_mlflow.mirror import _named

    assert _named({"conveyor.data.sklearn:load_wine": "a", "data/x.csv": "b", "a//b": "c",
                   "../up": "d", "x>y": "e"}) == {
        "conveyor.data.sklearn_load_wine": "a", "data/x.csv": "b", "a__b": "c", "_up": "d",
        "x_y": "e"}


def test_the_mirror_reads_the_store_the_run_wrote(tmp_path, monkeypatch) -> None:
    """Review #5: the run's store comes from CONVEYOR_STORE_URL over conveyor.yaml's store.url;
    the mirror used to take the composed config's (the yaml's) and read another database.
    MLflow itself is stubbed out: this is about which store is opened."""
    from types import SimpleNamespace

    from conveyor_mlflow import command

    env_db, yaml_db = tmp_path / "env.db", tmp_path / "yaml.db"
    (tmp_path / "conveyor.yaml").write_text(f"project: p\nstore:\n  url: sqlite:///{yaml_db}\n")
    monkeypatch.setenv("CONVEYOR_STORE_URL", f"sqlite:///{env_db}")
    opened: list[str | None] = []

    def sync(settings, project, store, say, **_):
        opened.append(store.location.url)
        return SimpleNamespace(runs=1, line=lambda: "stubbed")

    monkeypatch.setattr(command, "_sync", sync)
    run = SimpleNamespace(id="r1", project="p", project_dir=tmp_path, config={
        "mlflow": {"tracking_uri": "http://127.0.0.1:1"},
        "store": {"url": f"sqlite:///{yaml_db}", "artifacts": None}})
    command.mirror_ended_run(run, "completed")
    assert opened == [f"sqlite:///{env_db}"]
    assert not yaml_db.exists()
