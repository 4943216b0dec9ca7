"""`_target_` import paths: only from the allowlist, refused before anything is imported, aliases
through an allowed module refused too; `security.allowed_targets` extends the allowlist."""

from __future__ import annotations

import importlib.abc
import sys
import textwrap

import pytest
from _support import assert_usage_error, recorded_runs
from conveyor.errors import ConfigError
from conveyor.targets import TargetImporter


class ImportRecorder(importlib.abc.MetaPathFinder):
    """Sits first on sys.meta_path and records every import the import system attempts."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def find_spec(self, fullname, path, target=None):
        self.seen.append(fullname)
        return None  # let the normal finders do the work


@pytest.fixture
def recorder():
    finder = ImportRecorder()
    sys.meta_path.insert(0, finder)
    yield finder
    sys.meta_path.remove(finder)


@pytest.fixture
def no_import_module(monkeypatch):
    """Any call of importlib.import_module from conveyor.targets fails the test."""
    calls: list[str] = []

    def forbidden(name, package=None):
        calls.append(name)
        raise AssertionError(f"imported {name}")

    monkeypatch.setattr("conveyor.targets.importlib.import_module", forbidden)
    return calls


OUTSIDE = ["logging.os.system", "builtins.eval", "os.system", "subprocess.run",
           "conveyor_canary_never_imported.payload", "sklearnx.evil"]


@pytest.mark.parametrize("path", OUTSIDE)
def test_outside_the_allowlist_is_refused_before_any_import(path, recorder, no_import_module):
    importer = TargetImporter(["sklearn", "xgboost"])
    with pytest.raises(ConfigError, match="outside the allowlist") as caught:
        importer(path)
    assert path in caught.value.message
    assert no_import_module == []
    assert recorder.seen == []
    assert "conveyor_canary_never_imported" not in sys.modules


def test_the_import_recorder_does_see_imports(recorder):
    # Control for the test above: an allowed but missing module is looked for, and recorded.
    with pytest.raises(ConfigError, match="cannot import"):
        TargetImporter(["conveyor_canary_allowed"])("conveyor_canary_allowed.Model")
    assert "conveyor_canary_allowed" in recorder.seen


@pytest.mark.parametrize("path", ["not a path", "sklearn..x", "", "sklearn.ensemble.Random-Forest"])
def test_malformed_path_is_refused_before_any_import(path, no_import_module):
    with pytest.raises(ConfigError, match="not a dotted import path"):
        TargetImporter(["sklearn"])(path)
    assert no_import_module == []


@pytest.fixture
def allowed_package(tmp_path, monkeypatch):
    """`canary_pkg.models` imports os and defines an estimator-like class."""
    package = tmp_path / "canary_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(textwrap.dedent("""
        import os
        import subprocess as sp

        class Model:
            pass

        run_it = sp.run
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "canary_pkg"
    for name in [m for m in sys.modules if m.startswith("canary_pkg")]:
        del sys.modules[name]


@pytest.mark.parametrize("path", ["canary_pkg.models.os.system", "canary_pkg.models.sp.run",
                                  "canary_pkg.models.os", "canary_pkg.models.run_it"])
def test_alias_through_an_allowed_module_is_refused(allowed_package, path):
    importer = TargetImporter([allowed_package])
    with pytest.raises(ConfigError, match="refusing to import") as caught:
        importer(path)
    assert path in caught.value.message


def test_allowed_class_is_imported(allowed_package):
    assert TargetImporter([allowed_package])("canary_pkg.models.Model").__name__ == "Model"


@pytest.mark.parametrize("path", ["sklearn.datasets._base.os.system",
                                  "sklearn.utils._testing.os.system"])
def test_alias_through_scikit_learn_is_refused(path):
    with pytest.raises(ConfigError, match="through an alias"):
        TargetImporter(["sklearn"])(path)


# --- through the real console script --------------------------------------------------------


@pytest.mark.parametrize("target", ["logging.os.system", "builtins.eval", "os.system"])
def test_run_refuses_target_outside_the_allowlist(new_project, target):
    project = new_project()
    assert_usage_error(project.run(f"model._target_={target}"), f"'{target}'",
                       "outside the allowlist", "security.allowed_targets")
    assert recorded_runs(project) == []


def test_run_refuses_alias_through_an_allowed_module(new_project):
    project = new_project()
    assert_usage_error(project.run("model._target_=sklearn.datasets._base.os.system"),
                       "'sklearn.datasets._base.os.system'", "through an alias")
    assert recorded_runs(project) == []


CANARY_ESTIMATOR = """
    from pathlib import Path
    import os

    from sklearn.linear_model import LogisticRegression

    Path(os.environ["CANARY_MARKER"]).write_text("imported")


    class CanaryModel(LogisticRegression):
        pass
"""


@pytest.mark.slow
def test_allowed_targets_extends_the_allowlist_and_nothing_is_imported_before(new_project,
                                                                              tmp_path):
    project = new_project()
    site = tmp_path / "site"  # outside the project: project modules are allowed implicitly
    site.mkdir()
    (site / "canary_estimators.py").write_text(textwrap.dedent(CANARY_ESTIMATOR))
    marker = tmp_path / "imported.marker"
    env = {"PYTHONPATH": str(site), "CANARY_MARKER": str(marker)}
    target = "model._target_=canary_estimators.CanaryModel"

    refused = project.cli("run", "model=logistic_regression", target, env=env)
    assert_usage_error(refused, "'canary_estimators.CanaryModel'", "outside the allowlist")
    assert not marker.exists(), "the module was imported before it was refused"
    assert recorded_runs(project) == []

    allowed = project.cli("run", "model=logistic_regression", target,
                          "security.allowed_targets=[canary_estimators]", env=env)
    assert allowed.returncode == 0, allowed.stderr
    assert marker.read_text() == "imported"
    runs = project.runs()
    assert runs[0]["status"] == "completed" and runs[0]["model"] == "CanaryModel"
