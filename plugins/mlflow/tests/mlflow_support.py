"""Helpers for conveyor-mlflow's tests."""

from __future__ import annotations

from conveyor.testing import Project


def use_mlflow(project: Project, uri: str, experiment: str) -> None:
    """Point the project's mirror at `uri` (in conveyor.yaml)."""
    config = project.path / "conveyor.yaml"
    text = config.read_text().split("\nmlflow:\n")[0]
    config.write_text(text + f"\nmlflow:\n  tracking_uri: {uri}\n  experiment: {experiment}\n")


def model_of(project: Project) -> str:
    """The model name the `shop` fixture gave the project's new registrations."""
    import yaml

    return yaml.safe_load((project.path / "conveyor.yaml").read_text())["registry"]["model_name"]
