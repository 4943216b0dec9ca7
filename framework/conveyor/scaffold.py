"""`conveyor plugin new NAME`: a pip-installable plugin package that works and is tested.

The package is laid out as the built-in plugins are (src layout, `conveyor` entry point, config
groups shipped inside the package) and its tests pass once it is installed (`pip install -e
".[test]" && pytest`). The tests of Conveyor install one with pip and run its tests
(tests/test_plugin_kit.py), so the scaffold cannot rot.
"""

from __future__ import annotations

import keyword
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from conveyor.errors import UsageError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")


def compatible_range(version: str) -> str:
    """The Conveyor versions a new plugin declares: this minor series before 1.0 (0.x may break
    between minors), this major series after."""
    parts = [int(p) if p.isdigit() else 0 for p in version.split(".")[:2]] + [0, 0]
    major, minor = parts[0], parts[1]
    if major == 0:
        return f">={major}.{minor},<{major}.{minor + 1}"
    return f">={major}.{minor},<{major + 1}"


def check_name(name: str, taken: Iterable[str] = ()) -> None:
    """Refuse a name that cannot be a module, stage-type prefix and command, or is in use."""
    if not NAME_PATTERN.match(name) or keyword.iskeyword(name):
        raise UsageError(
            f"'{name}' is not a valid plugin name: it names the module conveyor_{name}, the "
            f"entry point and the stage-type prefix, so it must be a lowercase Python identifier",
            hint="letters, digits and _, starting with a letter: e.g. `conveyor plugin new "
            "drift_alerts`")
    if name.startswith("conveyor"):
        short = name.removeprefix("conveyor").lstrip("_") or "myplugin"
        raise UsageError(f"'{name}' repeats the 'conveyor' prefix (the package would be "
                         f"conveyor-{name.replace('_', '-')})",
                         hint=f"`conveyor plugin new {short}` makes conveyor-{short.replace('_', '-')}")
    if name in set(taken):
        raise UsageError(f"'{name}' is already used by Conveyor or an installed plugin (a command, "
                         "plugin or stage-type prefix of that name)",
                         hint="choose another name; `conveyor plugins list` shows what is taken")


def create_plugin(name: str, parent: Path, conveyor_version: str,
                  taken: Iterable[str] = ()) -> Path:
    """Write the package `conveyor-NAME` into `parent` and return its folder.

    Nothing is left half-written: the files go to a temporary folder renamed into place."""
    check_name(name, taken)
    dist = f"conveyor-{name.replace('_', '-')}"
    destination = parent / dist
    if destination.exists():
        raise UsageError(f"{destination} already exists",
                         hint="choose another name or --dir, or remove that folder")
    parent.mkdir(parents=True, exist_ok=True)
    words = {
        "{{name}}": name,
        "{{module}}": f"conveyor_{name}",
        "{{dist}}": dist,
        "{{Name}}": "".join(part.capitalize() for part in name.split("_")),
        "{{requires}}": compatible_range(conveyor_version),
    }
    staging = Path(tempfile.mkdtemp(prefix=f".{dist}-", dir=parent))
    try:
        for relative, text in FILES.items():
            for token, value in words.items():
                relative, text = relative.replace(token, value), text.replace(token, value)
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text.lstrip("\n"))
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


FILES: dict[str, str] = {}

FILES["pyproject.toml"] = '''
[build-system]
requires = ["setuptools>=70.1"]
build-backend = "setuptools.build_meta"

[project]
name = "{{dist}}"
version = "0.1.0"
description = "A Conveyor plugin: the {{name}}.greet stage type and the {{name}} config group."
readme = "README.md"
requires-python = ">=3.11"
# The Conveyor versions this plugin supports: pip checks it when installing, and Conveyor
# refuses to load the plugin (naming it and this range) under any other version.
dependencies = ["conveyor{{requires}}"]

[project.optional-dependencies]
test = ["pytest>=8"]

# How Conveyor finds the plugin: an entry point in the `conveyor` group naming the module
# that holds the hook implementations.
[project.entry-points.conveyor]
{{name}} = "{{module}}"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
{{module}} = ["conf/**/*.yaml"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

FILES["README.md"] = '''
# {{dist}}

