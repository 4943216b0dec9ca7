"""`conveyor store copy --to URL` and `conveyor.store.copy_store`: a project trained on SQLite,
copied to a real PostgreSQL server (`conveyor.testing.postgres_server`, 127.0.0.1, nothing
mocked), answers every listing the same; a non-empty destination is refused; a bad URL is exit 2;
no password is ever printed; plugin tables and serial ids come along."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from conveyor.store import TableSet, copy_store, open_store
from conveyor.store.migrate import HEAD
from conveyor.store.postgres_server import PASSWORD
from conveyor.testing import Project, copy_project

PLUGIN_TABLES = TableSet(owner="copy-test", version=1, create=(
    "CREATE TABLE IF NOT EXISTS copy_test_batches (id TEXT PRIMARY KEY, rows_seen BIGINT, "
    "score DOUBLE PRECISION)",))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scikit-learn project with two runs and a promoted model, on its SQLite store."""
    root = tmp_path_factory.mktemp("copy-template")
    Project(root).cli("init", "shop", check=True)
    project = Project(root / "shop")
    project.run(check=True)
    project.run("model.params.max_iter=30", check=True)
    project.cli("models", "promote", "shop", "1", "--force", "--reason", "baseline", check=True)
    return project.path


@pytest.fixture
def project(tmp_path: Path, trained: Path) -> Project:
    return copy_project(trained, tmp_path / "shop")


def _json(project: Project, *args: str) -> object:
    return json.loads(project.cli(*args, "--json", check=True).stdout)


def _answers(project: Project, *overrides: str) -> dict[str, object]:
    runs = _json(project, "runs", "list", *overrides)
    return {"runs": runs, "models": _json(project, "models", "list", *overrides),
            "history": _json(project, "models", "history", "shop", *overrides),
            "shown": [_json(project, "runs", "show", run["id"], *overrides) for run in runs]}


@pytest.mark.slow  # trains a scikit-learn project once per module
def test_a_sqlite_project_copied_to_postgresql_answers_the_same(project, postgres_url):
    before = _answers(project)
    done = project.cli("store", "copy", "--to", postgres_url)
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert "***" in done.stdout and "runs" in done.stdout and "model_versions" in done.stdout
    assert "artifact files were not copied" in done.stdout
    assert "runs: 2 rows" in done.stderr  # progress
    after = _answers(project, f"store.url={postgres_url}")
    assert after == before

    # The copy is a working store: the alias history's ids continue after the copied ones.
    promoted = project.cli("models", "promote", "shop", "2", "--force", "--reason", "after copy",
                           f"store.url={postgres_url}")
    assert promoted.returncode == 0, promoted.stderr
    history = _json(project, "models", "history", "shop", f"store.url={postgres_url}")
    assert len(history) == len(before["history"]) + 1

    # Copying again into the same (now non-empty) database: refused, exit 2, nothing written.
    again = project.cli("store", "copy", "--to", postgres_url)
    assert again.returncode == 2, again.stderr
    assert "not empty" in again.stderr and "runs" in again.stderr
    assert PASSWORD not in again.stdout + again.stderr and "***" in again.stderr
    assert len(_json(project, "runs", "list", f"store.url={postgres_url}")) == 2


@pytest.mark.slow  # trains a scikit-learn project once per module
@pytest.mark.parametrize("where", ["folder", "s3"])
def test_copy_json_summary_and_artifacts_to_another_artifact_store(project, postgres_url,
                                                                   tmp_path, request, where):
    """--artifacts-to: every artifact file copied, hash-checked, to a folder or to object
    storage (moto's S3 server standing in for the cloud); the copied store with
    store.artifacts there loads the champion's model file without the project's own files."""
    from conveyor.store import ArtifactRef, Registry

    if where == "s3":
        server = request.getfixturevalue("s3_server")
        target = f"s3://{server.create_bucket('team-artifacts')}/shop"
    else:
        target = str(tmp_path / "shared-artifacts")
    summary = _json(project, "store", "copy", "--to", postgres_url, "--artifacts-to", target)
    assert summary["rows"]["runs"] == 2 and summary["revision"] == HEAD
    assert summary["total"] == sum(summary["rows"].values())
    assert PASSWORD not in json.dumps(summary)
    local = [p for p in (project.path / ".conveyor" / "artifacts").rglob("*") if p.is_file()]
    assert local and summary["artifacts"]["copied"] == len(local)
    shutil.rmtree(project.path / ".conveyor" / "artifacts")

    store = open_store(project.path, url=postgres_url, artifacts=target)
    try:
        champion = Registry(store).aliases("shop")["champion"]
        version = next(v for v in Registry(store).versions() if v.version == champion)
        ref = ArtifactRef.from_dict(version.artifact)
        assert store.artifacts.exists(ref)
        assert store.artifacts.verify(ref).stat().st_size == ref.size  # sha256 checked
    finally:
        store.close()


@pytest.mark.slow  # trains a scikit-learn project once per module
def test_bad_destination_urls_exit_2_naming_the_option(project):
    for url in ("nope://somewhere/db", f"postgresql+psycopg://conveyor:{PASSWORD}@127.0.0.1:1/x"):
        done = project.cli("store", "copy", "--to", url)
        assert done.returncode == 2, done.stderr
        assert "--to" in done.stderr and "Traceback" not in done.stderr
        assert PASSWORD not in done.stdout + done.stderr


