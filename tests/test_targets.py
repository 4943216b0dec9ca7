"""`_target_` import paths: only estimator classes (or a class registered exactly), only from
the allowlist, private names refused before anything is imported, aliases through an allowed
module refused too; `security.allowed_targets` extends the allowlist. Known gadgets (issue 14,
item 1: callables inside allowed packages that run code) are refused, and nothing is called
during the pre-run checks but the estimator class."""

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

        class Estimator:
            def fit(self, X, y=None):
                return self

            def get_params(self, deep=True):
                return {}

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


def test_allowed_estimator_class_is_imported(allowed_package):
    assert TargetImporter([allowed_package])("canary_pkg.models.Estimator").__name__ == "Estimator"


def test_a_class_that_is_not_an_estimator_needs_its_exact_path(allowed_package):
    with pytest.raises(ConfigError, match="not an estimator class"):
        TargetImporter([allowed_package])("canary_pkg.models.Model")
    exact = TargetImporter([allowed_package, "canary_pkg.models.Model"])
    assert exact("canary_pkg.models.Model").__name__ == "Model"


def test_the_projects_own_classes_are_accepted_whatever_they_are(allowed_package):
    importer = TargetImporter(["sklearn"], project_modules=[allowed_package])
    assert importer("canary_pkg.models.Model").__name__ == "Model"
    with pytest.raises(ConfigError, match="refusing to import"):
        importer("canary_pkg.models.run_it")  # a function, from subprocess


@pytest.mark.parametrize("path", ["sklearn.utils.fixes.np.testing.measure",
                                  "sklearn.utils.validation.joblib.load",
                                  "sklearn.base.functools.partial",
                                  "sklearn.utils.validation.operator.attrgetter"])
def test_alias_through_scikit_learn_is_refused(path):
    with pytest.raises(ConfigError, match="through an alias"):
        TargetImporter(["sklearn"])(path)


@pytest.mark.parametrize("path", [
    "sklearn.ensemble.HistGradientBoostingClassifier", "sklearn.ensemble.RandomForestRegressor",
    "sklearn.linear_model.LogisticRegression", "sklearn.neighbors.NearestCentroid",
    "sklearn.pipeline.Pipeline", "sklearn.preprocessing.StandardScaler"])
def test_public_paths_of_estimators_in_private_modules_are_imported(path):
    assert TargetImporter(["sklearn"])(path).__name__ == path.rpartition(".")[2]


@pytest.mark.parametrize("path", [
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble.HistGradientBoostingClassifier.__init__",
    "sklearn.ensemble.__builtins__", "sklearn.datasets._base.os.system",
    "sklearn.utils._testing.os.system"])
def test_private_names_are_refused_before_any_import(path, no_import_module):
    with pytest.raises(ConfigError, match="is private"):
        TargetImporter(["sklearn"])(path)
    assert no_import_module == []


# --- known gadgets: callables inside allowed packages that run code ---------------------------

# Allowed on purpose: the rule that refuses them is "estimator classes", not the package.
GADGET_PACKAGES = ["sklearn", "xgboost", "lightgbm", "catboost", "imblearn", "numpy", "joblib",
                   "functools", "operator"]

GADGETS = [
    # issue 14's own: runs the Python source it is given during the pre-run checks
    "sklearn.utils._testing.assert_run_python_script_without_output",
    # numpy.testing runs source code, builds and imports C extensions
    "numpy.testing.measure", "numpy.testing.runstring", "numpy.testing.rundocs",
    "numpy.testing.extbuild.build_and_import_extension", "numpy.testing.assert_equal",
    "numpy.testing.TestCase", "numpy.testing.clear_and_catch_warnings",
    # joblib: unpickling loaders, callables that call what they are given
    "joblib.load", "joblib.numpy_pickle.load", "joblib.Parallel", "joblib.Memory",
    "joblib.delayed", "joblib.register_parallel_backend", "joblib.hash",
    "sklearn.utils.parallel.Parallel", "sklearn.utils.parallel.delayed",
    # higher-order helpers
    "functools.partial", "functools.reduce", "functools.lru_cache", "operator.attrgetter",
    "operator.methodcaller", "operator.itemgetter", "operator.call",
    # public scikit-learn callables that are not estimator classes
    "sklearn.utils.estimator_checks.check_estimator", "sklearn.datasets.fetch_openml",
    "sklearn.base.clone", "sklearn.pipeline.make_pipeline", "sklearn.base.BaseEstimator",
    "sklearn.utils.Bunch", "sklearn.ensemble.HistGradientBoostingClassifier.fit",
    "sklearn.utils.estimator_checks.ignore_warnings",
]


@pytest.mark.parametrize("path", GADGETS)
def test_known_gadgets_are_refused(path):
    with pytest.raises(ConfigError, match="refusing to import") as caught:
        TargetImporter(GADGET_PACKAGES)(path)
    assert path in caught.value.message


def _testing_helpers():
    import sklearn.utils._testing as testing

    return sorted(n for n in dir(testing) if not n.startswith("__"))


def test_every_name_of_sklearns_testing_module_is_refused_where_it_is_reachable(no_import_module):
    """`sklearn.utils._testing.*` is refused before any import; the names it shares with public
    modules (re-exports) are refused there, since none is an estimator class."""
    importer = TargetImporter(GADGET_PACKAGES)
    names = _testing_helpers()
    assert "assert_run_python_script_without_output" in names and len(names) > 30
    for name in names:
        with pytest.raises(ConfigError, match="is private"):
            importer(f"sklearn.utils._testing.{name}")
    assert no_import_module == []


