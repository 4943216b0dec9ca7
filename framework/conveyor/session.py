"""One invocation of Conveyor: its project, its plugin host, its composed config and its store.

    from conveyor import Session, api

    with Session("path/to/project", overrides=["model.params.max_depth=6"]) as session:
        print(session.config.get("evaluate.primary"))
        result = api.run(session)
        print(api.get_run(session, result.run_id).metrics)

Every command builds exactly one `Session`, and everything the command does goes through it:
the plugins are loaded once, the config is composed once, and `conveyor.api` functions given the
session use them instead of loading their own. A function of `conveyor.api` given a folder
builds a session for that call.

Which plugins load is read from the composed config (`plugins.disable`, `plugins.local`): a
first guess from the project's conveyor.yaml and the command line decides what loads before
the config can be composed (composition needs the plugins' config folders), and composing
corrects it when a config group or file the guess could not see changes the selection.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigError

if TYPE_CHECKING:
    from conveyor.config import ProjectConfig
    from conveyor.plugins import PluginHost
    from conveyor.store import Store


class Session:
    """A project, the plugins loaded for it, its composed config and its store, for one
    invocation (a command, or a call of `conveyor.api` given a folder).

    `project_dir` is the project's folder. Without it, the project is the nearest folder at or
    above `directory` (default: the current folder) holding a conveyor.yaml, as the command
    line finds it. `overrides` are Hydra overrides applied to the config, as on the command
    line. Close the session (or use it as a context manager) to release what it holds.
    """

    def __init__(self, project_dir: Path | str | None = None, *,
                 directory: Path | str | None = None, overrides: Sequence[str] = (),
                 debug: bool = False, invocation: str | None = None) -> None:
        self.directory = Path(directory or project_dir or Path.cwd())
        self.overrides: tuple[str, ...] = tuple(overrides)
        self.debug = debug
        #: This invocation's id: what the runs of one `conveyor run --multirun` share.
        self.invocation = invocation or uuid.uuid4().hex
        self._project: Path | None = Path(project_dir).resolve() if project_dir else None
        self._host: PluginHost | None = None
        self._config: ProjectConfig | None = None
        self._shared_host = False  # for_project: the host belongs to the session it came from

    # --- the project ---------------------------------------------------------------------------

    @property
    def project_dir(self) -> Path:
        """The project's folder; UsageError (naming the fix) outside a project."""
        if self._project is None:
            from conveyor.config import find_project

            self._project = find_project(self.directory)
        return self._project

    @property
    def has_project(self) -> bool:
        """Whether the session's folder is in a project (`conveyor init` and `--help` run
        outside one)."""
        from conveyor.errors import UsageError

        try:
            self.project_dir  # noqa: B018 - finds and remembers it
        except UsageError:
            return False
        return True

    # --- plugins -------------------------------------------------------------------------------

    @property
    def host(self) -> PluginHost:
        """The plugin host of this session, a `conveyor.Host`: the one pluggy manager every
        hook call goes through (`host.hook.conveyor_...(...)`), with what plugins contribute.
        Plugins use what `conveyor.Host` lists; the rest of the object is Conveyor's own."""
        if self._host is None:
            from conveyor.plugins import PluginHost

            project = self.project_dir if self.has_project else None
            disable, local = first_guess(project, self.overrides)
            self._host = PluginHost().load(disable=disable, local_modules=local,
                                           project_dir=project)
        return self._host

    def use_plugins(self, config: Mapping[str, Any], *, source: str | None = None) -> bool:
        """Load exactly the plugins a composed or recorded config's `plugins` section asks
        for, adjusting the session's host (plugins switched off are unregistered, others
        loaded); True when that changed what is loaded. `source` names where the config came
        from, for errors."""
        disable, local = selection(config, source=source)
        project = self.project_dir if self.has_project else None
        return self.host.select(disable=disable, local_modules=local, project_dir=project)

    def for_project(self, project_dir: Path | str) -> Session:
        """A session of another project (`conveyor reproduce`'s workspace, `serve --project`)
        for the same invocation, sharing this session's plugin host: still one per command."""
        other = Session(project_dir, overrides=(), debug=self.debug, invocation=self.invocation)
        other._host = self.host
        other._shared_host = True
        return other

    # --- the config ----------------------------------------------------------------------------

    def set_overrides(self, overrides: Sequence[str]) -> None:
        """The overrides `config` applies (a command's, once its arguments are parsed)."""
        if tuple(overrides) != self.overrides:
            self.overrides = tuple(overrides)
            self._config = None

    @property
    def config(self) -> ProjectConfig:
        """The project's config composed with the session's overrides, resolved and checked
        against the loaded plugins' schemas (ConfigError naming the key otherwise)."""
        if self._config is None:
            self._config = self.compose(self.overrides)
        return self._config

    def compose(self, overrides: Sequence[str]) -> ProjectConfig:
        """The project's config composed with `overrides` (not necessarily the session's:
        `conveyor run --multirun` checks its first job so), the plugins adjusted to what it
        selects."""
        from conveyor.config import load_config

        config = load_config(self.project_dir, list(overrides), self.host)
        if self.use_plugins(config.data):
            # The selection moved (a config group switched a plugin off, say): compose again
            # with the plugins that will run, their config folders and schemas.
            config = load_config(self.project_dir, list(overrides), self.host)
        return config

    def check(self, config: Mapping[str, Any], *, source: str | None = None) -> ProjectConfig:
        """An already resolved config (a run's recorded config) checked again against the
        plugins it selects, loaded for this session; its values are kept literally.
        `source` says where it came from ("the recorded config of run R"), for errors."""
        from conveyor.errors import ConveyorError

        try:
            self.use_plugins(config, source=source)
            return _checked(self.project_dir, config, self.host)
        except ConveyorError as exc:
            if source is None:
                raise
            error = type(exc)(
                f"{exc.message} (in {source}, not the project's conveyor.yaml)",
                hint="that run's config names it: restore what it needs"
                     + (f" ({exc.hint})" if exc.hint else "")
                     + ", or train a new version without it")
            error.exit_code = exc.exit_code
            raise error from exc

    # --- the store -----------------------------------------------------------------------------

    def store(self) -> Store:
        """The project's store, opened for the caller (who closes it), with the tables the
        loaded plugins declare (`conveyor_store_tables`). Reading the store does not load the
        plugins: a plugin's repository makes its own tables when it is first used."""
        from conveyor.store import open_store

        tables = self._host.contributions.store_tables if self._host is not None else ()
        return open_store(self.project_dir, tables)

    def codec(self, name: str) -> Any:
        """The loaded codec called `name`, or None when no loaded plugin provides it."""
        return next((c for c in self.host.contributions.codecs if c.name == name), None)

    # --- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Release what the session holds (its plugins' hold on `sys.path` included)."""
        if self._host is not None and not self._shared_host:
            self._host.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self._project or self.directory
        return f"Session({str(where)!r}, overrides={list(self.overrides)!r})"


