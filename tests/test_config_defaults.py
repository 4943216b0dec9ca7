"""Each config default is stated once: in the typed schema (`conveyor.config.schema`, a plugin's
`ConfigSchema`), which is merged under every project's config.

The config library (`configs/`, and each plugin's `conveyor_config_dirs`) holds only what the
schema cannot say: the defaults list, the pipeline's wiring, and the presets of config groups
(model, monitor, serve) a project chooses from. `test_the_library_restates_no_schema_default`
holds it to that.

`test_composed_configs_are_unchanged` guards the effective values: the fully composed and
resolved config (and each planned stage's typed settings) of every shipped project and every
`conveyor init` template, and of the churn project with each preset of the library, compared
with a recorded copy (tests/golden/composed_configs.json). Moving a default from one place to
another changes nothing there; changing a default on purpose means re-recording it:
`CONVEYOR_WRITE_GOLDEN=1 pytest tests/test_config_defaults.py`, and the diff shows what moved.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PROJECTS = REPO / "projects"
GOLDEN = Path(__file__).parent / "golden" / "composed_configs.json"
WRITE = os.environ.get("CONVEYOR_WRITE_GOLDEN") == "1"


def library_dirs() -> list[Path]:
    from conveyor.config import library_dir
    from conveyor.testing import plugin_host

    return [Path(library_dir()), *map(Path, plugin_host().contributions.config_dirs)]


def presets() -> list[tuple[str, str]]:
    """(group, option) of every config-group file of the library, except the framework's own
    base (conveyor/defaults) and the env and pipeline groups every project composes."""
    found = []
    for root in library_dirs():
        for path in sorted(root.glob("*/*.yaml")):
            group = path.parent.name
            if group not in ("conveyor", "env", "pipeline"):
                found.append((group, path.stem))
    return found


def cases(tmp_path: Path) -> dict[str, tuple[Path, list[str]]]:
    from conveyor.testing import plugin_host

    found: dict[str, tuple[Path, list[str]]] = {}
    for config in sorted(PROJECTS.glob("*/conveyor.yaml")):
        found[f"projects/{config.parent.name}"] = (config.parent, [])
    for name, template in sorted(plugin_host().contributions.templates.items()):
        folder = tmp_path / name
        folder.mkdir()
        template.create(folder, "demo")
        found[f"template/{name}"] = (folder, [])
    for group, option in presets():
        override = f"{group}={option}" if group == "model" else f"+{group}={option}"
        found[f"projects/churn {override}"] = (PROJECTS / "churn", [override])
    return found


def composed(folder: Path, overrides: list[str]) -> dict[str, Any]:
    from conveyor import api
    from conveyor.planner import make_plan
    from conveyor.testing import plugin_host

    data = api.load_config(folder, overrides).data
    plan = make_plan(data.get("pipeline") or {}, plugin_host(folder).contributions)
    result = {"config": data, "stages": {stage.name: stage.settings for stage in plan}}
    text = json.dumps(result, sort_keys=True, default=str).replace(str(folder.resolve()), "<dir>")
    return json.loads(text)


def test_composed_configs_are_unchanged(tmp_path):
    found = {name: composed(folder, overrides)
             for name, (folder, overrides) in cases(tmp_path).items()}
    if WRITE:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"recorded {GOLDEN}")
    recorded = json.loads(GOLDEN.read_text())
    assert sorted(found) == sorted(recorded)
    for name in found:
        assert found[name] == recorded[name], name


def schema_defaults() -> dict[str, Any]:
    """Every leaf default of the typed root schema, by dotted key (MISSING ones left out)."""
    from conveyor.config.schema import root_schema
    from conveyor.testing import plugin_host

    host = plugin_host()
    root = root_schema({n: s.schema for n, s in host.contributions.config_schemas.items()})
    out: dict[str, Any] = {}

    def walk(kind: type, prefix: str) -> None:
        for f in fields(kind):
            key = prefix + f.name
            if f.default is not MISSING:
                out[key] = f.default
            elif f.default_factory is not MISSING:
                value = f.default_factory()
                if is_dataclass(value):
                    walk(type(value), key + ".")
                else:
                    out[key] = value

    walk(root, "")
    return {k: v for k, v in out.items() if v is not MISSING and str(v) != "???"}


def leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key != "defaults" or prefix:
                out.update(leaves(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def package(path: Path, text: str) -> str:
    """Where Hydra places the file's keys: its `# @package` header, else its group."""
    for line in text.splitlines():
        if line.startswith("# @package"):
            name = line.split()[-1]
            return "" if name == "_global_" else name + "."
    return path.parent.name + "."


def test_the_library_restates_no_schema_default():
    """The rule: a YAML file of the config library never sets a key to the value the typed
    schema already gives it (that default is stated once, in the schema). The framework's
    base, conveyor/defaults, composed into every project, sets a typed key only where the
    schema cannot state the value (an interpolation, `registry.model_name: ${project}`); a
    preset of a config group (model, monitor, serve) is a choice and may differ from the
    schema, but never restates it."""
    defaults = schema_defaults()
    offenders = []
    for root in library_dirs():
        for path in sorted(root.glob("*/*.yaml")):
            text = path.read_text()
            prefix = package(path, text)
            base = path.parent.name == "conveyor"
            for key, value in leaves(yaml.safe_load(text) or {}).items():
                full = prefix + key
                if full not in defaults:
                    continue
                where = f"{path.relative_to(root.parent)}: {full}: {value!r}"
                if value == defaults[full]:
                    offenders.append(f"{where} restates the schema default")
                elif base and not (isinstance(value, str) and value.startswith("${")):
                    offenders.append(f"{where} differs from the schema default "
                                     f"{defaults[full]!r}: change it in the schema")
    assert offenders == []


# A stage's own default applies only in a hand-written pipeline that omits the setting; the
# library's pipeline hands every one over from its section. `model_name` is the exception: the
# registry's default is the project's name, which a stage type cannot know ("model" there).
NOT_THE_SECTIONS = {"model_name"}


def test_a_stage_setting_defaults_to_what_its_section_defaults_to():
    """Stage settings dataclasses (sklearn.split's `test_size`, conveyor.validate's
    `on_failure`, ...) keep a default of their own for pipelines written by hand, so it is
    held here to the section's: a setting the library's pipeline interpolates from a typed
    key (`test_size: ${data.test_size}`) defaults to that key's schema default."""
    from conveyor.testing import plugin_host

    defaults = schema_defaults()
    stage_types = plugin_host().contributions.stage_types
    pipeline = yaml.safe_load((library_dirs()[0] / "pipeline" / "train.yaml").read_text())
    offenders, compared = [], 0
    for settings in pipeline.values():
        kind = stage_types[settings["uses"]].settings_schema
        own = {f.name: f for f in fields(kind)} if kind is not None else {}
        for name, value in settings.items():
            if not (isinstance(value, str) and value.startswith("${") and value.endswith("}")):
                continue
            key = value[2:-1]
            if name not in own or key not in defaults or name in NOT_THE_SECTIONS:
                continue
            f = own[name]
            mine = f.default if f.default is not MISSING else (
                f.default_factory() if f.default_factory is not MISSING else MISSING)
            compared += 1
            if mine != defaults[key]:
                offenders.append(f"{settings['uses']}.{name} defaults to {mine!r}, "
                                 f"{key} to {defaults[key]!r}")
    assert compared > 10 and offenders == []
