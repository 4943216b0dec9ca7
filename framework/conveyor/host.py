"""What a plugin may call on the plugin host: `conveyor.Host`, and `conveyor.PluginInfo`.

Hooks that act for the user (``conveyor_monitor_batch``) and CLI commands receive the loaded
plugin host. `Host` is the part of it plugins may rely on; everything else on the object is
Conveyor's own and may change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from conveyor.contributions import (
        Codec,
        ConfigSchema,
        DriftDetector,
        ProjectTemplate,
        StageType,
    )

#: The kinds of contribution `Host.provider(kind, name)` knows, with the extension hook that
#: registers each.
PROVIDER_KINDS = {
    "stage type": "conveyor_stage_types",
    "codec": "conveyor_codecs",
    "command": "conveyor_cli_commands",
    "template": "conveyor_project_templates",
    "config section": "conveyor_config_schemas",
    "config dir": "conveyor_config_dirs",
    "drift detector": "conveyor_drift_detectors",
}


@dataclass(frozen=True)
class PluginInfo:
    """One loaded (or disabled) plugin: its name (the entry point's, ``conveyor.core`` for the
    core, the module's for a project's ``plugins.local``), the distribution that provides it,
    that distribution's version and its ``origin`` ("entry point", "local module" or "core")."""

    name: str
    distribution: str
    version: str
    origin: str  # "entry point", "local module" or "core"

    def label(self) -> str:
        """How messages name the plugin: with its distribution and version, or as local."""
        if self.origin == "local module":
            return f"'{self.name}' (local module of the project, plugins.local)"
        return f"'{self.name}' ({self.distribution} {self.version})"


@runtime_checkable
class Host(Protocol):
    """The loaded plugins, as a plugin may use them.

    * ``hook``: pluggy's hook relay. Call a hook with keyword arguments,
      ``host.hook.conveyor_validate_frame(frame=..., schema=..., ...)``; the call goes through
      pluggy (tracing, wrappers) and follows the hook's result rule (see `conveyor.hookspecs`).
      An exception in another plugin's implementation arrives as a `conveyor.PluginError`
      naming it.
    * ``plugins``: the loaded plugins (`PluginInfo`), the core included, in load order;
      ``installed``: every installed plugin (the ``conveyor`` entry points), loaded or
      switched off by ``plugins.disable``.
    * the contributions, read-only: ``stage_types``, ``codecs`` (highest priority first),
      ``drift_detectors``, ``templates``, ``config_schemas`` (by section).
    * ``provider(kind, name)``: the plugin that registered a contribution, e.g.
      ``host.provider("drift detector", "psi")``; kinds are the keys of ``PROVIDER_KINDS``.
    * ``describe(name)``: how messages name a plugin (``"'sklearn' (conveyor-sklearn 0.1.0)"``).
    """

    @property
    def hook(self) -> Any: ...

    @property
    def plugins(self) -> Sequence[PluginInfo]: ...

    @property
    def installed(self) -> Sequence[PluginInfo]: ...

    @property
    def stage_types(self) -> Mapping[str, StageType]: ...

    @property
    def codecs(self) -> Sequence[Codec]: ...

    @property
    def drift_detectors(self) -> Mapping[str, DriftDetector]: ...

    @property
    def templates(self) -> Mapping[str, ProjectTemplate]: ...

    @property
    def config_schemas(self) -> Mapping[str, ConfigSchema]: ...

    def provider(self, kind: str, name: str) -> PluginInfo | None: ...

    def describe(self, name: str) -> str: ...
