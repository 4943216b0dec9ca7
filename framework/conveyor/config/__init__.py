"""Composing a project's config with Hydra, then checking it against the typed sections.

A project is a folder with `conveyor.yaml`. Hydra composes it with the config library shipped in
the core (`conveyor.configs`), the folders plugins contribute, and the command-line overrides,
using Hydra's own grammar. The result is checked against the framework's and plugins' schemas
before anything runs; every error names the key, where it came from and what would be valid.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import ConfigError, ConveyorError, UsageError

CONFIG_NAME = "conveyor"
CONFIG_FILE = "conveyor.yaml"


UNHASHED_SECTIONS = ("store",)  # left out of ProjectConfig.hash (runs.config_hash)


@dataclass(frozen=True)
class ProjectConfig:
    """A composed, resolved and checked project config."""

    project_dir: Path
    data: dict[str, Any]  # resolved, plain containers, typed sections applied
    overrides: tuple[str, ...]
    choices: dict[str, str]
    hash: str
    # conveyor.secrets.Redactor: what records and messages must not show (None: nothing known)
    redactor: Any = None

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


def library_dir() -> Path:
    import conveyor.configs

    return Path(conveyor.configs.__file__).parent


def find_project(start: Path) -> Path:
    """The nearest folder at or above `start` holding a conveyor.yaml."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise UsageError(
        f"no {CONFIG_FILE} in {start} or any folder above it: this is not a Conveyor project",
        hint="cd into a project, pass -C PROJECT_DIR, or create one with `conveyor init NAME`",
    )


def search_path_override(config_dirs: Sequence[Path]) -> str:
    dirs = [library_dir(), *config_dirs]
    quoted = ",".join("'file://" + str(d).replace("\\", "\\\\").replace("'", "\\'") + "'"
                      for d in dirs)
    return f"hydra.searchpath=[{quoted}]"


def compose_raw(project_dir: Path, overrides: Sequence[str], config_dirs: Sequence[Path],
                schema: type | None = None, *, added: list[str] | None = None) -> Any:
    """Hydra's composition of the project config; see `_compose_raw`. When it fails, the
    secrets in the project's YAML files are remembered first: Hydra's messages quote values."""
    try:
        return _compose_raw(project_dir, overrides, config_dirs, schema, added=added)
    except ConfigError:
        from conveyor.secrets import remember_yaml_files

        remember_yaml_files(project_dir)
        raise


def _compose_raw(project_dir: Path, overrides: Sequence[str], config_dirs: Sequence[Path],
                 schema: type | None = None, *, added: list[str] | None = None) -> Any:
    """Hydra's composition of the project config (a DictConfig including the `hydra` node).

    `schema` (the root dataclass) lets an unknown key in an override suggest the nearest key,
    and lets `key=value` set a typed key the project's YAML lacks (as `++key=value`); the keys
    set that way are appended to `added`."""
    import yaml
    from hydra import compose, initialize_config_dir
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
    )

    from conveyor.plugins import provider_hint
    from conveyor.secrets import remember_overrides

    remember_overrides(overrides)  # a composition error may quote a value given here
    given = list(overrides)
    overrides = list(overrides)
    try:
        while True:
            try:
                with initialize_config_dir(config_dir=str(project_dir), version_base="1.3",
                                           job_name="conveyor"):
                    return compose(config_name=CONFIG_NAME,
                                   overrides=[*overrides, search_path_override(config_dirs)],
                                   return_hydra_config=True)
            except ConfigCompositionException as exc:
                # `serve.timeout=5` where the project's YAML has no `serve:` section: the key
                # is typed (a plugin's schema gives it a default), so it is there to set, as
                # Hydra's `++` (add or override) would; anything else is a real error.
                absent = _typed_but_absent(exc, overrides, given, schema)
                if absent is None:
                    raise
                overrides[overrides.index(absent)] = "++" + absent
                if added is not None:
                    added.append(absent.split("=", 1)[0])
    except OverrideParseException as exc:
        raise UsageError(f"cannot parse the command-line override: {exc}",
                         hint="overrides use Hydra's grammar: key=value, +key=value, ~key, "
                              "group=option") from exc
    except MissingConfigException as exc:
        message = str(exc).split("\nConfig search path:")[0].strip()
        hint = None
        missing = getattr(exc, "missing_cfg_file", "") or ""
        provider = provider_hint(missing)
        if provider and not _installed(provider):
            hint = f"the '{missing.split('/')[0]}' config group comes with {provider}: " \
                   f"pip install {provider}"
        elif provider:  # installed, yet its config folder is not searched: switched off
            hint = f"the '{missing.split('/')[0]}' config group comes with {provider}, " \
                   "which plugins.disable switches off"
        raise ConfigError(f"unknown config choice: {message}", hint=hint) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f"{mark.name}:{mark.line + 1}" if mark else str(project_dir / CONFIG_FILE)
        problem = " ".join(filter(None, [getattr(exc, "context", None),
                                         getattr(exc, "problem", None)])) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}",
                          hint="check the indentation, quotes and brackets there") from exc
    except ConfigCompositionException as exc:
        unknown = _unknown_override_key(exc, overrides, schema)
        if unknown is not None:
            raise unknown from exc
        raise ConfigError(_composition_message(exc)) from exc
    except Exception as exc:
        from omegaconf.errors import OmegaConfBaseException

        if isinstance(exc, OmegaConfBaseException | ValueError):
            raise ConfigError(f"{project_dir / CONFIG_FILE} cannot be composed: {exc}") from exc
        raise


