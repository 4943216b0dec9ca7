"""`conveyor monitor` and `conveyor watch --inbox` with a recommender champion: a clear usage
error naming the model, its version and `conveyor feedback`, with nothing recorded."""

from __future__ import annotations

import subprocess

import pytest
from conveyor.testing import Project, assert_usage_error, conveyor_executable

pytest.importorskip("conveyor_recsys", reason="needs the recommender template (conveyor-recsys)")


@pytest.fixture(scope="module")
def books(tmp_path_factory) -> Project:
    root = tmp_path_factory.mktemp("monitor-recsys")
    subprocess.run([conveyor_executable(), "init", "books", "--template", "recommender"],
                   cwd=root, check=True, capture_output=True, text=True)
    project = Project(root / "books")
    project.run(check=True)
    return project


def _nothing_recorded(books: Project) -> None:
    listed = books.cli("monitor", "--list", check=True)
    assert "no batch checked yet" in listed.stdout
    assert not (books.path / "reports").exists()


def test_monitor_refuses_a_recommender_and_names_conveyor_feedback(books):
    done = books.cli("monitor", "--data", "data/interactions.csv")
    assert_usage_error(done, "model 'books' v1 is a recommender", "conveyor feedback --data",
                       "Feedback that arrives later", "conveyor recommend --users")
    _nothing_recorded(books)


def test_watch_inbox_refuses_a_recommender_champion_before_the_first_file(books):
    inbox = books.path / "inbox"
    inbox.mkdir(exist_ok=True)
    (inbox / "week.csv").write_bytes((books.path / "data" / "interactions.csv").read_bytes())
    done = books.cli("watch", "--inbox", "inbox", "--once")
    assert_usage_error(done, "model 'books' v1 is a recommender", "watch --feedback DIR",
                       "conveyor feedback --data")
    _nothing_recorded(books)
    assert not (books.path / ".conveyor" / "watch" / "state.json").exists()
