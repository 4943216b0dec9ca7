"""Where the store is: `store.url` / `store.artifacts` resolution and the errors a bad value
gets (conveyor.store.location, conveyor.store.engine)."""

from __future__ import annotations

import pytest
from _support import local_project
from conveyor.store import location
from conveyor.store.location import StoreConfigError


def test_an_unset_environment_variable_in_store_url_is_an_error_not_sqlite(tmp_path,
                                                                           monkeypatch):
    monkeypatch.delenv(location.URL_ENV, raising=False)
    monkeypatch.delenv("TEAM_DB_URL", raising=False)
    (tmp_path / "conveyor.yaml").write_text("project: p\nstore:\n  url: ${oc.env:TEAM_DB_URL}\n")
    with pytest.raises(StoreConfigError, match=r"TEAM_DB_URL is not set") as caught:
        location.resolve(tmp_path)
    assert "store.url" in str(caught.value) and "conveyor.yaml" in str(caught.value)
    # A default is used as OmegaConf would: null means the project's SQLite store.
    (tmp_path / "conveyor.yaml").write_text(
        "project: p\nstore:\n  url: ${oc.env:TEAM_DB_URL,null}\n")
    assert location.resolve(tmp_path).url is None
    # The environment's value wins before conveyor.yaml is even looked at.
    monkeypatch.setenv(location.URL_ENV, "postgresql://ml@db/env")
    (tmp_path / "conveyor.yaml").write_text("project: p\nstore:\n  url: ${oc.env:TEAM_DB_URL}\n")
    assert location.resolve(tmp_path).url == "postgresql://ml@db/env"


def test_other_interpolations_in_the_store_block_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(location.URL_ENV, raising=False)
    (tmp_path / "conveyor.yaml").write_text(
        "project: p\nteam: {db: 'postgresql://ml@db/x'}\nstore:\n  url: ${team.db}\n")
    with pytest.raises(StoreConfigError, match=r"interpolation other than"):
        location.resolve(tmp_path)


def test_runs_list_with_an_unset_store_variable_exits_2_and_makes_no_sqlite_store(tmp_path,
                                                                                  monkeypatch):
    monkeypatch.delenv(location.URL_ENV, raising=False)
    monkeypatch.delenv("TEAM_DB_URL", raising=False)
    project = local_project(tmp_path / "p")
    config = project.path / "conveyor.yaml"
    config.write_text(config.read_text() + "store:\n  url: ${oc.env:TEAM_DB_URL}\n")
    for command in (("runs", "list"), ("models", "list")):
        result = project.cli(*command)
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert "TEAM_DB_URL" in result.stderr and "store.url" in result.stderr
        assert "Traceback" not in output
    assert not (project.path / ".conveyor" / "store.db").exists()


@pytest.mark.parametrize("url", ["mysql://me:pw-secret@db/x", "mysql+pymysql://me@db/x",
                                 "oracle://me@db/x", "mssql+pyodbc://me@db/x"])
def test_a_database_other_than_sqlite_or_postgresql_is_named_not_its_missing_driver(
        url, tmp_path):
    from conveyor.store.engine import make_engine
    from conveyor.store.location import StoreLocation

    where = StoreLocation(url, "the command line", None, location.DEFAULT_ORIGIN)
    with pytest.raises(StoreConfigError) as caught:
        make_engine(where, tmp_path / "store.db")
    message = str(caught.value)
    assert "SQLite or PostgreSQL only" in message and "the command line" in message
    assert "No module named" not in message and "pw-secret" not in message


def test_a_shared_database_with_local_artifacts_is_warned_about_and_hinted(
        postgres_url, tmp_path, capsys, monkeypatch):
    from conveyor.errors import StoreError
    from conveyor.store import open_store
    from conveyor.store.artifacts import ArtifactRef

    monkeypatch.delenv(location.ARTIFACTS_ENV, raising=False)
    store = open_store(tmp_path / "machine-b", url=postgres_url)
    try:
        warning = capsys.readouterr().err
        assert "warning:" in warning and "store.artifacts is unset" in warning
        assert str(tmp_path / "machine-b") in warning
        with pytest.raises(StoreError) as caught:
            store.artifacts.verify(ArtifactRef("ab" * 32, "pickle", ".pkl", 3))
        assert "store.artifacts" in caught.value.hint and "s3://" in caught.value.hint
    finally:
        store.close()
    open_store(tmp_path / "machine-b", url=postgres_url).close()
    assert capsys.readouterr().err == ""  # once per process
    open_store(tmp_path / "c", url=postgres_url, artifacts=str(tmp_path / "shared")).close()
    open_store(tmp_path / "d").close()  # SQLite: one machine's store, nothing to warn about
    assert capsys.readouterr().err == ""


def test_where_the_store_is_leaves_the_config_hash_alone(tmp_path):
    from conveyor import api

    project = local_project(tmp_path / "p")
    plain = api.load_config(project.path, [])
    elsewhere = api.load_config(project.path, ["store.url=postgresql://ml@db/x",
                                               "store.artifacts=s3://bucket/p",
                                               "store.heartbeat_seconds=30"])
    assert elsewhere.data["store"]["url"] == "postgresql://ml@db/x"  # recorded, not hashed
    assert elsewhere.hash == plain.hash
    assert api.load_config(project.path, ["seed=3"]).hash != plain.hash