def _composition_message(exc: Exception) -> str:
    text = str(exc)
    cause = exc.__cause__
    if "Could not override" in text or "Could not append" in text:
        first = text.splitlines()[0]
        detail = str(cause).splitlines()[0] if cause else ""
        return f"{first} {detail}".strip()
    return text


def _struct_key(exc: Exception) -> str | None:
    """The key of Hydra's "Could not override 'a.b'" when the composed config lacks it."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause = exc.__cause__
    if not isinstance(cause, ConfigKeyError | ConfigAttributeError) or \
            "not in struct" not in str(cause):
        return None
    return str(getattr(cause, "full_key", None) or getattr(cause, "key", None) or "") or None


def _is_typed(key: str, schema: type) -> bool:
    """Whether the typed schema has `key` (dotted), whatever the YAML holds."""
    return _nearest(key, schema) == f"; did you mean '{key}'?"


def _typed_but_absent(exc: Exception, overrides: Sequence[str], given: Sequence[str],
                      schema: type | None) -> str | None:
    """The plain `key=value` override (as the user gave it) that Hydra refused only because
    the composed config lacks a key the typed schema has; None for any other error."""
    key = _struct_key(exc)
    if schema is None or key is None or not _is_typed(key, schema):
        return None
    for override in overrides:
        name = override.split("=", 1)[0]
        if override in given and not name.startswith(("+", "~")) and \
                (name == key or name.startswith(key + ".")) and _is_typed(name, schema):
            return override
    return None


def _unknown_override_key(exc: Exception, overrides: Sequence[str],
                          schema: type | None) -> ConfigError | None:
    """Hydra's "Could not override 'a.b'" for a key the config does not have, said plainly:
    which key, which override, the nearest valid key, and how to add a key on purpose."""
    key = _struct_key(exc)
    if key is None:
        return None
    from conveyor.config.locate import key_origin

    origin = key_origin(key, overrides=overrides, files=())
    override = next((o for o in overrides
                     if o.split("=", 1)[0].lstrip("+~") == key
                     or o.split("=", 1)[0].lstrip("+~").startswith(key + ".")), None)
    nearest = _nearest(key, schema) if schema is not None else ""
    name = override.split("=", 1)[0].lstrip("+~") if override else key
    if schema is not None and name != key and _is_typed(key, schema) and \
            not _is_typed(name, schema):
        # Under a typed section the YAML lacks, a key the section does not have either.
        return ConfigError(f"unknown config key '{name}'{_nearest(name, schema)}")
    if override and schema is not None and _is_typed(key, schema):
        # A valid (typed) key that this project's config simply does not contain yet.
        return ConfigError(
            f"config key '{key}' is valid but not in this project's config, so "
            f"'{override}' has nothing to override",
            hint=f"to add it from the command line, write +{override.lstrip('+~')}")
    hint = None
    if override and "did you mean" not in nearest:
        hint = f"to add a key the config does not have yet, write +{override.lstrip('+~')}"
    return ConfigError(f"unknown config key '{key}'" + (f" (set in {origin})" if origin else "")
                       + nearest, hint=hint)


def _installed(distribution: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def load_config(project_dir: Path, overrides: Sequence[str], host: Any) -> ProjectConfig:
    from conveyor.config import cache
    from conveyor.config.schema import root_schema

    dirs = [project_dir, library_dir(), *host.contributions.config_dirs]
    hit = cache.lookup(project_dir, overrides, dirs)
    if hit is not None:
        composed, choices = hit
    else:
        from omegaconf import OmegaConf, open_dict

        schema = root_schema({n: s.schema for n, s in host.contributions.config_schemas.items()})
        raw = compose_raw(project_dir, overrides, host.contributions.config_dirs, schema)
        choices = {k: str(v) for k, v in raw.hydra.runtime.choices.items()
                   if not k.startswith("hydra/") and v is not None}
        check_hydra_callbacks(raw, host.contributions.target_prefixes)
        with open_dict(raw):
            del raw["hydra"]
        composed = OmegaConf.to_container(raw, resolve=False)
        from conveyor.secrets import holds_literal_secret

        if not holds_literal_secret(composed):  # the cache is a file: no secret in clear
            cache.store(project_dir, overrides, dirs, composed, choices)
    return check_config(composed, project_dir, tuple(overrides), host, choices=choices)


HYDRA_CALLBACK_PREFIX = "hydra."


def check_hydra_callbacks(raw: Any, trusted: Iterable[str] = ()) -> None:
    """Hydra itself instantiates `hydra.callbacks` under --multirun, outside Conveyor's
    `_target_` rules (conveyor.targets): a config file could name any callable there. Only
    Hydra's own callbacks, or a class named exactly in `security.allowed_targets` or by an
    installed plugin (`trusted`: its `conveyor_target_prefixes` entries; a package entry
    there allows estimators, not callbacks, so only an exact class path counts), may be."""
    callbacks = (raw.get("hydra") or {}).get("callbacks") or {}
    allowed = set(((raw.get("security") or {}).get("allowed_targets")) or []) | set(trusted)
    for name, spec in callbacks.items():
        target = str((spec or {}).get("_target_", "")) if hasattr(spec, "get") else ""
        private = any(part.startswith("_") for part in target.split("."))
        if target in allowed or (target.startswith(HYDRA_CALLBACK_PREFIX) and not private):
            continue
        raise ConfigError(
            f"hydra.callbacks.{name}._target_ '{target}' is not allowed: Hydra would call it "
            "under --multirun, outside Conveyor's checks",
            hint="use one of Hydra's own callbacks (hydra.experimental.callbacks...), or name "
                 "the exact class in security.allowed_targets if you trust it")


def typed_keys_to_add(project_dir: Path, overrides: Sequence[str], host: Any) -> set[str]:
    """The keys among `overrides` that the typed schema has and the project's YAML lacks: Hydra's
    own runtime (`--cfg`, `--multirun`) must be given those as `++key=value`."""
    from conveyor.config.schema import root_schema

    schema = root_schema({n: s.schema for n, s in host.contributions.config_schemas.items()})
    added: list[str] = []
    compose_raw(project_dir, overrides, host.contributions.config_dirs, schema, added=added)
    return set(added)


def check_config(raw: Any, project_dir: Path, overrides: tuple[str, ...], host: Any,
                 choices: dict[str, str] | None = None) -> ProjectConfig:
    """Resolve interpolations and check every section against its schema."""
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import (
        ConfigKeyError,
        InterpolationResolutionError,
        MissingMandatoryValue,
        OmegaConfBaseException,
        ValidationError,
    )

    from conveyor.config.schema import root_schema

    choices = dict(choices or {})
    if isinstance(raw, dict):
        raw = OmegaConf.create(raw)
    if "hydra" in raw:
        choices = {k: str(v) for k, v in raw.hydra.runtime.choices.items()
                   if not k.startswith("hydra/") and v is not None}
        check_hydra_callbacks(raw, host.contributions.target_prefixes)
        with open_dict(raw):
            del raw["hydra"]
    sources = _source_files(project_dir, host.contributions.config_dirs, choices)

    def where(key: str) -> str:
        from conveyor.config.locate import key_origin

        origin = key_origin(key, overrides=overrides, files=sources)
        return f" (set in {origin})" if origin else ""

    from conveyor import secrets

    raw_plain = OmegaConf.to_container(raw, resolve=False)
    secrets.remember_raw(raw_plain)  # errors below may quote values: scrub them
    schemas = {name: s.schema for name, s in host.contributions.config_schemas.items()}
    schema = root_schema(schemas)
    try:
        # Merge before resolving: the schemas' defaults are what interpolations may point at.
        merged = OmegaConf.merge(OmegaConf.structured(schema), raw)
        data = OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
    except ConfigKeyError as exc:
        key = str(exc.full_key or exc.key)
        raise ConfigError(f"unknown config key '{key}'{where(key)}"
                          + _nearest(key, schema),
                          hint=_section_hint(key, host)) from exc
    except InterpolationResolutionError as exc:
        key = str(getattr(exc, "full_key", "?"))
        raise ConfigError(f"config key '{key}'{where(key)} cannot be resolved: "
                          f"{_first_line(exc)}", hint=_interpolation_hint(exc, host)) from exc
    except MissingMandatoryValue as exc:
        key = str(exc.full_key)
        raise ConfigError(f"config key '{key}' needs a value, and none was given",
                          hint=f"set it in {CONFIG_FILE} or on the command line: {key}=...") from exc
    except ValidationError as exc:
        key = str(exc.full_key)
        raise ConfigError(f"invalid value for config key '{key}'{where(key)}: "
                          f"{_first_line(exc)}") from exc
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid config: {_first_line(exc)}") from exc
    _check_names(data, where)
    _check_sections(data, host, where)
    # Where the store is (store.*) says nothing about the experiment: the same run with
    # store.url on the command line or in CONVEYOR_STORE_URL has one hash.
    hashed = {key: value for key, value in data.items() if key not in UNHASHED_SECTIONS}
    digest = hashlib.sha256(json.dumps(hashed, sort_keys=True, default=str).encode()).hexdigest()
    redactor = secrets.Redactor.for_config(data, raw_plain)
    redactor.remember()
    return ProjectConfig(project_dir, data, overrides, choices, digest, redactor)


def _check_names(data: dict[str, Any], where: Any) -> None:
    """Names that become paths (`project`, every `*.model_name`, e.g. `registry.model_name`)
    follow `conveyor.names`' rule, for every command that loads the config."""
    from conveyor.names import NAME_RULE, is_valid_name

    # Shallowest first: a bad `registry.model_name` is reported as itself, not as the
    # `pipeline.register.model_name` interpolated from it.
    for key, value in sorted(flatten(data).items(), key=lambda item: item[0].count(".")):
        if not (key == "project" or key.rsplit(".", 1)[-1] == "model_name") or value is None:
            continue
        if not is_valid_name(value):
            raise ConfigError(f"config key '{key}'{where(key)}: {value!r} is not a usable name",
                              hint=f"it becomes a folder name, so it must be {NAME_RULE}")