A [Conveyor](https://github.com/conveyor-ml/conveyor) plugin. It contributes:

- the stage type `{{name}}.greet`, which writes a greeting and logs its length as a metric;
- the config section `{{name}}` (typed: unknown keys and wrong types stop a run) and its config
  group, `{{name}}=friendly` (the default below) or `{{name}}=formal`;
- an after-run hook printing one line at the end of each run.

Supports Conveyor {{requires}} (declared in `pyproject.toml`; Conveyor refuses the plugin under
any other version).

## Use it

```
pip install {{dist}}        # or, from this folder: pip install -e ".[test]"
conveyor plugins list       # {{name}} is listed with its stage type and config group
```

In a project's `conveyor.yaml`:

```yaml
defaults:
  - conveyor/defaults
  - {{name}}: friendly
  - _self_

project: greetings
pipeline:
  greet:
    uses: {{name}}.greet
    who: ${project}
    greeting: ${{{name}}.greeting}
    punctuation: ${{{name}}.punctuation}
```

then `conveyor run`, or `conveyor run {{name}}=formal`.

## Develop it

```
pip install -e ".[test]"
pytest
```

The tests use the `conveyor_project` fixture that Conveyor ships (`conveyor.testing`): a project
in a temporary folder, run through the real `conveyor` command. `conveyor plugins list --json`
shows what the plugin registered; the hook reference is `docs/reference/hooks.md` in Conveyor's
repository (or `help(conveyor.hookspecs)`).
'''

FILES[".gitignore"] = '''
__pycache__/
*.egg-info/
build/
dist/
.conveyor/
'''

FILES["src/{{module}}/__init__.py"] = '''
"""{{dist}}: the `{{name}}.greet` stage type, the `{{name}}` config section and group, and an
after-run hook.

Conveyor finds this module through the `conveyor` entry point in pyproject.toml and calls the
functions marked `@conveyor.hookimpl` (the hooks are documented in `conveyor.hookspecs`). Import
heavy libraries inside the functions that need them, so `conveyor --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import conveyor

__version__ = "0.1.0"


@dataclass
class {{Name}}Config:
    """The `{{name}}:` section of a project config (defaults; the config group sets them)."""

    greeting: str = "Hello"
    punctuation: str = "!"


@dataclass
class GreetSettings:
    """The settings of a `{{name}}.greet` stage: an unknown key or a wrong type stops the run."""

    who: str = "world"
    greeting: str = "Hello"
    punctuation: str = "!"
    times: int = 1


def greet(ctx: conveyor.StageContext) -> Mapping[str, Any]:
    settings = ctx.settings
    line = f"{settings['greeting']}, {settings['who']}{settings['punctuation']}"
    ctx.log(line)
    ctx.log_metrics({"greeting_chars": float(len(line))})
    # Outputs are artifacts: stored with the run, passed to the stages that `needs:` this one.
    return {"greeting": {"lines": [line] * settings["times"]}}


def _check(settings: Mapping[str, Any], ctx: conveyor.CheckContext) -> None:
    # Runs before anything executes: bad settings stop the run with exit 2, naming the stage.
    if settings["times"] < 1:
        raise conveyor.ConfigError(
            f"pipeline.{ctx.stage}.times is {settings['times']}; it must be at least 1")


@conveyor.hookimpl
def conveyor_stage_types(register: Callable[[conveyor.StageType], None]) -> None:
    register(conveyor.StageType(
        name="{{name}}.greet", run=greet, description="write a greeting, log its length",
        settings_schema=GreetSettings, check=_check))


@conveyor.hookimpl
def conveyor_config_schemas(register: Callable[[conveyor.ConfigSchema], None]) -> None:
    register(conveyor.ConfigSchema("{{name}}", {{Name}}Config, "greeting and punctuation"))


@conveyor.hookimpl
def conveyor_config_dirs(register: Callable[[Path], None]) -> None:
    # conf/{{name}}/formal.yaml makes `{{name}}=formal` a valid choice on the command line.
    register(Path(__file__).parent / "conf")


@conveyor.hookimpl
def conveyor_after_run(run: conveyor.RunInfo, status: str) -> None:
    # A lifecycle hook: an implementation may take any subset of the hook's arguments.
    print(f"{{name}}: run {run.id} {status}")
'''

FILES["src/{{module}}/conf/{{name}}/friendly.yaml"] = '''
# {{name}}=friendly: the `{{name}}` section of the project config.
greeting: Hello
punctuation: "!"
'''

FILES["src/{{module}}/conf/{{name}}/formal.yaml"] = '''
# {{name}}=formal
greeting: Good day
punctuation: "."
'''

FILES["tests/test_{{name}}.py"] = '''
"""{{dist}}'s tests, run through the real `conveyor` command as users run it.

`conveyor_project` is a pytest fixture Conveyor ships (`conveyor.testing`, loaded by pytest
automatically): it makes a project in a temporary folder from a config mapping;
`project.run_recorded()` runs its pipeline and returns the run the project store recorded.
Install the plugin first: `pip install -e ".[test]"`.
"""

from __future__ import annotations

import json

PROJECT = {
    "defaults": ["conveyor/defaults", {"{{name}}": "friendly"}, "_self_"],
    "project": "greetings",
    "pipeline": {
        "greet": {
            "uses": "{{name}}.greet",
            "who": "${project}",
            "greeting": "${{{name}}.greeting}",
            "punctuation": "${{{name}}.punctuation}",
        },
    },
}


def test_the_greet_stage_runs_and_its_metric_is_recorded(conveyor_project):
    run = conveyor_project(PROJECT).run_recorded()
    assert run.status == "completed"
    assert run.metrics["greeting_chars"] == len("Hello, greetings!")


def test_the_config_group_is_chosen_on_the_command_line(conveyor_project):
    run = conveyor_project(PROJECT).run_recorded("{{name}}=formal")
    assert run.config["{{name}}"] == {"greeting": "Good day", "punctuation": "."}
    assert run.metrics["greeting_chars"] == len("Good day, greetings.")


def test_the_after_run_hook_reports_the_run(conveyor_project):
    result = conveyor_project(PROJECT).run(check=True)
    assert "{{name}}: run " in result.stdout
    assert "completed" in result.stdout


def test_a_bad_setting_stops_the_run_before_it_starts(conveyor_project):
    project = conveyor_project(PROJECT)
    result = project.run("+pipeline.greet.times=0")
    assert result.returncode == 2
    assert "pipeline.greet.times is 0" in result.stderr
    assert project.last_run() is None


def test_the_plugin_is_listed_with_what_it_contributes(conveyor_project):
    listing = json.loads(conveyor_project(PROJECT).cli("plugins", "list", "--json",
                                                       check=True).stdout)
    mine = next(row for row in listing if row["name"] == "{{name}}")
    assert mine["distribution"] == "{{dist}}"
    assert mine["stage_types"] == ["{{name}}.greet"]
    assert mine["config_groups"] == ["{{name}}"]
'''
