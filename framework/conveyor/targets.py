"""Importing `_target_` paths from config: estimator classes only, from an allowlist.

A config is data written by people and tools. Importing whatever it names would let a config run
arbitrary code (`builtins.eval`, `os.system`, the alias `logging.os.system`), and so would calling
whatever an allowed package happens to contain: `sklearn.utils._testing.
assert_run_python_script_without_output(source_code=...)` runs the Python source it is given. So a
`_target_` path is imported only when all of these hold:

1. It is a dotted path of public names: no segment starts with `_` (`sklearn.utils._testing.*`,
   `Model.__init__`). This applies to the path as written, before anything is imported:
   scikit-learn's estimators live in private modules, but the public path users write
   (`sklearn.ensemble.HistGradientBoostingClassifier`) has no private segment.
2. It lies under an allowlist entry: a package a plugin registers (`conveyor_target_prefixes`),
   an entry of `security.allowed_targets`, or one of the project's own modules. Nothing outside
   is imported at all.
3. It resolves, through modules only (each of them inside the allowlist, so an allowed module
   cannot be a doorway to one that is not), to a class defined in an allowed module: never a
   function, a method, an instance or a nested attribute.
4. That class is
   - an estimator (a class with `fit` and `get_params`) from an allowed package, or
   - named exactly by an allowlist entry (`security.allowed_targets: [mylib.schemas.Orders]`,
     or a plugin's `register("mylib.models.Special")`): what is registered explicitly, or
   - defined in one of the project's own modules (the project's code; whoever edits the
     project's configs can edit that code too).

So `functools.partial`, `operator.attrgetter`, `joblib.Parallel` or `numpy.testing.*` are refused
even when their package is allowed. Callers then only construct the class; nothing else of it is
called during the checks (see conveyor_sklearn's `_check_train`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from conveyor.errors import ConfigError


def _under(dotted: str, entries: Iterable[str]) -> bool:
    return any(dotted == p or dotted.startswith(p + ".") for p in entries)


def is_estimator_class(obj: Any) -> bool:
    """A class with callable `fit` and `get_params`: scikit-learn's estimator protocol."""
    return inspect.isclass(obj) and all(callable(getattr(obj, name, None))
                                        for name in ("fit", "get_params"))


class TargetImporter:
    """Imports `_target_` paths by the rules in this module's docstring.

    `allowed_prefixes`: packages (and exact class paths) from plugins and
    `security.allowed_targets`; `project_modules`: the project's own modules, whose classes are
    accepted whatever they are.
    """

    def __init__(self, allowed_prefixes: Iterable[str], *, project_modules: Iterable[str] = (),
                 origin: str = "") -> None:
        self.packages = tuple(dict.fromkeys(p.strip().rstrip(".") for p in allowed_prefixes if p))
        self.project_modules = tuple(dict.fromkeys(m for m in project_modules if m))
        self.allowed = tuple(dict.fromkeys([*self.packages, *self.project_modules]))
        self.origin = origin

    def is_allowed(self, dotted: str) -> bool:
        return _under(dotted, self.allowed)

    def _refuse(self, path: str, why: str) -> ConfigError:
        where = f" ({self.origin})" if self.origin else ""
        return ConfigError(
            f"refusing to import _target_ '{path}'{where}: {why}",
            hint="a _target_ must be the public path of an estimator class under "
            + ", ".join(self.allowed)
            + "; add a package or an exact class path to security.allowed_targets if you trust it")

    def __call__(self, path: str) -> Any:
        if not isinstance(path, str) or not path or any(not p.isidentifier() for p in path.split(".")):
            raise self._refuse(str(path), "it is not a dotted import path")
        private = [p for p in path.split(".") if p.startswith("_")]
        if private:
            raise self._refuse(path, f"'{private[0]}' is private (a name starting with '_'); "
                                     "write the public path of the class")
        if not self.is_allowed(path):
            raise self._refuse(path, "it is outside the allowlist")
        parts = path.split(".")
        obj: Any = None
        for cut in range(len(parts), 0, -1):
            module_name = ".".join(parts[:cut])
            try:
                obj = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name and module_name.startswith(exc.name) and cut > 1:
                    continue
                raise ConfigError(f"cannot import _target_ '{path}': {exc}",
                                  hint="is the package installed and the name spelled right?") from exc
            attrs = parts[cut:]
            break
        owner = obj
        for attr in attrs:
            if not isinstance(obj, ModuleType):
                raise self._refuse(path, f"'{attr}' is an attribute of "
                                         f"'{getattr(obj, '__qualname__', obj)}', not of a module")
            owner = obj
            try:
                obj = getattr(obj, attr)
            except AttributeError as exc:
                raise ConfigError(f"cannot import _target_ '{path}': "
                                  f"'{getattr(obj, '__name__', obj)}' has no attribute '{attr}'",
                                  hint="check the spelling of the class name") from exc
            if isinstance(obj, ModuleType) and not self.is_allowed(obj.__name__):
                raise self._refuse(path, f"it reaches module '{obj.__name__}' through an alias")
        if not inspect.isclass(obj):
            kind = "a module" if isinstance(obj, ModuleType) else f"a {type(obj).__name__}"
            raise self._refuse(path, f"it is {kind}, not a class")
        module = getattr(obj, "__module__", None)
        if path in self.packages:  # registered explicitly, as this exact class
            return obj
        if module is None or not self.is_allowed(module):
            raise self._refuse(path, f"it resolves to an object from '{module}'")
        if _under(module, self.project_modules) and _under(owner.__name__, self.project_modules):
            return obj  # the project's own code
        if not is_estimator_class(obj):
            raise self._refuse(path, f"{obj.__module__}.{obj.__qualname__} is not an estimator "
                                     "class (one with fit and get_params)")
        return obj


def project_importer(project_dir: Path, plugin_prefixes: Iterable[str],
                     allowed: Iterable[str] = ()) -> TargetImporter:
    """The importer of a project: plugins' prefixes, `security.allowed_targets` and the
    project's own modules (its *.py files and packages)."""
    modules = [p.stem for p in project_dir.glob("*.py")]
    modules += [p.name for p in project_dir.iterdir() if (p / "__init__.py").is_file()]
    return TargetImporter([*plugin_prefixes, *allowed], project_modules=modules)