def test_copy_store_brings_plugin_tables_and_serial_ids_both_ways(postgres_url, postgres_server,
                                                                  tmp_path):
    source = open_store(tmp_path / "a", url=postgres_url, tables=[PLUGIN_TABLES])
    with source.write() as conn:
        conn.executemany("INSERT INTO copy_test_batches (id, rows_seen, score) VALUES (?, ?, ?)",
                         [(f"b{i}", i * 10**10, i / 3) for i in range(5)])
        conn.execute("CREATE TABLE unowned_notes (id INTEGER PRIMARY KEY, note TEXT)")
        conn.execute("INSERT INTO unowned_notes (id, note) VALUES (7, 'kept')")
        for i in range(3):
            conn.execute("INSERT INTO alias_history (name, alias, version, action, at) "
                         "VALUES ('m', 'champion', ?, 'promote', ?)", (i + 1, 1000.0 + i))
    seen: list[tuple[str, int, int]] = []
    snapshot = tmp_path / "snap" / "store.db"
    try:
        summary = copy_store(source, f"sqlite:///{snapshot}", tables=[PLUGIN_TABLES],
                             progress=lambda t, n, total: seen.append((t, n, total)))
    finally:
        source.close()
    assert summary.rows["copy_test_batches"] == 5 and summary.rows["alias_history"] == 3
    assert summary.created == ["unowned_notes"] and PASSWORD not in summary.source
    assert ("copy_test_batches", 5, 5) in seen
    with sqlite3.connect(snapshot) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        assert conn.execute("SELECT rows_seen FROM copy_test_batches WHERE id='b4'"
                            ).fetchone() == (4 * 10**10,)
        assert conn.execute("SELECT value FROM meta WHERE key='tables:copy-test'"
                            ).fetchone() == ("1",)
        assert conn.execute("SELECT note FROM unowned_notes").fetchall() == [("kept",)]

    # ... and back to a new PostgreSQL database, where new alias rows get new ids.
    back_url = postgres_server.new_database()
    local = open_store(tmp_path / "b", url=f"sqlite:///{snapshot}", tables=[PLUGIN_TABLES])
    try:
        copy_store(local, back_url, tables=[PLUGIN_TABLES])
    finally:
        local.close()
    back = open_store(tmp_path / "c", url=back_url, tables=[PLUGIN_TABLES])
    try:
        with back.write() as conn:
            conn.execute("INSERT INTO alias_history (name, alias, version, action, at) "
                         "VALUES ('m', 'champion', 9, 'promote', 2000.0)")
        ids = [row[0] for row in back.query("SELECT id FROM alias_history ORDER BY id")]
        assert ids == [1, 2, 3, 4]
    finally:
        back.close()


def test_a_copy_that_fails_midway_leaves_the_destination_without_rows(postgres_url, tmp_path):
    source = open_store(tmp_path / "a", url=postgres_url)
    with source.write() as conn:
        conn.execute("INSERT INTO aliases (name, alias, version, updated_at) "
                     "VALUES ('m', 'champion', 1, 1.0)")
        conn.execute("INSERT INTO runs (id, status, created_at) VALUES ('r1', 'completed', 1.0)")

    def fail_at_runs(table: str, copied: int, total: int) -> None:
        if table == "runs":
            raise KeyboardInterrupt  # Ctrl-C in the middle of the copy

    snapshot = tmp_path / "snap" / "store.db"
    try:
        with pytest.raises(KeyboardInterrupt):
            copy_store(source, f"sqlite:///{snapshot}", progress=fail_at_runs)
        with sqlite3.connect(snapshot) as conn:  # aliases was copied before runs: rolled back
            assert conn.execute("SELECT COUNT(*) FROM aliases").fetchone() == (0,)
        # ... so the same destination can take the copy again.
        summary = copy_store(source, f"sqlite:///{snapshot}")
        assert (summary.rows["aliases"], summary.rows["runs"]) == (1, 1)
    finally:
        source.close()


def test_a_plugin_table_made_from_sqlites_definition_keeps_double_precision(postgres_url,
                                                                             tmp_path):
    """Copied without its TableSet (the plugin not installed here), a table is made from the
    source's definition: SQLite reads DOUBLE PRECISION back as REAL, which PostgreSQL makes 4
    bytes (a p-value of 3e-102 failed: "value out of range: underflow")."""
    source = open_store(tmp_path / "a", tables=[PLUGIN_TABLES])
    try:
        with source.write() as conn:
            conn.execute("INSERT INTO copy_test_batches (id, rows_seen, score) VALUES (?, ?, ?)",
                         ("tiny", 1, 3.1548417113370804e-102))
            conn.execute("INSERT INTO copy_test_batches (id, rows_seen, score) VALUES (?, ?, ?)",
                         ("precise", 2, 1796625197.3216803))
        summary = copy_store(source, postgres_url)
    finally:
        source.close()
    assert summary.created == ["copy_test_batches"]
    copied = open_store(tmp_path / "b", url=postgres_url)
    try:
        rows = {r["id"]: r["score"] for r in copied.query("SELECT id, score FROM copy_test_batches")}
    finally:
        copied.close()
    assert rows == {"tiny": 3.1548417113370804e-102, "precise": 1796625197.3216803}
