"""The plugin host: one pluggy manager per CLI invocation, built the same way for every plugin.

Built-in plugins are ordinary distributions with a `conveyor` entry point, so they load through
exactly the path a third party's does. A project may add modules of its own (`plugins.local`).
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import difflib
import importlib
import re
import sys
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pluggy

from conveyor import hookspecs
from conveyor.contributions import CliCommand as CliCommandType
from conveyor.contributions import (
    Codec,
    ConfigSchema,
    Contributions,
    DriftDetector,
    ProjectTemplate,
    StageType,
)
from conveyor.errors import ConveyorError, PluginError
from conveyor.host import PROVIDER_KINDS, PluginInfo
from conveyor.markers import PROJECT_NAME

ENTRY_POINT_GROUP = "conveyor"
CORE_PLUGIN = "conveyor.core"
# The core's own subcommands, which no plugin (nor a scaffolded plugin's name) may take.
CORE_COMMANDS = frozenset({"run", "plan", "init", "runs", "models", "plugins", "plugin",
                           "completion", "store"})

# Which distribution provides the built-in stage-type prefixes and config groups, so that a
# project used with only the core installed is told what to install. Names only: never imported.
KNOWN_PROVIDERS = {
    "sklearn": "conveyor-sklearn",
    "model": "conveyor-sklearn",
    "pandera": "conveyor-pandera",
    "dvc": "conveyor-dvc",
    "bentoml": "conveyor-bentoml",
    "monitor": "conveyor-monitor",
    "retrain": "conveyor-retrain",
    "recsys": "conveyor-recsys",
    "ui": "conveyor-ui",
    "mlflow": "conveyor-mlflow",
}


# The key prefixes of `Contributions.provider`, by the kind `Host.provider` is asked for.
_PROVIDER_KEYS = {"stage type": "stage", "codec": "codec", "command": "command",
                  "template": "template", "config section": "section",
                  "config dir": "config_dir", "drift detector": "drift detector"}
assert set(_PROVIDER_KEYS) == set(PROVIDER_KINDS)

# Set while one plugin's implementation runs: the `register` callbacks of the extension hooks
# learn from it which plugin registers.
_CURRENT_PLUGIN: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "conveyor_current_plugin", default=None)
# Set by `call_first`: the plugin whose implementation gave the first-result answer.
_ANSWERED_BY: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "conveyor_answered_by", default=None)
# Set by `collecting_errors`: where the errors of cleanup hooks' implementations go.
_CLEANUP_ERRORS: contextvars.ContextVar[list[PluginError] | None] = contextvars.ContextVar(
    "conveyor_cleanup_errors", default=None)


class PluginHost:
    """A pluggy manager with Conveyor's loading rules, its contributions and guarded hook calls.

    It implements `conveyor.Host`, the part plugins may call. Every hook call goes through
    pluggy's own hook callers (``pm.hook.NAME(**kwargs)``), so pluggy's tracing and hook-call
    monitoring see them all and wrappers work on every hook. What Conveyor adds is done once,
    at registration: each implementation's function is guarded (see `_guard`) so that an
    exception names the plugin and hook, and the implementations of cleanup hooks
    (`hookspecs.CLEANUP_HOOKS`) all run even when one raises.
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.info: dict[str, PluginInfo] = {}
        self.disabled: list[PluginInfo] = []
        self._contributions: Contributions | None = None
        self._selection: tuple[frozenset[str], tuple[str, ...]] = (frozenset(), ())
        self._on_path: list[str] = []

    # --- loading ---------------------------------------------------------------------------

    def load(
        self,
        *,
        disable: Iterable[str] = (),
        local_modules: Iterable[str] = (),
        project_dir: Path | None = None,
    ) -> PluginHost:
        from conveyor import core_plugin

        disabled = set(disable)
        self._register(core_plugin, PluginInfo(CORE_PLUGIN, "conveyor", _version("conveyor"), "core"))
        for ep in _entry_points():
            info = _entry_point_info(ep)
            if ep.name in disabled or info.distribution in disabled:
                self.pm.set_blocked(ep.name)
                self.disabled.append(info)
                continue
            self._load_entry_point(ep, info)
        for module_name in local_modules:
            self._register_local(module_name, project_dir)
        self._check_pending()
        self._selection = (frozenset(disabled), tuple(local_modules))
        return self

    def select(self, *, disable: Iterable[str] = (), local_modules: Iterable[str] = (),
               project_dir: Path | None = None) -> bool:
        """Load exactly the plugins a config selects (`plugins.disable`, `plugins.local`),
        unregistering those it switches off and loading those it switches on; True when what is
        loaded changed. The host stays the same object: one per invocation."""
        disabled, local = frozenset(disable), tuple(local_modules)
        if (disabled, local) == self._selection:
            return False
        changed = False
        for ep in _entry_points():
            info = _entry_point_info(ep)
            off = ep.name in disabled or info.distribution in disabled
            if off and ep.name in self.info:
                self.pm.unregister(name=ep.name)
                del self.info[ep.name]
                self.pm.set_blocked(ep.name)
                self.disabled.append(info)
                changed = True
            elif not off and self.pm.is_blocked(ep.name):
                self.pm.unblock(ep.name)
                self.disabled = [d for d in self.disabled if d.name != ep.name]
                self._load_entry_point(ep, info)
                changed = True
        for name, info in list(self.info.items()):
            if info.origin == "local module" and name not in local:
                self.pm.unregister(name=name)
                del self.info[name]
                changed = True
        for module_name in local:
            if module_name not in self.info:
                self._register_local(module_name, project_dir)
                changed = True
        self._check_pending()
        self._selection = (disabled, local)
        if changed:
            self._contributions = None
        return changed

    def close(self) -> None:
        """Take the project folder off `sys.path` if loading local plugins put it there."""
        for folder in self._on_path:
            with contextlib.suppress(ValueError):
                sys.path.remove(folder)
        self._on_path.clear()

    def _load_entry_point(self, ep: metadata.EntryPoint, info: PluginInfo) -> None:
        self._check_supported(ep, info)
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"plugin '{ep.name}' ({info.distribution} {info.version}) failed to import: "
                f"{type(exc).__name__}: {exc}",
                hint=f"reinstall or uninstall {info.distribution}, or switch it off with "
                f"plugins.disable=[{ep.name}]",
            ) from exc
        self._register(plugin, info)

    def _check_supported(self, ep: metadata.EntryPoint, info: PluginInfo) -> None:
        """Refuse, before importing it, a plugin whose distribution declares (Requires-Dist) a
        Conveyor range this Conveyor is outside of: the pip-native declaration, which pip also
        checks at install time unless told `--no-deps`."""
        wanted = supported_conveyor(ep.dist)
        running = _version("conveyor")
        if wanted is None or _in_range(running, wanted):
            return
        raise PluginError(
            f"plugin '{ep.name}' ({info.distribution} {info.version}) supports Conveyor "
            f"{wanted}, but this is Conveyor {running}",
            hint=f"install a release of {info.distribution} made for Conveyor {running}, or "
            f"switch it off with plugins.disable=[{ep.name}]",
        )

    def _register_local(self, module_name: str, project_dir: Path | None) -> None:
        if project_dir is not None and str(project_dir) not in sys.path:
            # A local module may import its neighbours when its hooks run: the folder stays
            # on sys.path while the host lives (`close` takes it off).
            sys.path.insert(0, str(project_dir))
            self._on_path.append(str(project_dir))
        info = PluginInfo(module_name, "(project)", "local", "local module")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise PluginError(
                f"local plugin module '{module_name}' (plugins.local) failed to import: "
                f"{type(exc).__name__}: {exc}",
                hint=f"is {module_name}.py in the project folder?",
            ) from exc
        self._register(module, info)

    def _register(self, plugin: Any, info: PluginInfo) -> None:
        try:
            self.pm.register(plugin, name=info.name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(
                f"plugin {info.label()} breaks the hook contract: {_contract_problem(self.pm, exc)}",
                hint="compare its hook signatures with `conveyor.hookspecs` "
                "(docs/reference/hooks.md)",
            ) from exc
        self.info[info.name] = info
        self._check_wrappers(plugin, info)
        self._guard(plugin)

    def _check_wrappers(self, plugin: Any, info: PluginInfo) -> None:
        """Every hook may be wrapped with a new-style wrapper (``wrapper=True``). An old-style
        ``hookwrapper=True`` is refused, except on ``conveyor_run_stage`` (which has always
        allowed it): its outcome object bypasses the guard that names the plugin behind an
        error."""
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.spec is None or caller.name in hookspecs.UNGUARDED_HOOKS:
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and impl.hookwrapper:
                    self.pm.unregister(plugin)
                    del self.info[info.name]
                    raise PluginError(
                        f"plugin {info.label()} implements {caller.name} as an old-style "
                        "hookwrapper, which Conveyor does not support there",
                        hint=f"use @conveyor.hookimpl(wrapper=True) for its {caller.name}: "
                        "`result = yield` gives the other implementations' result",
                    )

    def _guard(self, plugin: Any) -> None:
        """Replace the function of each of the plugin's hook implementations by a guarded one.

        pluggy keeps calling it through its own hook callers; the guard only says which plugin
        is running (for the ``register`` callbacks and first-result answers) and turns an
        exception into a `PluginError` naming the plugin and hook (see `_named`). For cleanup
        hooks it records the error instead (see `collecting_errors`) and returns None, so the
        other implementations still run. ``conveyor_run_stage`` is left as it is: the runner
        reports a stage's own failure and a wrapper's failure itself.
        """
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.spec is None or caller.name in hookspecs.UNGUARDED_HOOKS:
                continue
            first = bool(caller.spec.opts.get("firstresult"))
            cleanup = caller.name in hookspecs.CLEANUP_HOOKS
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin or getattr(impl.function, "_conveyor_guarded", False):
                    continue
                if impl.wrapper:
                    guarded = _guarded_wrapper(self, caller.name, impl.plugin_name,
                                               impl.function, first, cleanup)
                else:
                    guarded = _guarded_call(self, caller.name, impl.plugin_name, impl.function,
                                            first, cleanup)
                guarded._conveyor_guarded = True  # type: ignore[attr-defined]
                impl.function = guarded

    def _named(self, hook: str, plugin: str, exc: BaseException, first: bool) -> BaseException:
        """The exception to raise for `exc`, raised by `plugin`'s implementation of `hook`.

        A `PluginError` passes as it is, and so does any Conveyor error from a first-result
        hook (a ConfigError for a broken schema, say: its exit code matters to the caller).
        Elsewhere a Conveyor error keeps its message, hint and exit code, with the plugin and
        hook added; any other exception becomes a PluginError naming them."""
        if isinstance(exc, PluginError) or (first and isinstance(exc, ConveyorError)):
            return exc
        if isinstance(exc, ConveyorError):
            error = PluginError(f"{exc.message} (plugin {self.describe(plugin)}, in {hook})",
                                hint=exc.hint)
            error.exit_code = exc.exit_code
            return error
        return PluginError(f"plugin {self.describe(plugin)} raised in {hook}: "
                           f"{type(exc).__name__}: {exc}")

    def _check_pending(self) -> None:
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin) or "?"
            info = self.info.get(name)
            who = info.label() if info else f"'{name}'"
            hint = "check the hook name's spelling against `conveyor.hookspecs`"
            unknown = str(exc).split("'")[1] if str(exc).count("'") >= 2 else ""
            close = difflib.get_close_matches(
                unknown, [n for n in dir(hookspecs) if n.startswith("conveyor_")], n=1)
            if close:
                hint = f"did you mean '{close[0]}'? (the hooks are listed in `conveyor.hookspecs`)"
            raise PluginError(
                f"plugin {who} implements a hook Conveyor does not define: {exc}", hint=hint,
            ) from exc

    @property
    def plugins(self) -> list[PluginInfo]:
        """The plugins loaded now (the core included), in load order."""
        return list(self.info.values())

    @property
    def installed(self) -> list[PluginInfo]:
        """Every installed plugin (the `conveyor` entry points), loaded or switched off."""
        return [_entry_point_info(ep) for ep in _entry_points()]

    def describe(self, plugin_name: str) -> str:
        info = self.info.get(plugin_name)
        return info.label() if info else f"'{plugin_name}'"

    # --- contributions ---------------------------------------------------------------------

    @property
    def contributions(self) -> Contributions:
        if self._contributions is None:
            self._contributions = self._collect()
        return self._contributions

    def _collect(self) -> Contributions:
        found = Contributions()

        def add_stage_type(plugin: str, stage_type: StageType) -> None:
            _expect(plugin, stage_type, StageType, "conveyor_stage_types", self)
            if stage_type.row_transform is not None and not callable(stage_type.row_transform):
                raise PluginError(f"plugin {self.describe(plugin)} registered stage type "
                                  f"'{stage_type.name}' with a row_transform that is not a "
                                  "function (frame, settings) -> frame")
            self._check_prefix(plugin, stage_type)
            _no_duplicate(found.stage_types, stage_type.name, "stage type", plugin, found, self)
            version = stage_type.version or self.info[plugin].version
            found.stage_types[stage_type.name] = replace(stage_type, version=version)
            found.provider[f"stage:{stage_type.name}"] = plugin

        def add_codec(plugin: str, codec: Codec) -> None:
            _expect(plugin, codec, Codec, "conveyor_codecs", self)
            found.codecs.append(codec)
            found.provider.setdefault(f"codec:{codec.name}", plugin)

        def add_command(plugin: str, command: CliCommandType) -> None:
            _expect(plugin, command, CliCommandType, "conveyor_cli_commands", self)
            if command.name in CORE_COMMANDS:
                raise PluginError(f"plugin {self.describe(plugin)} registers the command "
                                  f"'{command.name}', which is Conveyor's own",
                                  hint="give the command another name")
            _no_duplicate(found.cli_commands, command.name, "command", plugin, found, self)
            found.cli_commands[command.name] = command
            found.provider[f"command:{command.name}"] = plugin

        def add_template(plugin: str, template: ProjectTemplate) -> None:
            _expect(plugin, template, ProjectTemplate, "conveyor_project_templates", self)
            _no_duplicate(found.templates, template.name, "template", plugin, found, self)
            found.templates[template.name] = template
            found.provider[f"template:{template.name}"] = plugin

        def add_schema(plugin: str, schema: ConfigSchema) -> None:
            _expect(plugin, schema, ConfigSchema, "conveyor_config_schemas", self)
            _no_duplicate(found.config_schemas, schema.section, "config section", plugin, found, self)
            found.config_schemas[schema.section] = schema
            found.provider[f"section:{schema.section}"] = plugin

        def add_dir(plugin: str, path: str | Path) -> None:
            path = Path(path)
            if not path.is_dir():
                raise PluginError(f"plugin {self.describe(plugin)} registered config folder "
                                  f"{path}, which does not exist")
            found.config_dirs.append(path.resolve())
            found.provider[f"config_dir:{path.resolve()}"] = plugin

        def add_prefix(plugin: str, prefix: str) -> None:
            found.target_prefixes.append(str(prefix))

        def add_detector(plugin: str, detector: DriftDetector) -> None:
            _expect(plugin, detector, DriftDetector, "conveyor_drift_detectors", self)
            _no_duplicate(found.drift_detectors, detector.name, "drift detector", plugin, found,
                          self)
            unknown = set(detector.kinds) - {"numeric", "categorical"}
            if not detector.kinds or unknown:
                raise PluginError(f"plugin {self.describe(plugin)} registered drift detector "
                                  f"'{detector.name}' for kinds {sorted(detector.kinds)}; "
                                  "expected 'numeric' and/or 'categorical'")
            found.drift_detectors[detector.name] = detector
            found.provider[f"drift detector:{detector.name}"] = plugin

        def add_tables(plugin: str, tables: Any) -> None:
            from conveyor.store.tables import TableSet

            _expect(plugin, tables, TableSet, "conveyor_store_tables", self)
            if any(t.owner == tables.owner for t in found.store_tables):
                raise PluginError(f"plugin {self.describe(plugin)} registers store tables of "
                                  f"'{tables.owner}', which plugin "
                                  f"{self.describe(found.provider[f'tables:{tables.owner}'])} "
                                  "registers too")
            found.store_tables.append(tables)
            found.provider[f"tables:{tables.owner}"] = plugin

        for hook, adder in [
            ("conveyor_stage_types", add_stage_type),
            ("conveyor_codecs", add_codec),
            ("conveyor_cli_commands", add_command),
            ("conveyor_project_templates", add_template),
            ("conveyor_config_schemas", add_schema),
            ("conveyor_config_dirs", add_dir),
            ("conveyor_target_prefixes", add_prefix),
            ("conveyor_drift_detectors", add_detector),
            ("conveyor_store_tables", add_tables),
        ]:
            getattr(self.pm.hook, hook)(register=_bind(adder))
        found.codecs.sort(key=lambda c: -c.priority)
        return found

    def _check_prefix(self, plugin: str, stage_type: StageType) -> None:
        """An installed plugin's stage types are named under its prefix: its entry point's
        name and a dot (``sklearn.train``), ``conveyor.`` for the core. A project's own
        modules (plugins.local) are not held to one."""
        info = self.info.get(plugin)
        if info is None or info.origin == "local module":
            return
        prefix = stage_type_prefix(info)
        if not stage_type.name.startswith(prefix + "."):
            last = stage_type.name.rsplit(".", 1)[-1]
            raise PluginError(
                f"plugin {info.label()} registered stage type '{stage_type.name}', which is not "
                f"under its prefix '{prefix}.'",
                hint=f"name it '{prefix}.{last}': a plugin's stage types start with its entry "
                "point's name",
            )

    # --- the public Host (conveyor.Host) -------------------------------------------------

    @property
    def hook(self) -> Any:
        """pluggy's hook relay: ``host.hook.conveyor_NAME(**kwargs)``."""
        return self.pm.hook

    @property
    def stage_types(self) -> Mapping[str, StageType]:
        return MappingProxyType(self.contributions.stage_types)

    @property
    def codecs(self) -> Sequence[Codec]:
        return tuple(self.contributions.codecs)

    @property
    def drift_detectors(self) -> Mapping[str, DriftDetector]:
        return MappingProxyType(self.contributions.drift_detectors)

    @property
    def templates(self) -> Mapping[str, ProjectTemplate]:
        return MappingProxyType(self.contributions.templates)

    @property
    def config_schemas(self) -> Mapping[str, ConfigSchema]:
        return MappingProxyType(self.contributions.config_schemas)

    def provider(self, kind: str, name: str) -> PluginInfo | None:
        """The plugin that registered the contribution `name` of `kind` ("stage type",
        "drift detector", ...: `conveyor.host.PROVIDER_KINDS`), or None."""
        if kind not in _PROVIDER_KEYS:
            raise ValueError(f"unknown kind of contribution {kind!r}; "
                             f"expected one of {', '.join(_PROVIDER_KEYS)}")
        plugin = self.contributions.provider.get(f"{_PROVIDER_KEYS[kind]}:{name}")
        return None if plugin is None else self.info.get(plugin)

    # --- calls made by the core --------------------------------------------------------------

    @contextmanager
    def collecting_errors(self) -> Iterator[list[PluginError]]:
        """Collect the errors of cleanup hooks' implementations called inside the block (they
        are otherwise printed as warnings): each names its plugin."""
        errors: list[PluginError] = []
        token = _CLEANUP_ERRORS.set(errors)
        try:
            yield errors
        finally:
            _CLEANUP_ERRORS.reset(token)

    def call_each(self, hook: str, **kwargs: Any) -> list[PluginError]:
        """Call a broadcast hook through pluggy. An implementation's error names its plugin; for
        a cleanup hook (`hookspecs.CLEANUP_HOOKS`) every implementation runs and the errors are
        returned, otherwise the first is raised: which hooks keep going is the hook's rule."""
        with self.collecting_errors() as errors:
            getattr(self.pm.hook, hook)(**kwargs)
        return errors

    def call_first(self, hook: str, **kwargs: Any) -> tuple[Any, str | None]:
        """Call a first-result hook through pluggy: the answer and the plugin that gave it
        (None, None when no plugin answers)."""
        answered: list[str] = []
        token = _ANSWERED_BY.set(answered)
        try:
            answer = getattr(self.pm.hook, hook)(**kwargs)
        finally:
            _ANSWERED_BY.reset(token)
        if answer is None:
            return None, None
        return answer, (answered[-1] if answered else None)

    def hooks_of(self, plugin_name: str) -> list[str]:
        plugin = self.pm.get_plugin(plugin_name)
        if plugin is None:
            return []
        return sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)