def test_public_reexports_of_sklearns_testing_helpers_are_refused():
    import importlib

    import sklearn.utils._testing as testing

    importer = TargetImporter(GADGET_PACKAGES)
    checked = 0
    for module_name in ("sklearn.utils", "sklearn.utils.estimator_checks", "sklearn.utils.fixes",
                        "sklearn.utils.validation", "sklearn.base"):
        module = importlib.import_module(module_name)
        for name in _testing_helpers():
            if name.startswith("_") or getattr(module, name, None) is not getattr(testing, name):
                continue
            checked += 1
            with pytest.raises(ConfigError, match="refusing to import"):
                importer(f"{module_name}.{name}")
    assert checked >= 5


def test_the_pre_run_check_calls_nothing_but_the_estimator_class(allowed_package, tmp_path):
    """_check_train constructs the class and asks scikit-learn's own parameter validation;
    a `_validate_params` of the class's own is not called, and neither is the gadget."""
    from conveyor.contributions import CheckContext
    from conveyor_sklearn.stages import _check_train

    marker = tmp_path / "pwned"
    source = f"open({str(marker)!r}, 'w').close()"
    importer = TargetImporter(GADGET_PACKAGES)
    context = CheckContext("train", tmp_path, importer)
    gadget = {"_target_": "sklearn.utils._testing.assert_run_python_script_without_output",
              "params": {"source_code": source}}
    with pytest.raises(ConfigError, match="is private"):
        _check_train({"target": "y", "model": gadget}, context)
    for target in ("numpy.testing.measure", "numpy.testing.runstring"):
        with pytest.raises(ConfigError, match="refusing to import"):
            _check_train({"target": "y", "model": {"_target_": target,
                                                   "params": {"code_str": source}}}, context)
    (tmp_path / "canary_pkg" / "models.py").write_text(textwrap.dedent(f"""
        from sklearn.linear_model import LogisticRegression

        class Validating(LogisticRegression):
            def _validate_params(self):
                {source}
    """))
    _check_train({"target": "y", "model": {"_target_": "canary_pkg.models.Validating",
                                           "params": {"C": 2.0}}},
                 CheckContext("train", tmp_path, TargetImporter([allowed_package])))
    assert not marker.exists()


# --- through the real console script --------------------------------------------------------


@pytest.mark.parametrize("target", ["logging.os.system", "builtins.eval", "os.system"])
def test_run_refuses_target_outside_the_allowlist(new_project, target):
    project = new_project()
    assert_usage_error(project.run(f"model._target_={target}"), f"'{target}'",
                       "outside the allowlist", "security.allowed_targets")
    assert recorded_runs(project) == []


def test_run_refuses_alias_through_an_allowed_module(new_project):
    project = new_project()
    assert_usage_error(project.run("model._target_=sklearn.utils.fixes.np.testing.measure"),
                       "'sklearn.utils.fixes.np.testing.measure'", "through an alias")
    assert recorded_runs(project) == []


EVIL = """
_target_: sklearn.utils._testing.assert_run_python_script_without_output
params: {{source_code: "import os; os.system('touch {marker}')"}}
"""


@pytest.mark.parametrize("target", [
    "sklearn.utils._testing.assert_run_python_script_without_output", "numpy.testing.measure",
    "functools.partial"])
def test_run_with_a_gadget_target_never_runs_it(new_project, tmp_path, target):
    """Issue 14, item 1: `model/evil.yaml` ran its payload during the pre-run checks."""
    project = new_project()
    marker = tmp_path / "pwned"
    (project.path / "model").mkdir(exist_ok=True)
    (project.path / "model" / "evil.yaml").write_text(
        EVIL.format(marker=marker).replace(
            "sklearn.utils._testing.assert_run_python_script_without_output", target))
    extra = [] if target.startswith("sklearn") else \
        [f"security.allowed_targets=[{target.split('.')[0]}]"]
    result = project.run("model=evil", *extra)
    assert not marker.exists(), "the payload ran"
    assert_usage_error(result, f"'{target}'", "refusing to import")
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


EVIL_CALLBACK = """# @package _global_
hydra:
  callbacks:
    pwn:
      _target_: sklearn.utils._testing.assert_run_python_script_without_output
      source_code: "import os; os.system('touch {marker}')"
"""


def test_a_hydra_callback_from_a_config_file_is_checked_before_a_sweep(new_project, tmp_path):
    """Hydra instantiates `hydra.callbacks` itself under --multirun, outside conveyor.targets:
    a group file setting one ran its payload (found while fixing issue 14, item 1)."""
    project = new_project()
    marker = tmp_path / "pwned"
    (project.path / "extra").mkdir(exist_ok=True)
    (project.path / "extra" / "evil.yaml").write_text(EVIL_CALLBACK.format(marker=marker))
    result = project.cli("run", "--multirun", "+extra=evil", "model.params.max_depth=2,3")
    assert not marker.exists(), "the payload ran"
    assert_usage_error(result, "hydra.callbacks.pwn._target_", "is not allowed")
    assert recorded_runs(project) == []
