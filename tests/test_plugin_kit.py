"""The third-party plugin kit: `conveyor plugin new`, a scaffolded plugin installed with real pip
and used by a project, `plugins list` of disabled plugins, and the generated hook reference."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import conveyor
import pytest
import yaml
from _support import assert_usage_error
from conveyor.testing import Project, conveyor_executable

REPO = Path(__file__).resolve().parents[1]


def conveyor_in(folder: Path, *args: str, executable: str | None = None
                ) -> subprocess.CompletedProcess:
    return subprocess.run([executable or conveyor_executable(), *args], cwd=folder, text=True,
                          capture_output=True, timeout=300, env={**os.environ, "COLUMNS": "200"})


# --- conveyor plugin new ----------------------------------------------------------------------


def test_plugin_new_writes_an_installable_package_declaring_its_conveyor_versions(tmp_path):
    result = conveyor_in(tmp_path, "plugin", "new", "drift_alerts")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "conveyor-drift-alerts"
    assert f"created {folder}" in result.stdout and 'pip install -e ".[test]"' in result.stdout
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    assert project["name"] == "conveyor-drift-alerts"
    assert project["requires-python"] == ">=3.11"
    assert project["dependencies"] == ["conveyor>=0.1,<0.2"]
    assert project["entry-points"]["conveyor"] == {"drift_alerts": "conveyor_drift_alerts"}
    module = folder / "src" / "conveyor_drift_alerts"
    source = (module / "__init__.py").read_text()
    assert '"drift_alerts.greet"' in source and "class DriftAlertsConfig" in source
    assert yaml.safe_load((module / "conf" / "drift_alerts" / "formal.yaml").read_text()) == \
        {"greeting": "Good day", "punctuation": "."}
    assert "conveyor_project" in (folder / "tests" / "test_drift_alerts.py").read_text()
    assert (folder / "README.md").is_file()
    compile(source, "__init__.py", "exec")
    assert [p.name for p in tmp_path.iterdir()] == ["conveyor-drift-alerts"]  # no temp left


def test_plugins_new_is_the_same_command_and_dir_is_created(tmp_path):
    result = conveyor_in(tmp_path, "plugins", "new", "extras", "--dir", "nested/here")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "nested" / "here" / "conveyor-extras" / "pyproject.toml").is_file()


@pytest.mark.parametrize(("name", "needles"), [
    ("Hello", ["'Hello' is not a valid plugin name", "lowercase Python identifier"]),
    ("my-plugin", ["'my-plugin' is not a valid plugin name"]),
    ("2fast", ["'2fast' is not a valid plugin name"]),
    ("class", ["'class' is not a valid plugin name"]),
    ("conveyor_x", ["repeats the 'conveyor' prefix", "`conveyor plugin new x`"]),
    ("runs", ["'runs' is already used"]),
    ("sklearn", ["'sklearn' is already used"]),
])
def test_plugin_new_refuses_a_bad_name_and_writes_nothing(tmp_path, name, needles):
    assert_usage_error(conveyor_in(tmp_path, "plugin", "new", name), *needles)
    assert list(tmp_path.iterdir()) == []


def test_plugin_new_refuses_an_existing_folder_and_leaves_it_alone(tmp_path):
    (tmp_path / "conveyor-mine").mkdir()
    (tmp_path / "conveyor-mine" / "keep.txt").write_text("mine")
    assert_usage_error(conveyor_in(tmp_path, "plugin", "new", "mine"),
                       f"{tmp_path / 'conveyor-mine'} already exists")
    assert [p.name for p in (tmp_path / "conveyor-mine").iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["conveyor-mine"]


# --- plugins list -------------------------------------------------------------------------------


def test_plugins_list_shows_a_disabled_plugin_and_the_conveyor_versions_each_supports(
        conveyor_project):
    project = conveyor_project({"defaults": ["conveyor/defaults", "_self_"], "project": "p",
                                "plugins": {"disable": ["pandera"]}})
    rows = {r["name"]: r for r in json.loads(
        project.cli("plugins", "list", "--json", check=True).stdout)}
    assert rows["pandera"]["enabled"] is False and rows["pandera"]["hooks"] == []
    assert rows["sklearn"]["enabled"] is True
    assert rows["sklearn"]["supports_conveyor"] == "<0.2,>=0.1"
    table = project.cli("plugins", "list", check=True).stdout
    assert "(disabled by plugins.disable)" in table


# --- the round trip: scaffold, pip install, discover, use, test, pip uninstall ------------------


def overlay_environment(folder: Path) -> Path:
    """A virtualenv layered on the test environment: it sees every package installed there
    (a .pth file runs site.addsitedir on the test environment's site-packages, so its .pth
    files, editable installs included, apply), while pip installs into and uninstalls from the
    overlay alone. Tests running in parallel never see the plugin, and .venv stays clean even
    if this test is killed. Returns the overlay's bin folder, with a `conveyor` script."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    Path(site, "_conveyor_test_environment.pth").write_text(
        f"import site; site.addsitedir({parent!r})\n")
    script = folder / "bin" / "conveyor"
    script.write_text(f"#!{python}\nimport sys\nfrom conveyor.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    return folder / "bin"


def pip(bin_dir: Path, *args: str) -> subprocess.CompletedProcess:
    # Offline: the build uses the test environment's setuptools; the plugin's requirement on
    # Conveyor is checked by pip against the Conveyor installed there.
    return subprocess.run([bin_dir / "python", "-m", "pip", *args, "--disable-pip-version-check",
                           "--no-input"], capture_output=True, text=True, timeout=300)


ROUND_TRIP_PROJECT = {
    "defaults": ["conveyor/defaults", {"roundtrip": "formal"}, "_self_"],
    "project": "visitors",
    "pipeline": {"welcome": {"uses": "roundtrip.greet", "who": "${project}",
                             "greeting": "${roundtrip.greeting}",
                             "punctuation": "${roundtrip.punctuation}", "times": 2}},
}


@pytest.mark.slow
def test_a_scaffolded_plugin_installed_with_pip_is_discovered_used_tested_and_uninstalled(tmp_path):
    assert conveyor_in(tmp_path, "plugin", "new", "roundtrip").returncode == 0
    package = tmp_path / "conveyor-roundtrip"
    bin_dir = overlay_environment(tmp_path / "env")
    overlay = str(bin_dir / "conveyor")
    project = tmp_path / "visitors"
    project.mkdir()
    (project / "conveyor.yaml").write_text(yaml.safe_dump(ROUND_TRIP_PROJECT, sort_keys=False))
    installed = pip(bin_dir, "install", "--no-index", "--no-build-isolation", str(package))
    try:
        assert installed.returncode == 0, installed.stderr

        listing = conveyor_in(project, "plugins", "list", "--json", executable=overlay)
        assert listing.returncode == 0, listing.stderr
        row = next(r for r in json.loads(listing.stdout) if r["name"] == "roundtrip")
        assert (row["distribution"], row["version"], row["origin"]) == \
            ("conveyor-roundtrip", "0.1.0", "entry point")
        assert row["stage_types"] == ["roundtrip.greet"]
        assert row["config_groups"] == ["roundtrip"] and row["config_sections"] == ["roundtrip"]
        assert row["supports_conveyor"] == "<0.2,>=0.1"
        assert row["hooks"] == ["conveyor_after_run", "conveyor_config_dirs",
                                "conveyor_config_schemas", "conveyor_stage_types"]

        ran = conveyor_in(project, "run", executable=overlay)
        assert ran.returncode == 0, ran.stderr
        assert "roundtrip: run " in ran.stdout
        from conveyor import api

        record = api.get_run(project, Project(project).runs()[0]["id"])
        assert record.status == "completed"
        assert record.metrics == {"greeting_chars": len("Good day, visitors.")}
        assert record.packages["conveyor-roundtrip"] == "0.1.0"

        # The scaffold's own tests, with Conveyor's pytest fixture, pass out of the box.
        tests = subprocess.run([bin_dir / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                "-p", "no:xdist"], cwd=package, capture_output=True, text=True,
                               timeout=600, env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
        assert tests.returncode == 0, tests.stdout + tests.stderr
        assert "5 passed" in tests.stdout

        # The test environment itself never saw the plugin.
        outside = conveyor_in(project, "plugins", "list", "--json")
        assert "roundtrip" not in {r["name"] for r in json.loads(outside.stdout)}
    finally:
        removed = pip(bin_dir, "uninstall", "-y", "conveyor-roundtrip")
    assert removed.returncode == 0, removed.stderr
    assert_usage_error(conveyor_in(project, "run", "--force", executable=overlay),
                       "unknown config choice", "roundtrip/formal")


# --- the hook reference -------------------------------------------------------------------------


def test_the_hook_reference_page_is_generated_from_the_hookspecs_and_up_to_date(tmp_path):
    script = str(REPO / "tools" / "gen_hook_reference.py")
    result = subprocess.run([sys.executable, script, "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    stale = tmp_path / "hooks.md"
    stale.write_text("# Hook reference\n")
    result = subprocess.run([sys.executable, script, "--check", "--output", str(stale)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "is stale: run `make docs`" in result.stderr
    page = (REPO / "docs" / "reference" / "hooks.md").read_text()
    from conveyor import hookspecs

    specs = [n for n in dir(hookspecs) if n.startswith("conveyor_")
             and callable(getattr(hookspecs, n))]
    assert len(specs) >= 18
    for name in specs:
        assert f"## `{name}`" in page, f"{name} is missing from docs/reference/hooks.md"
    assert set(specs) >= conveyor.hookspecs.CLEANUP_HOOKS
    # Each hook's result rule is shown, and so are the public argument types.
    assert page.count("- **Result**: ") + page.count("- **Cleanup**: ") == len(specs)
    for name in ("conveyor.Stage", "conveyor.RunInfo", "conveyor.Host", "conveyor.PluginInfo"):
        assert f"### `{name}`" in page
    # The stage types page: every built-in stage type with its declared outputs.
    stages = (REPO / "docs" / "reference" / "stage-types.md").read_text()
    for name in ("conveyor.register", "conveyor.validate", "sklearn.load", "sklearn.train"):
        assert f"## `{name}`" in stages
    assert "- `model`: the fitted scikit-learn Pipeline" in stages
    stale_stages = tmp_path / "stage-types.md"
    stale_stages.write_text("# Stage types\n")
    result = subprocess.run([sys.executable, script, "--check", "--stage-types-output",
                             str(stale_stages)], capture_output=True, text=True)
    assert result.returncode == 1 and "stage-types.md is stale" in result.stderr


def test_plugins_list_names_codecs_and_drift_detectors_with_their_plugin(tmp_path):
    done = subprocess.run([conveyor_executable(), "plugins", "list", "--json"], cwd=tmp_path,
                          capture_output=True, text=True, check=True)
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert rows["monitor"]["drift_detectors"] == ["chi2", "js", "ks", "psi"]
    # Each stage type's documented outputs, by name.
    assert set(rows["sklearn"]["stage_type_outputs"]["sklearn.split"]) == {"train", "test"}
    assert "verdict" in rows["conveyor.core"]["stage_type_outputs"]["conveyor.register"]
    assert "skops" in rows["sklearn"]["codecs"] and rows["conveyor.core"]["codecs"] == ["json"]


@dataclass
class Window:
    days: int = 7


@dataclass
class Quality:
    threshold: float = 0.5
    columns: list[str] = field(default_factory=list)
    window: Window = field(default_factory=Window)


def test_a_config_schema_reads_its_section_typed_with_defaults():
    schema = conveyor.ConfigSchema("quality", Quality)
    read = schema.read({"quality": {"threshold": 1, "window": {"days": "30"}}})
    assert read == Quality(threshold=1.0, columns=[], window=Window(days=30))
    assert isinstance(read.threshold, float) and isinstance(read.window, Window)
    assert schema.read({}) == Quality() and schema.read(None) == Quality()
    with pytest.raises(conveyor.ConfigError, match=r"quality\.window\.days"):
        schema.read({"quality": {"window": {"days": "a week"}}})


# --- docs/writing-a-plugin.md, built for real -------------------------------------------------

GUIDE = REPO / "docs" / "writing-a-plugin.md"
FRAGMENT = "<!-- fragment: not part of conveyor_quality -->"
# The documented public modules: those `conveyor`'s docstring names (`conveyor.tables`, ...).
PUBLIC_MODULES = {name.split(".")[0] for name in
                  re.findall(r"`conveyor\.([a-z_.]+)`", conveyor.__doc__ or "")}


def guide_blocks() -> list[tuple[str, str, bool]]:
    """The guide's fenced code blocks: (language, text, marked as a fragment)."""
    blocks, lines = [], GUIDE.read_text().splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        if line.startswith("```"):
            language = line[3:].strip()
            before = next((lines[i] for i in range(number - 1, -1, -1) if lines[i].strip()), "")
            end = lines.index("```", number + 1)
            blocks.append((language, "\n".join(lines[number + 1:end]), before == FRAGMENT))
            number = end + 1
            continue
        number += 1
    return blocks


def test_the_writing_a_plugin_guide_builds_a_plugin_that_works_with_public_names_only(tmp_path):
    blocks = guide_blocks()
    code = [text for language, text, fragment in blocks
            if language == "python" and not fragment and "def test_" not in text]
    tests = [text for language, text, fragment in blocks
             if language == "python" and not fragment and "def test_" in text]
    configs = [text for language, text, _ in blocks
               if language == "yaml" and text.startswith("# src/conveyor_quality/conf/")]
    assert len(code) >= 5 and len(tests) == 1 and len(configs) == 2
    source = "\n\n\n".join(code) + "\n"

    # Only public names: what `conveyor` exports and the documented modules.
    import ast

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and \
                node.value.id == "conveyor":
            assert node.attr in conveyor.__all__ or node.attr in PUBLIC_MODULES, node.attr
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("conveyor"):
            module = node.module.removeprefix("conveyor").lstrip(".")
            assert module == "" or module.split(".")[0] in PUBLIC_MODULES, node.module
            if module == "":
                assert all(alias.name in conveyor.__all__ or alias.name in PUBLIC_MODULES
                           for alias in node.names)

    # Install it the way pip would lay it out: a package and a dist-info with the entry point.
    site = tmp_path / "site"
    package = site / "conveyor_quality"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(source)
    for text in configs:
        path = package / text.splitlines()[0].removeprefix("# src/conveyor_quality/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    info = site / "conveyor_quality-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: conveyor-quality\n"
                                   "Version: 0.1.0\nRequires-Dist: conveyor>=0.1,<0.2\n")
    (info / "entry_points.txt").write_text("[conveyor]\nquality = conveyor_quality\n")
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200"}

    listed = subprocess.run([conveyor_executable(), "plugins", "list", "--json"], cwd=tmp_path,
                            capture_output=True, text=True, env=env, timeout=300)
    assert listed.returncode == 0, listed.stderr
    row = {r["name"]: r for r in json.loads(listed.stdout)}["quality"]
    assert row["stage_types"] == ["quality.profile"]
    assert row["stage_type_outputs"] == {
        "quality.profile": {"missing": "the share of missing cells, per column"}}
    assert row["commands"] == ["quality"] and row["config_groups"] == ["quality"]
    assert row["config_sections"] == ["quality"] and row["drift_detectors"] == ["missing_gap"]
    assert "conveyor_after_stage" in row["hooks"]

    # The guide's own tests, run by pytest against the installed plugin.
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_quality.py").write_text("\n\n\n".join(tests) + "\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(suite)], cwd=suite, capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "3 passed" in done.stdout

    # Its lifecycle hook ran, typed with the public RunInfo and Stage.
    project = tmp_path / "shop"
    project.mkdir()
    (project / "data.csv").write_text("x,y,label\n1,2,a\n2,,b\n3,4,a\n4,5,b\n")
    (project / "conveyor.yaml").write_text(yaml.safe_dump({
        "defaults": ["conveyor/defaults", {"quality": "lenient"}, "_self_"],
        "project": "shop",
        "pipeline": {"load": {"uses": "sklearn.load", "source": "data.csv"},
                     "profile": {"uses": "quality.profile", "needs": ["load"],
                                 "max_missing": "${quality.max_missing}"}}}, sort_keys=False))
    run = subprocess.run([conveyor_executable(), "run", "quality.max_missing=0.3"], cwd=project,
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "profile: worst missing share 0.250" in (project / "quality.log").read_text()
    strict = subprocess.run([conveyor_executable(), "run", "quality=strict"], cwd=project,
                            capture_output=True, text=True, env=env, timeout=300)
    assert strict.returncode == 1 and "miss more than 0.0%" in strict.stderr