def _entry_point_info(ep: metadata.EntryPoint) -> PluginInfo:
    dist = ep.dist.name if ep.dist else "?"
    return PluginInfo(ep.name, dist, ep.dist.version if ep.dist else "?", "entry point")


def _report(error: BaseException) -> None:
    """A cleanup hook's error: collected when the caller collects, otherwise a warning."""
    if not isinstance(error, PluginError):
        error = PluginError(str(error))
    errors = _CLEANUP_ERRORS.get()
    if errors is not None:
        errors.append(error)
    else:
        print(f"warning: {error}", file=sys.stderr)


def _guarded_call(host: PluginHost, hook: str, plugin: str, function: Callable[..., Any],
                  first: bool, cleanup: bool) -> Callable[..., Any]:
    def guarded(*args: Any) -> Any:
        token = _CURRENT_PLUGIN.set(plugin)
        try:
            answer = function(*args)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            error = host._named(hook, plugin, exc, first)
            if cleanup:
                _report(error)
                return None
            if error is exc:
                raise
            raise error from exc
        finally:
            _CURRENT_PLUGIN.reset(token)
        if first and answer is not None:
            answered = _ANSWERED_BY.get()
            if answered is not None:
                answered.append(plugin)
        return answer

    guarded.__wrapped__ = function  # type: ignore[attr-defined]
    return guarded