def first_guess(project_dir: Path | None, overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """`plugins.disable` and `plugins.local` as the project's conveyor.yaml and the command
    line state them: what loads before the config can be composed. Composing corrects it
    (`Session.compose`)."""
    disable: list[str] = []
    local: list[str] = []
    if project_dir is not None:
        from conveyor.config import CONFIG_FILE

        path = project_dir / CONFIG_FILE
        if path.is_file():
            import yaml

            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError:
                data = {}  # composition reports the syntax error properly later
            section = data.get("plugins") if isinstance(data, dict) else None
            if isinstance(section, dict):
                disable = _names(section.get("disable"))
                local = _names(section.get("local"))
    for override in overrides:
        key, _, value = override.lstrip("+").partition("=")
        if key in ("plugins.disable", "plugins.local"):
            items = [v.strip().strip("'\"") for v in value.strip("[]").split(",") if v.strip()]
            if key == "plugins.disable":
                disable = items
            else:
                local = items
    return disable, local


def selection(config: Mapping[str, Any], *, source: str | None = None
              ) -> tuple[list[str], list[str]]:
    """`plugins.disable` and `plugins.local` of a composed (or recorded) config."""
    section = config.get("plugins") or {}
    if not isinstance(section, Mapping):
        raise ConfigError("config key 'plugins' must be a mapping (disable: [...], local: [...])"
                          + (f" (in {source})" if source else ""))
    return _names(section.get("disable")), _names(section.get("local"))


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _checked(project_dir: Path, config: Mapping[str, Any], host: Any) -> ProjectConfig:
    """A resolved config checked against the schemas; its values are kept literally (a string
    that looks like an interpolation is not resolved a second time)."""
    from omegaconf import OmegaConf

    from conveyor.config import check_config

    def escape(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("${", "\\${")
        if isinstance(value, Mapping):
            return {k: escape(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [escape(v) for v in value]
        return value

    return check_config(OmegaConf.create(escape(dict(config))), project_dir, (), host)