def _check_sections(data: dict[str, Any], host: Any, where: Any) -> None:
    """Each plugin's own checks of its section (`ConfigSchema.check`)."""
    for contribution in host.contributions.config_schemas.values():
        if contribution.check is None:
            continue
        try:
            contribution.check(contribution.read(data), where)
        except ConveyorError:
            raise
        except Exception as exc:
            raise ConfigError(f"config section '{contribution.section}' could not be checked: "
                              f"{type(exc).__name__}: {exc}") from exc


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _nearest(key: str, schema: type) -> str:
    parts = key.split(".")
    node: Any = schema
    for part in parts[:-1]:
        match = {f.name: f.type for f in fields(node)} if is_dataclass(node) else None
        if not match or part not in match:
            return ""
        node = _field_type(node, part)
    if not is_dataclass(node):
        return ""
    valid = [f.name for f in fields(node)]
    close = difflib.get_close_matches(parts[-1], valid, n=1, cutoff=0.6)
    prefix = ".".join(parts[:-1])
    if close:
        return f"; did you mean '{prefix + '.' if prefix else ''}{close[0]}'?"
    return f"; valid keys here: {', '.join(valid)}"


def _field_type(node: type, name: str) -> Any:
    import typing

    hints = typing.get_type_hints(node)
    return hints.get(name)