def _guarded_wrapper(host: PluginHost, hook: str, plugin: str, function: Callable[..., Any],
                     first: bool, cleanup: bool) -> Callable[..., Any]:
    """A new-style wrapper (a generator function) guarded like `_guarded_call`: an exception of
    its own names the plugin; one thrown into it from the implementations it wraps (already
    named) passes through unchanged."""

    def fail(exc: BaseException) -> Any:
        error = host._named(hook, plugin, exc, first)
        if cleanup:
            _report(error)
            return None
        if error is exc:
            raise exc
        raise error from exc

    def step(action: Callable[[], Any]) -> tuple[bool, Any]:
        token = _CURRENT_PLUGIN.set(plugin)
        try:
            return False, action()
        except StopIteration as stop:
            return True, stop.value
        finally:
            _CURRENT_PLUGIN.reset(token)

    def guarded(*args: Any) -> Generator[Any, Any, Any]:
        try:
            gen = function(*args)
            done, value = step(lambda: next(gen))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            fail(exc)  # raises, unless the hook is a cleanup hook: then pass the result on
            return (yield)
        while not done:
            try:
                sent = yield value
            except BaseException as thrown:
                try:
                    done, value = step(lambda thrown=thrown: gen.throw(thrown))
                except BaseException as exc:
                    if exc is thrown or isinstance(exc, KeyboardInterrupt | SystemExit):
                        raise
                    return fail(exc)
            else:
                try:
                    done, value = step(lambda sent=sent: gen.send(sent))
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as exc:
                    return fail(exc)
        return value

    guarded.__wrapped__ = function  # type: ignore[attr-defined]
    return guarded


