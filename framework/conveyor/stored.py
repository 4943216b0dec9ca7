"""The runner's side of `conveyor.StoredOutputs`, the outputs a `conveyor_run_stage`
implementation stored itself (a Ray task, in the shared artifact store): checking the
references it returns before they are recorded (and a plain mapping of references, stored
outputs a wrapper copied, refused naming it), and the outputs `conveyor_after_stage` then sees,
each loaded from the store when read."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from conveyor.errors import PluginError, StageFailed
from conveyor.store import ArtifactRef

if TYPE_CHECKING:
    from conveyor.contributions import Codec
    from conveyor.planner import PlannedStage
    from conveyor.plugins import PluginHost
    from conveyor.stage_context import StoredOutputs
    from conveyor.store import ArtifactStore


def check_refs(produced: StoredOutputs, *, stage: PlannedStage, codecs: Mapping[str, Codec],
               artifacts: ArtifactStore, who: str) -> None:
    """Each reference is an `ArtifactRef` of an installed codec (with its suffix), present in
    the artifact store with its size; in-memory outputs only the ephemeral ones. Otherwise the
    stage fails, naming `who` (the plugin that returned them)."""
    lazy = [name for name in produced.ephemeral if name not in stage.type.ephemeral_outputs]
    if lazy:
        raise StageFailed(
            f"stage '{stage.name}' ({stage.uses}): {who} returned output '{lazy[0]}' in memory "
            f"beside stored ones, but stage type '{stage.uses}' does not declare it ephemeral",
            hint="store it and return its ArtifactRef in StoredOutputs")
    for name, ref in produced.refs.items():
        problem = None
        if not isinstance(ref, ArtifactRef):
            problem = f"is a {type(ref).__name__}, not a conveyor.store.ArtifactRef"
        elif ref.codec not in codecs:
            problem = f"was written by codec '{ref.codec}', which no installed plugin provides"
        elif ref.suffix != codecs[ref.codec].suffix:
            problem = (f"has suffix '{ref.suffix}', not codec '{ref.codec}''s "
                       f"'{codecs[ref.codec].suffix}'")
        elif not artifacts.exists(ref):
            problem = (f"is not in the artifact store {artifacts.location} "
                       f"(artifact {ref.sha256[:12]}, {ref.size} bytes)")
        if problem is not None:
            raise StageFailed(
                f"stage '{stage.name}' ({stage.uses}): {who} returned stored output '{name}', "
                f"which {problem}",
                hint="the outputs must be stored in this run's store.artifacts before their "
                     "references are returned")


def check_not_unwrapped(produced: Mapping[str, Any], *, stage: PlannedStage,
                        host: PluginHost) -> None:
    """A plain mapping holding `ArtifactRef`s is stored outputs that lost their type on the way:
    most often a `conveyor_run_stage` wrapper that passed on `dict(outputs)` (which also drops
    the in-memory ephemeral outputs). Stored as values they would fail as "no codec can store
    an ArtifactRef", blaming the stage; this names the wrapper(s) instead (`PluginError`), or,
    without any wrapper, the implementation that returned them. Either fails the run, exit 1."""
    refs = [name for name, value in produced.items() if isinstance(value, ArtifactRef)]
    if not refs:
        return
    wrappers = [impl.plugin_name for impl in host.pm.hook.conveyor_run_stage.get_hookimpls()
                if impl.wrapper or impl.hookwrapper]
    said = (f"stage '{stage.name}' ({stage.uses}): output '{refs[0]}' came back as an "
            f"ArtifactRef in a plain {type(produced).__name__}, not in conveyor.StoredOutputs")
    if wrappers:
        who = ", ".join(f"plugin {host.describe(name)}" for name in wrappers)
        raise PluginError(
            f"{said}: a conveyor_run_stage wrapper passed on a copy of the stored outputs "
            f"({who})",
            hint="a wrapper must return the StoredOutputs it received unchanged, or a new "
                 "conveyor.StoredOutputs(outputs.refs, outputs.ephemeral); dict(outputs) "
                 "loses what they are")
    raise StageFailed(f"{said}: returned by {answering_plugin(host, stage.uses)}",
                      hint="outputs stored where the stage ran are returned as "
                           "conveyor.StoredOutputs({name: ArtifactRef})")


def answering_plugin(host: PluginHost, stage_type: str) -> str:
    """The plugin(s) whose `conveyor_run_stage` may have run a stage, for messages. pluggy does
    not say which implementation answered a first-result hook, and this hook is not guarded
    (it keeps the stage's own exception), so it is told by elimination: the implementations
    that are not wrappers, other than the core's (which runs the stage type's `run`: then the
    stage type's plugin answered)."""
    names = [impl.plugin_name for impl in host.pm.hook.conveyor_run_stage.get_hookimpls()
             if not (impl.wrapper or impl.hookwrapper)
             and getattr(host.info.get(impl.plugin_name), "origin", None) != "core"]
    if not names:
        names = [host.contributions.provider.get(f"stage:{stage_type}", "?")]
    if len(names) == 1:
        return f"plugin {host.describe(names[0])}"
    return "one of the plugins " + ", ".join(host.describe(n) for n in names) + \
        " (conveyor_run_stage)"


class LoadedOnRead(Mapping[str, Any]):
    """A stage's outputs for `conveyor_after_stage` when they were stored where the stage ran:
    each loaded from the artifact store when first read, so a plugin that does not look at them
    costs nothing; the ephemeral ones are values already."""

    def __init__(self, loaders: dict[str, Callable[[], Any]], values: Mapping[str, Any]) -> None:
        self._loaders = loaders
        self._values = dict(values)

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            self._values[name] = self._loaders[name]()
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter({**self._loaders, **self._values})

    def __len__(self) -> int:
        return len({**self._loaders, **self._values})
