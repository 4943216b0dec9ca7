"""`conveyor serve` opens the store the command resolved (store.url / store.artifacts: command
line > environment > conveyor.yaml), in the BentoML worker processes too (issue 17 review #1:
the workers used to see only the environment and opened the project's own SQLite file)."""

from __future__ import annotations

import shutil

import httpx
import pytest

pytestmark = [pytest.mark.server]


def test_serve_workers_use_the_store_url_of_the_command_line_over_the_environment(
        project, serve, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shutil.move(project.path / ".conveyor", shared)  # the team's store, away from the project
    empty = tmp_path / "empty.db"
    monkeypatch.setenv("CONVEYOR_STORE_URL", f"sqlite:///{empty}")  # beaten by the command line
    server = serve(project, f"store.url=sqlite:///{shared / 'store.db'}",
                   f"store.artifacts={shared / 'artifacts'}")
    metadata = httpx.get(f"{server.url}/metadata", timeout=10).json()
    assert metadata["ready"] is True and metadata["version"] == 1, metadata
    assert not (project.path / ".conveyor" / "store.db").exists()
    assert not empty.exists()


def test_the_resolved_location_as_environment_variables_round_trips(tmp_path, monkeypatch):
    from conveyor.store import location

    monkeypatch.setenv(location.URL_ENV, "postgresql://ml@db/env")
    (tmp_path / "conveyor.yaml").write_text("project: p\nstore:\n  url: postgresql://ml@db/yaml\n")
    try:
        location.set_command_line(["store.url=null", "store.heartbeat_seconds=4"])
        found = location.resolve(tmp_path)
        env = location.as_environment(found)
    finally:
        location.set_command_line([])
    assert found.url is None
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    again = location.resolve(tmp_path)
    assert (again.url, again.artifacts, again.heartbeat_seconds) == (None, None, 4.0)