def _bind(adder: Callable[[str, Any], None]) -> Callable[[Any], None]:
    """A ``register`` callback: the plugin registering is the one whose implementation runs."""

    def register(item: Any) -> None:
        adder(_CURRENT_PLUGIN.get() or "?", item)

    return register


def _public_name(kind: type) -> str:
    """Where a plugin author imports `kind` from: conveyor.store's types from there, the
    others from conveyor."""
    package = "conveyor.store" if kind.__module__.startswith("conveyor.store") else "conveyor"
    return f"{package}.{kind.__name__}"


def _expect(plugin: str, item: Any, kind: type, hook: str, host: PluginHost) -> None:
    if not isinstance(item, kind):
        raise PluginError(
            f"plugin {host.describe(plugin)} registered {item!r} in {hook}; "
            f"expected a {_public_name(kind)}"
        )


def _no_duplicate(
    existing: dict, name: str, what: str, plugin: str, found: Contributions, host: PluginHost
) -> None:
    if name in existing:
        key = _PROVIDER_KEYS.get(what, what)
        first = found.provider.get(f"{key}:{name}", "?")
        raise PluginError(
            f"{what} '{name}' is registered twice: by {host.describe(first)} and by "
            f"{host.describe(plugin)}",
            hint=f"disable one of them with plugins.disable=[{plugin}]",
        )


