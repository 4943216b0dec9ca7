"""Importing `_target_` paths from config, only from an allowlist of module prefixes.

A config is data written by people and tools; importing whatever it names would let a config
run arbitrary code (`builtins.eval`, `os.system`, or the alias `logging.os.system`). The path is
checked before anything is imported, and every module met while resolving it is checked again,
so an allowed module cannot be used as a doorway to one that is not.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from conveyor.errors import ConfigError


class TargetImporter:
    def __init__(self, allowed_prefixes: Iterable[str], *, origin: str = "") -> None:
        self.allowed = tuple(dict.fromkeys(p.strip().rstrip(".") for p in allowed_prefixes if p))
        self.origin = origin

    def is_allowed(self, dotted: str) -> bool:
        return any(dotted == p or dotted.startswith(p + ".") for p in self.allowed)

    def _refuse(self, path: str, why: str) -> ConfigError:
        where = f" ({self.origin})" if self.origin else ""
        return ConfigError(
            f"refusing to import _target_ '{path}'{where}: {why}",
            hint="allowed prefixes are " + ", ".join(self.allowed)
            + "; add yours to security.allowed_targets if you trust it",
        )

    def __call__(self, path: str) -> Any:
        if not isinstance(path, str) or not path or any(not p.isidentifier() for p in path.split(".")):
            raise self._refuse(str(path), "it is not a dotted import path")
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
        for attr in attrs:
            try:
                obj = getattr(obj, attr)
            except AttributeError as exc:
                raise ConfigError(f"cannot import _target_ '{path}': "
                                  f"'{getattr(obj, '__name__', obj)}' has no attribute '{attr}'",
                                  hint="check the spelling of the class name") from exc
            if isinstance(obj, ModuleType) and not self.is_allowed(obj.__name__):
                raise self._refuse(path, f"it reaches module '{obj.__name__}' through an alias")
        module = obj.__name__ if isinstance(obj, ModuleType) else getattr(obj, "__module__", None)
        if module is None or not self.is_allowed(module):
            raise self._refuse(path, f"it resolves to an object from '{module}'")
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            raise self._refuse(path, "it is not a class or function")
        return obj


def project_importer(project_dir: Path, plugin_prefixes: Iterable[str],
                     allowed: Iterable[str] = ()) -> TargetImporter:
    """The importer of a project: plugins' prefixes, the project's own modules (its *.py files
    and packages) and `security.allowed_targets`."""
    modules = [p.stem for p in project_dir.glob("*.py")]
    modules += [p.name for p in project_dir.iterdir() if (p / "__init__.py").is_file()]
    return TargetImporter([*plugin_prefixes, *modules, *allowed])
