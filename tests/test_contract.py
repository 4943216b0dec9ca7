"""User-contract checks: any CSV on a template, compare, plugins list, local plugins."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd


def _odd_csv(path, rows=400, seed=1, text_target=True):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "age": rng.integers(18, 80, rows).astype(float),
        "income": rng.normal(50, 15, rows),
        "city": rng.choice(["Oslo", "Lima", "Pune", None], rows),
        "note": rng.choice(["a b", "c", "d e f"], rows),
        "flag": rng.choice([True, False], rows),
    })
    frame.loc[rng.random(rows) < 0.1, "income"] = np.nan
    score = frame["age"].fillna(40) / 40 + (frame["city"] == "Oslo") + rng.normal(0, 0.3, rows)
    frame["label"] = np.where(score > score.median(), "yes", "no") if text_target else score
    frame.to_csv(path, index=False)


def test_the_classification_template_trains_on_any_csv_given_source_and_target(new_project):
    project = new_project("classification")
    _odd_csv(project.path / "other.csv")
    # the template's schema.yaml describes its own data, not this file: a schema is inferred
    result = project.run("data.source=other.csv", "data.target=label", check=True)
    assert "is not in the data: no slice metrics" in result.stdout
    assert "inferred one from other.csv" in result.stdout
    run = project.runs()[0]
    assert run["status"] == "completed" and run["metrics"]["accuracy"] > 0.5


def test_the_regression_template_trains_on_any_csv_given_source_and_target(new_project):
    project = new_project("regression")
    _odd_csv(project.path / "other.csv", text_target=False)
    project.run("data.source=other.csv", "data.target=label", check=True)
    assert project.runs()[0]["metrics"]["r2"] > 0.3


def test_compare_shows_differing_params_metrics_and_data(new_project):
    project = new_project()
    project.run(check=True)
    project.run("model.params.max_depth=2")
    first, second = [r["id"] for r in reversed(project.runs())]
    compared = json.loads(project.cli("runs", "compare", first, second, "--json", check=True).stdout)
    assert compared["params"] == {"model.params.max_depth": {first: None, second: 2}}
    assert set(compared["metrics"]) == {"accuracy", "balanced_accuracy", "f1_macro"}
    assert compared["same_data"] is True
    text = project.cli("runs", "compare", first[:17], second, check=True).stdout
    assert "model.params.max_depth" in text and "data: same version" in text


def test_plugins_list_names_distributions_hooks_and_contributions(new_project):
    project = new_project()
    plugins = {p["name"]: p for p in json.loads(
        project.cli("plugins", "list", "--json", check=True).stdout)}
    sklearn = plugins["sklearn"]
    assert sklearn["distribution"] == "conveyor-sklearn" and sklearn["origin"] == "entry point"
    assert "sklearn.train" in sklearn["stage_types"] and "model" in sklearn["config_groups"]
    assert "conveyor_stage_types" in sklearn["hooks"]
    assert "conveyor.register" in plugins["conveyor.core"]["stage_types"]


LOCAL_PLUGIN = '''
from dataclasses import dataclass
import conveyor


@dataclass
class Greeting:
    word: str = "hello"


def _shout(ctx):
    ctx.log_metrics({"length": len(ctx.settings["text"])})
    return {"shout": ctx.settings["text"].upper()}


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("local.shout", _shout, "upper-case a text"))


@conveyor.hookimpl
def conveyor_config_schemas(register):
    register(conveyor.ConfigSchema("greeting", Greeting))


@conveyor.hookimpl
def conveyor_cli_commands(register):
    register(conveyor.CliCommand(
        "greet", "say the configured greeting",
        configure=lambda parser: parser.add_argument("name"),
        run=lambda args, app: print(f"hello {args.name} from {app.project_dir.name}")))
'''


def test_a_project_local_plugin_adds_a_stage_type_a_typed_section_and_a_command(conveyor_project):
    project = conveyor_project(
        {"defaults": ["conveyor/defaults", "_self_"], "project": "local",
         "plugins": {"local": ["shouting"]}, "greeting": {"word": "hi"},
         "pipeline": {"shout": {"uses": "local.shout", "text": "${greeting.word} there"}}},
        files={"shouting.py": LOCAL_PLUGIN})
    project.run(check=True)
    run = project.show(project.runs()[0]["id"])
    assert run["metrics"] == {"length": 8}
    assert project.cli("greet", "ann", check=True).stdout.strip() == "hello ann from project"
    bad = project.run("greeting.wrd=x")
    assert bad.returncode == 2 and "did you mean 'greeting.word'" in bad.stderr