def supported_conveyor(dist: metadata.Distribution | None) -> str | None:
    """The Conveyor versions a distribution declares it works with (its `Requires-Dist:
    conveyor...` specifier, e.g. ">=0.1,<0.2"), or None when it declares none."""
    if dist is None:
        return None
    for text in dist.requires or []:
        # Only the requirement on Conveyor is parsed: packaging's parser costs every command
        # ~15 ms to import, so the others are passed over by name first.
        match = _CONVEYOR_REQUIREMENT.match(text)
        if not match:
            continue
        rest = text[match.end():].strip().removeprefix("(").removesuffix(")").replace(" ", "")
        if ";" not in text and "[" not in text and all(_CLAUSE.match(c) for c in rest.split(",")):
            # the usual "conveyor>=0.1,<0.2" (no markers, no extras), in packaging's order
            return ",".join(sorted(rest.split(",")))
        from packaging.requirements import InvalidRequirement, Requirement

        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an optional extra's requirement, not the plugin's own
        return str(requirement.specifier) or None
    return None


# "conveyor" as a whole name (not conveyor-sklearn), in any of the spellings pip normalises.
_CONVEYOR_REQUIREMENT = re.compile(r"^\s*conveyor(?=\s*(?:$|[^-_.A-Za-z0-9]))", re.IGNORECASE)


