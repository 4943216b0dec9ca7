"""Helpers for conveyor-mlflow's tests."""

from __future__ import annotations

from conveyor.testing import Project


def use_mlflow(project: Project, uri: str, experiment: str) -> None:
    """Point the project's mirror at `uri` (in conveyor.yaml)."""
    config = project.path / "conveyor.yaml"
    text = config.read_text().split("\nmlflow:\n")[0]
    config.write_text(text + f"\nmlflow:\n  tracking_uri: {uri}\n  experiment: {experiment}\n")