def _section_hint(key: str, host: Any) -> str | None:
    if "." not in key:
        return _missing_plugin(key, host)
    return None


def _interpolation_hint(exc: Exception, host: Any) -> str | None:
    """When an interpolation points into a section no loaded plugin provides (`${monitor.x}`
    after conveyor-monitor was uninstalled or switched off), the plugin to bring back."""
    import re

    found = re.search(r"Interpolation key '([^']+)' not found", str(exc))
    return _missing_plugin(found.group(1).split(".", 1)[0], host) if found else None


def _missing_plugin(section: str, host: Any) -> str | None:
    """What to do when the config section `section` is missing because its plugin is: which
    distribution provides it, and whether it is switched off or not installed."""
    from conveyor.plugins import provider_hint, switched_off_provider

    provider = provider_hint(section)
    if provider is None or provider in {i.distribution for i in host.info.values()}:
        return None
    off = switched_off_provider(section, getattr(host, "disabled", []))
    if off is not None:
        return (f"the '{section}' section belongs to plugin '{off.name}' ({provider}), "
                f"which plugins.disable switches off")
    return f"the '{section}' section belongs to {provider}, which is not installed: " \
           f"pip install {provider}"


def _source_files(project_dir: Path, config_dirs: Sequence[Path],
                  choices: dict[str, str]) -> list[tuple[Path, str]]:
    """The YAML files the composition read, with the package their keys land in."""
    from conveyor.config.locate import package_of

    dirs = [project_dir, library_dir(), *config_dirs]
    files: list[tuple[Path, str]] = [(project_dir / CONFIG_FILE, "")]
    for group, option in choices.items():
        for folder in dirs:
            candidate = folder / group / f"{option}.yaml"
            if candidate.is_file():
                files.append((candidate, package_of(candidate, group)))
                break
    for candidate in sorted((library_dir() / "conveyor").glob("*.yaml")):
        files.append((candidate, package_of(candidate, "conveyor")))
    return files


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists are kept whole."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        if not data and prefix:
            out[prefix] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    else:
        out[prefix] = data
    return out