def _in_range(version: str, specifier: str) -> bool:
    simple = _simple_range(version, specifier)
    if simple is not None:
        return simple
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import InvalidVersion, Version

    try:
        return SpecifierSet(specifier).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return True  # unreadable: pip would not have installed it; do not guess


_NUMERIC = re.compile(r"^\d+(?:\.\d+)*$")
_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\d+(?:\.\d+)*)\s*$")


def _simple_range(version: str, specifier: str) -> bool | None:
    """The common case (">=0.1,<0.2" against a release such as 0.1.0) without importing
    packaging; None for anything else (wildcards, ~=, pre-releases), which packaging decides."""
    if not _NUMERIC.match(version):
        return None
    have = _release(version)
    for clause in specifier.split(","):
        match = _CLAUSE.match(clause)
        if match is None:
            return None
        want = _release(match[2])
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        if not {">=": a >= b, "<=": a <= b, "==": a == b, "!=": a != b, ">": a > b,
                "<": a < b}[match[1]]:
            return False
    return True


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _contract_problem(pm: pluggy.PluginManager, exc: pluggy.PluginValidationError) -> str:
    """pluggy's multi-line message as one sentence: which hook, which argument is unknown."""
    text = str(exc)
    hook = re.search(r"for hook '(\w+)'", text)
    extra = re.search(r"Argument\(s\) (\{.*?\})", text)
    caller = getattr(pm.hook, hook.group(1), None) if hook else None
    if hook and extra and caller is not None and caller.spec is not None:
        unknown = ", ".join(sorted(ast.literal_eval(extra.group(1))))
        return (f"its {hook.group(1)} takes {unknown}, which the hook does not pass "
                f"(the hook passes: {', '.join(caller.spec.argnames)}; implement any subset)")
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def stage_type_prefix(info: PluginInfo) -> str:
    """The prefix an installed plugin's stage-type names start with (before a dot)."""
    return "conveyor" if info.origin == "core" else info.name


def switched_off_provider(name: str, disabled: Iterable[PluginInfo]) -> PluginInfo | None:
    """The plugin `plugins.disable` switched off that provides `name` (a stage type, config
    section or group): by the name's prefix (a plugin's stage types start with its name) or by
    the distribution known to provide it. None when no switched-off plugin does."""
    head = name.split(".", 1)[0].split("/", 1)[0]
    provider = provider_hint(name)
    return next((p for p in disabled
                 if p.name == head or (provider is not None and p.distribution == provider)),
                None)


def provider_hint(name: str) -> str | None:
    """The distribution that provides a stage type or config group named like `name`, if known."""
    head = name.split(".", 1)[0].split("/", 1)[0]
    return KNOWN_PROVIDERS.get(head)
